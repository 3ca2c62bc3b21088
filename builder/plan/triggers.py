"""Whether a build runs: `[skip ci]` in the commit message and the spec's `when:` conditions.

    when:                          # one mapping, or a list of them (any one that holds runs it)
      event: [push, pull_request]  # push, tag, pull_request, manual, cron
      branch: [main, "release/*"]  # globs; a pull request's is the branch it targets
      path:                        # globs over the paths the commit changed
        include: ["src/**"]
        exclude: ["**/*.md"]

Each condition a mapping names must hold; a list or a bare string is an
`include`. Globs: `*` and `?` stay within one path segment, `**` crosses
them. Everything here is decided from the agreed request and the commit it
resolved to, so every honest node reaches the same answer: the event and the
branch are the request's, the commit message is the commit's, and the changed
paths are those between the request's `before` commit and the built one,
counted only when `before` is an ancestor of the built commit (then every
node that has the commit has it too). When they cannot be counted (no
`before`, a force push, a pull request whose target moved on since it
branched), a path condition holds: a build is never skipped for changes
nobody can name.

A pull request's author writes both its commit message and its spec, so
neither decides whether its build runs (`Skips`): its marks count for nothing,
and the build-level `when:` is that of its base branch's spec
(builder/workspace/basespec.py). Its own spec still says what runs, step `when:` included.

`when:` is declared in the schema idiom (shared/schema): `Condition` and `Filter` are its
sections, read with the rest of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from builder.plan.specvalues import spec_reading
from pbft.build import EVENTS
from shared.schema import Invalid, Kind, ListOf, Reading, Section, schema_of, section, setting

_SKIP_MARKS = ("[skip ci]", "[ci skip]")
MAX_CONDITIONS = 16
MAX_PATTERNS = 64
MAX_PATTERN_CHARS = 255


class Globs(Kind):
    """A glob, or a list of globs (`allow_empty`: maybe none)."""

    noun, blank = "a glob or a list of globs", ()

    def __init__(self, *, allow_empty: bool = False) -> None:
        self.allow_empty = allow_empty

    def read(self, value: Any, at: str, reading: Reading) -> tuple[str, ...]:
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, list) or (not patterns and not self.allow_empty):
            raise Invalid("must be a glob or a non-empty list of globs")
        if len(patterns) > MAX_PATTERNS:
            raise Invalid(f"at most {MAX_PATTERNS} globs")
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS or "\0" in pattern:
                raise Invalid(f"each glob must be a non-empty string of at most {MAX_PATTERN_CHARS} characters")
        return tuple(patterns)

    def json(self, defs: dict) -> dict:
        glob = {"type": "string", "minLength": 1}
        listed = {"type": "array", "items": glob, "maxItems": MAX_PATTERNS,
                  **({} if self.allow_empty else {"minItems": 1})}
        return {"anyOf": [glob, listed]}

    def text(self, link: Callable[[type], str]) -> str:
        return f"glob, or a list of up to {MAX_PATTERNS} globs"


@section
class Filter:
    """A `branch:` or `path:` as a mapping: globs a value must match one of (`include`) and none of (`exclude`)."""

    include: tuple[str, ...] = setting(Globs(allow_empty=True), default=(), nullable=False,
                                       doc="globs of which the value must match one, when any is given")
    exclude: tuple[str, ...] = setting(Globs(allow_empty=True), default=(), nullable=False,
                                       doc="globs the value must match none of")

    def admits(self, value: str) -> bool:
        if self.include and not any(_glob(pattern).fullmatch(value) for pattern in self.include):
            return False
        return not any(_glob(pattern).fullmatch(value) for pattern in self.exclude)

    def describe(self) -> str:
        excluded = ", ".join(self.exclude)
        if not self.include:
            return f"anything but {excluded}"
        included = ", ".join(self.include)
        return f"{included} but not {excluded}" if excluded else included


class GlobFilter(Kind):
    """A `branch:` or `path:` condition: a glob or a list of globs (the `include` of a Filter),
    or the Filter mapping itself. Its first problem alone is said, at the condition's path
    (`when.path: include: at most 64 globs`), as specs have always been told."""

    noun, blank = "a glob, a list of globs, or a mapping of include and exclude", None
    refusal = "must be a glob, a list of globs, or a mapping of include and exclude"
    GLOBS = Globs()

    def read(self, value: Any, at: str, reading: Reading) -> Filter:
        if isinstance(value, (str, list)):
            return Filter(include=self.GLOBS.read(value, at, reading))
        if not isinstance(value, dict) or not value:
            raise self.expected(value)
        schema = schema_of(Filter)
        unknown = [key for key in value if key not in schema.keys]
        if unknown:
            raise Invalid(f"unknown key {str(unknown[0])[:40]!r} ({', '.join(schema.keys)})")
        lists = {}
        for declared in schema.settings:
            if declared.key not in value:
                lists[declared.name] = declared.default
                continue
            try:
                lists[declared.name] = declared.kind.read(value[declared.key], at, reading)
            except Invalid as error:
                raise Invalid(f"{declared.key}: {error}") from None
        if not any(lists.values()):
            raise Invalid(f"{' or '.join(schema.keys)} must name a glob")
        return Filter(**lists)

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        return ((Section(Filter), ""),)

    def json(self, defs: dict) -> dict:
        return {"anyOf": [self.GLOBS.json(defs), {**Section(Filter).json(defs), "minProperties": 1}]}

    def text(self, link: Callable[[type], str]) -> str:
        return f"{self.GLOBS.text(link)}, or mapping: {link(Filter)}"


class Events(Kind):
    """`event:`, an event or a list of them, each kept once."""

    noun, blank, refusal = "an event or a list of events", None, "must be an event or a list of events"

    def read(self, value: Any, at: str, reading: Reading) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise self.expected(value)
        unknown = [name for name in names if name not in EVENTS]
        if unknown:
            raise Invalid(f"unknown event {unknown[0][:40]!r} (one of {', '.join(EVENTS)})")
        return tuple(dict.fromkeys(names))

    def json(self, defs: dict) -> dict:
        return {"anyOf": [{"enum": list(EVENTS)}, {"type": "array", "items": {"enum": list(EVENTS)}, "minItems": 1}]}

    def text(self, link: Callable[[type], str]) -> str:
        return " or ".join(f"`{event}`" for event in EVENTS) + ", or a list of them"


@section
class Condition:
    """One mapping of `when:`: every condition it names must hold."""

    events: tuple[str, ...] | None = setting(Events(), key="event", default=None, nullable=False,
                                             doc="the events that build: push, tag, pull_request, manual, cron")
    branch: Filter | None = setting(GlobFilter(), default=None, nullable=False,
                                    doc="a push's branch, a tag's name, a pull request's target branch")
    path: Filter | None = setting(GlobFilter(), default=None, nullable=False,
                                  doc="the paths the commit changed; holds when they cannot be counted")

    def refusal(self, event: str, branch: str, changed: tuple[str, ...] | None) -> str | None:
        """Why this condition does not hold, or None when it does."""
        if self.events is not None and event not in self.events:
            return f"event {event} is not {' or '.join(self.events)}"
        if self.branch is not None and not self.branch.admits(branch):
            return f"branch {branch} does not match {self.branch.describe()}"
        if self.path is not None and changed is not None and changed:
            if not any(self.path.admits(path) for path in changed):
                count = f"{len(changed)} changed path{'s' if len(changed) != 1 else ''}"
                return f"none of the {count} matches {self.path.describe()}"
        return None


# `when:`, one mapping or a list of them, any one of which that holds runs the build.
WHEN = ListOf(Section(Condition, refusal="must be a mapping of event, branch and path", nonempty=True), single=True,
              min_items=1, max_items=MAX_CONDITIONS,
              refusal=f"must be a mapping or a list of 1 to {MAX_CONDITIONS} mappings")


@dataclass(frozen=True)
class Trigger:
    """What the agreed request says started a build."""

    event: str
    branch: str  # the pushed branch or tag; a pull request's target branch
    before: str | None = None  # the commit changed paths are counted from
    pull_ref: str | None = None  # the forge's ref a pull request's build checks out

    @property
    def pull_request(self) -> bool:
        """A pull request's build: by its checkout as well as its event, so that a request
        naming another event for a pull request's ref is still judged as one."""
        return self.event == "pull_request" or self.pull_ref is not None


