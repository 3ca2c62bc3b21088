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
"""

from __future__ import annotations

from dataclasses import dataclass

from pbft.build import EVENTS

_SKIP_MARKS = ("[skip ci]", "[ci skip]")
_CONDITIONS = ("event", "branch", "path")
_FILTER_KEYS = ("include", "exclude")
MAX_CONDITIONS = 16
MAX_PATTERNS = 64
MAX_PATTERN_CHARS = 255


@dataclass(frozen=True)
class Filter:
    """Globs a value must match one of (`include`, when given) and none of (`exclude`)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Condition:
    """One mapping of `when:`; None is a condition it does not name."""

    events: tuple[str, ...] | None = None
    branch: Filter | None = None
    path: Filter | None = None

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


def parse_when(section) -> tuple[tuple[Condition, ...], list[str]]:
    """The `when:` conditions and the problems with them (the spec's parser reports those)."""
    if section is None:
        return (), []
    mappings = section if isinstance(section, list) else [section]
    if not mappings or len(mappings) > MAX_CONDITIONS:
        return (), [f"when: must be a mapping or a list of 1 to {MAX_CONDITIONS} mappings"]
    conditions, errors = [], []
    for index, mapping in enumerate(mappings):
        where = "when" if not isinstance(section, list) else f"when[{index}]"
        if not isinstance(mapping, dict) or not mapping:
            errors.append(f"{where}: must be a mapping of event, branch and path")
            continue
        errors += [f"{where}: unknown key {key!r}" for key in mapping if key not in _CONDITIONS]
        events = None
        if "event" in mapping:
            events, problem = _events(mapping["event"])
            if problem:
                errors.append(f"{where}.event: {problem}")
        filters = {}
        for key in ("branch", "path"):
            if key in mapping:
                filters[key], problem = _filter(mapping[key])
                if problem:
                    errors.append(f"{where}.{key}: {problem}")
        conditions.append(Condition(events, filters.get("branch"), filters.get("path")))
    return tuple(conditions), errors


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


def _events(value) -> tuple[tuple[str, ...] | None, str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        return None, "must be an event or a list of events"
    unknown = [name for name in names if name not in EVENTS]
    if unknown:
        return None, f"unknown event {unknown[0][:40]!r} (one of {', '.join(EVENTS)})"
    return tuple(dict.fromkeys(names)), ""


def _filter(value) -> tuple[Filter | None, str]:
    if isinstance(value, (str, list)):
        include, problem = _patterns(value)
        return (Filter(include=include), "") if not problem else (None, problem)
    if not isinstance(value, dict) or not value:
        return None, "must be a glob, a list of globs, or a mapping of include and exclude"
    unknown = [key for key in value if key not in _FILTER_KEYS]
    if unknown:
        return None, f"unknown key {str(unknown[0])[:40]!r} (include, exclude)"
    lists = {}
    for key in _FILTER_KEYS:
        lists[key], problem = _patterns(value.get(key, []), allow_empty=True)
        if problem:
            return None, f"{key}: {problem}"
    if not lists["include"] and not lists["exclude"]:
        return None, "include or exclude must name a glob"
    return Filter(lists["include"], lists["exclude"]), ""


def _patterns(value, *, allow_empty: bool = False) -> tuple[tuple[str, ...], str]:
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list) or (not patterns and not allow_empty):
        return (), "must be a glob or a non-empty list of globs"
    if len(patterns) > MAX_PATTERNS:
        return (), f"at most {MAX_PATTERNS} globs"
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS or "\0" in pattern:
            return (), f"each glob must be a non-empty string of at most {MAX_PATTERN_CHARS} characters"
    return tuple(patterns), ""


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