@dataclass(frozen=True)
class BaseSpec:
    """The `when:` of a pull request's base branch's spec: `.pbft-ci.yml` at the base commit."""

    commit: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Skips:
    """Why a build, or a step of its pipeline, does not run (None: it runs), from the agreed
    request (`trigger`) and the commits it names.

    A push, a tag, a plain call or a schedule is decided by the built commit: `[skip ci]` in
    its message, then its spec's `when:`. A pull request is decided by `base` alone, the spec
    of the branch it targets (None when no such spec can be read the same on every node:
    then it runs), because whoever opens one writes its message and its spec: either would
    otherwise let a failing pull request skip its build and pass a required check."""

    trigger: Trigger
    message: str
    changed: tuple[str, ...] | None
    base: BaseSpec | None = None

    def before_spec(self) -> str | None:
        """What is decided before the built commit's spec is read: a push's skip mark, a pull
        request's base spec, whose reason names it so that the log says which spec decided."""
        if not self.trigger.pull_request:
            return skip_reason((), self.trigger, self.message, self.changed)
        if self.base is None:
            return None
        reason = skip_reason(self.base.conditions, self.trigger, "", self.changed)
        return None if reason is None else f"{reason} (the base branch's spec at {self.base.commit[:12]})"

    def of_spec(self, conditions: tuple[Condition, ...]) -> str | None:
        """The built commit's own `when:`, which never skips a pull request's build."""
        if self.trigger.pull_request:
            return None
        return skip_reason(conditions, self.trigger, self.message, self.changed)

    def of_step(self, conditions: tuple[Condition, ...]) -> str | None:
        """A pipeline step's `when:`. No skip mark counts here: a marked push never gets to its
        steps, and a pull request's marks are its author's."""
        return skip_reason(conditions, self.trigger, "", self.changed)


def parse_when(section: Any) -> tuple[tuple[Condition, ...], list[str]]:
    """The `when:` conditions and the problems with them (the spec's parser reports those)."""
    if section is None:
        return (), []
    reading = spec_reading()
    conditions = reading.value(WHEN, section, "when")
    return (() if conditions is reading.REFUSED else conditions), reading.problems


def skip_reason(
    conditions: tuple[Condition, ...], trigger: Trigger, message: str, changed: tuple[str, ...] | None
) -> str | None:
    """Why this build does not run, or None when it runs. A mark in the commit message skips
    whatever the conditions say; with conditions, one that holds runs the build."""
    lowered = message.lower()
    for mark in _SKIP_MARKS:
        if mark in lowered:
            return f"{mark} in the commit message"
    if not conditions:
        return None
    refusals = [condition.refusal(trigger.event, trigger.branch, changed) for condition in conditions]
    if any(refusal is None for refusal in refusals):
        return None
    if len(refusals) == 1:
        return f"when: {refusals[0]}"
    return "when: no condition holds (" + "; ".join(refusals) + ")"


class Glob:
    """A glob matched by simulating its automaton on a bit set of states: time linear in the
    path's length whatever the pattern, so no spec can make a node backtrack for long.

    `**` is any characters, `**/` also none, `*` any but '/', `?` one but '/'; the rest literal.
    """

    def __init__(self, pattern: str) -> None:
        literals: dict[str, int] = {}
        one = star = dstar = skip = skip_two = 0
        state, index = 0, 0
        while index < len(pattern):
            bit = 1 << state
            if pattern.startswith("**/", index):
                # Either nothing (past all three states) or anything that ends with '/': an
                # entry state that consumes nothing, then `**`, then '/'.
                skip |= bit
                skip_two |= bit
                dstar |= bit << 1
                literals["/"] = literals.get("/", 0) | (bit << 1)
                state, index = state + 2, index + 3
                continue
            if pattern.startswith("**", index):
                dstar |= bit
                skip |= bit
                index += 2
            elif pattern[index] == "*":
                star |= bit
                skip |= bit
                index += 1
            elif pattern[index] == "?":
                one |= bit
                index += 1
            else:
                literals[pattern[index]] = literals.get(pattern[index], 0) | bit
                index += 1
            state += 1
        self._literals, self._one, self._star, self._dstar = literals, one, star, dstar
        self._skip, self._skip_two, self._accept = skip, skip_two, 1 << state

    def _closure(self, states: int) -> int:
        while True:
            more = states | ((states & self._skip) << 1) | ((states & self._skip_two) << 2)
            if more == states:
                return states
            states = more

    def fullmatch(self, text: str) -> bool:
        states = self._closure(1)
        for char in text:
            slash = char == "/"
            advance = states & (self._literals.get(char, 0) | (0 if slash else self._one))
            stay = states & (self._dstar | (0 if slash else self._star))
            states = self._closure((advance << 1) | stay)
            if not states:
                return False
        return bool(states & self._accept)


_GLOBS: dict[str, Glob] = {}


def _glob(pattern: str) -> Glob:
    compiled = _GLOBS.get(pattern)
    if compiled is None:
        compiled = Glob(pattern)
        if len(_GLOBS) < 4096:  # specs come from anyone's commits: the cache stays bounded
            _GLOBS[pattern] = compiled
    return compiled
