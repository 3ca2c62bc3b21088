"""The kinds of values a setting holds: each reads and checks a value, and describes itself to
the JSON Schema and to the Markdown reference (shared/schema/outputs.py).

A kind's `read` takes the value as YAML built it and returns it checked (and, for a few kinds,
made into what the program keeps: a path resolved, a list made a tuple), or raises `Invalid`
with the reason, which the reading prints after the value's path. A kind that holds other
values (a list, a mapping, a section) reads each through `Reading.value`, which records a
refused one and goes on, so that a document's problems are all found in one reading; one
that recorded its value's problems itself returns `Reading.REFUSED`.

A kind says a refusal in the idiom's words (`expected a boolean, got 'yes'`) unless it is
given a `refusal` of its own: the build spec's kinds keep the words nodes have always signed
(`must be a non-empty list of strings`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

# Longer values are cut in a problem's text: a pasted certificate needs no echo in full.
MAX_SHOWN_CHARS = 80
_TYPE_NOUNS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping", type(None): "null"}


class Invalid(ValueError):
    """A value a kind refuses; its text is the reason, said after the value's path."""


def shown(value: Any, secret: bool = False) -> str:
    """A value as a problem names it: YAML's spelling of scalars, the type alone of a list, a
    mapping or (`secret`) a value that must not land in a log."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, (list, dict)) or secret:
        return _TYPE_NOUNS.get(type(value), f"a {type(value).__name__}")
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS - 3] + "..."


class Reader(Protocol):
    """What a kind reads its value with: one reading of a document (`shared.schema.reading.Reading`
    is the one there is). It keeps every problem found, says where relative paths start, and
    reads the values and sections a value holds. The kinds name it by what they use of it here,
    beside them: the reading reads with the kinds, so its module stands above theirs."""

    REFUSED: Any  # what `value` returns for a value it recorded as refused
    base: Path  # the folder the document's relative paths start from
    options: Any  # the reader's own options, which a file source reads
    problems: list[str]

    def fail(self, at: str, reason: str) -> None:
        """Record the problem `reason` at the path `at`."""

    def value(self, kind: Kind, value: Any, at: str) -> Any:
        """`value` read as `kind`, or REFUSED once its problem is recorded."""

    def section(self, cls: type, mapping: dict, at: str, *, prefix: str = "", fixed: dict | None = None) -> Any:
        """`mapping` read into the section `cls`."""


class Kind:
    """How the values of one setting are read, and what the schema's outputs say of them."""

    noun = "a value"  # what "expected ..." names
    # What a required value that was refused reads as, so that reading goes on to the rest.
    blank: Any = None
    # The one reason given for a value of the wrong type or shape, in place of "expected ...".
    refusal = ""

    def read(self, value: Any, at: str, reading: Reader) -> Any:
        raise NotImplementedError

    def absent(self, default: Any, reading: Reader) -> Any:
        """The value of a setting the document leaves out (or sets to null)."""
        return default

    def json(self, defs: dict) -> dict:
        """The JSON Schema of a value; `defs` collects the sections it refers to."""
        raise NotImplementedError

    def text(self, link: Callable[[type], str]) -> str:
        """The kind as the reference's table names it; `link` names a section's heading."""
        raise NotImplementedError

    def expected(self, value: Any) -> Invalid:
        return Invalid(self.refusal or f"expected {self.noun}, got {shown(value)}")

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        """The kinds this one holds, each with what follows this one's path in theirs: `[]` for
        a list's items, `.*` for a mapping's values, "" for a union's alternatives."""
        return ()

    def written(self, value: Any) -> Any:
        """A value as the document writes it: a default, as the outputs show it."""
        return value


def _bounds(minimum: float | None, maximum: float | None, above: float | None = None) -> str:
    if above is not None:
        return f" > {above:g}"
    if minimum is not None and maximum is not None:
        return f", {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" ≥ {minimum:g}"
    return "" if maximum is None else f" ≤ {maximum:g}"


class Int(Kind):
    """An integer within `minimum` and `maximum`, both included (a boolean is not one)."""

    noun, blank = "an integer", 0

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def read(self, value: Any, at: str, reading: Reader) -> int:
        if type(value) is not int:
            raise self.expected(value)
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise Invalid(f"must be at most {self.maximum}")
        return value

    def json(self, defs: dict) -> dict:
        return {"type": "integer", **_present(minimum=self.minimum, maximum=self.maximum)}

    def text(self, link: Callable[[type], str]) -> str:
        return "integer" + _bounds(self.minimum, self.maximum)


class Number(Kind):
    """A number, kept as a float: at least `minimum`, or more than `above`. YAML writes `600`
    as an integer, which is a number too."""

    noun, blank = "a number", 0.0

    def __init__(self, minimum: float | None = None, *, above: float | None = None, refusal: str = "") -> None:
        assert minimum is None or above is None, "one lower bound"
        self.minimum, self.above, self.refusal = minimum, above, refusal

    def read(self, value: Any, at: str, reading: Reader) -> float:
        if type(value) not in (int, float):
            raise self.expected(value)
        if self.minimum is not None and value < self.minimum:
            raise Invalid(self.refusal or f"must be at least {self.minimum:g}")
        if self.above is not None and not value > self.above:
            raise Invalid(self.refusal or f"must be more than {self.above:g}")
        return float(value)

    def json(self, defs: dict) -> dict:
        return {"type": "number", **_present(minimum=self.minimum, exclusiveMinimum=self.above)}

    def text(self, link: Callable[[type], str]) -> str:
        return "number" + _bounds(self.minimum, None, self.above)


class Bool(Kind):
    """true or false."""

    noun, blank = "a boolean", False

    def read(self, value: Any, at: str, reading: Reader) -> bool:
        if not isinstance(value, bool):
            raise self.expected(value)
        return value

    def json(self, defs: dict) -> dict:
        return {"type": "boolean"}

    def text(self, link: Callable[[type], str]) -> str:
        return "boolean"


class Text(Kind):
    """A string, matching `pattern` (whole) if given, then passed through `check` if given,
    which returns the value to keep or raises ValueError with the reason. `what` names such a
    value with its article ("a valid repository name"); `secret`: the value is never shown;
    `scalars`: a YAML number or boolean is taken as the text it reads as (`3`, `true`), for
    values that end up as text anyway (environment variables); `refusal`: the one reason given
    for a value that is not a string or does not match."""

    blank = ""

    def __init__(self, pattern: re.Pattern | None = None, *, what: str = "", check: Callable[[str], str] | None = None,
                 secret: bool = False, scalars: bool = False, refusal: str = "") -> None:
        assert pattern is None or what, "a pattern's refusal names what the value must be"
        self.pattern, self.what, self.check, self.secret = pattern, what, check, secret
        self.scalars, self.refusal = scalars, refusal
        self.noun = what or "a string"

    def read(self, value: Any, at: str, reading: Reader) -> str:
        if self.scalars and isinstance(value, (bool, int, float)):
            value = shown(value) if isinstance(value, bool) else str(value)
        if not isinstance(value, str):
            raise Invalid(self.refusal or f"expected {self.noun}, got {shown(value, self.secret)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            if self.refusal:
                raise Invalid(self.refusal)
            raise Invalid(f"is not {self.what}" if self.secret else f"is not {self.what}: {shown(value)}")
        if self.check is not None:
            try:
                return self.check(value)
            except (TypeError, ValueError) as error:
                raise Invalid(str(error)) from None
        return value

    def json(self, defs: dict) -> dict:
        # JSON Schema patterns are not anchored; ours match the whole value. The check, Python
        # code, has no JSON form: an editor then checks the type and the pattern alone.
        text = {"type": "string", **({} if self.pattern is None else {"pattern": f"^(?:{self.pattern.pattern})$"})}
        return {"anyOf": [text, {"type": "number"}, {"type": "boolean"}]} if self.scalars else text

    def text(self, link: Callable[[type], str]) -> str:
        kind = "string, number or boolean" if self.scalars else "string"
        return f"{kind}: {_without_article(self.what)}" if self.what else kind


class Choice(Kind):
    """One of a few strings. `what` names one with its article ("an event"); `means` maps each
    to the value the program keeps (`failure: ignore` is `ignore_failure=True`)."""

    def __init__(self, choices: tuple[str, ...], *, what: str = "", means: dict[str, Any] | None = None,
                 refusal: str = "") -> None:
        assert means is None or set(means) == set(choices), "every choice means something"
        self.choices, self.means, self.refusal = choices, means, refusal
        listed = ", ".join(choices)
        self.noun = f"{what} ({listed})" if what else f"one of {listed}"

    def read(self, value: Any, at: str, reading: Reader) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            raise self.expected(value)
        return value if self.means is None else self.means[value]

    def written(self, value: Any) -> Any:
        if self.means is None:
            return value
        return next(choice for choice, meant in self.means.items() if meant == value)

    def json(self, defs: dict) -> dict:
        return {"enum": list(self.choices)}

    def text(self, link: Callable[[type], str]) -> str:
        return "one of " + ", ".join(f"`{choice}`" for choice in self.choices)


class FilePath(Kind):
    """A path to a file or folder; a relative one is relative to the document's folder
    (`Reading.base`), and so is a default."""

    noun, blank = "a path", None

    def read(self, value: Any, at: str, reading: Reader) -> Path:
        if not isinstance(value, str) or not value:
            raise self.expected(value)
        return (reading.base / value).resolve()

    def absent(self, default: Any, reading: Reader) -> Any:
        return default if default is None else (reading.base / default).resolve()

    def json(self, defs: dict) -> dict:
        return {"type": "string", "minLength": 1}

    def text(self, link: Callable[[type], str]) -> str:
        return "path"


# A rule over a whole list: the items read, each with its index (those refused left out), and
# whether every item read without a problem; it yields (where, reason) for each problem, where
# following the list's path ("[2]", "" for the list itself).
ListCheck = Callable[[tuple[tuple[int, Any], ...], bool], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Counts:
    """How many items a list holds, and what a value that is not such a list is told:
    `refusal` for one that is not a list or holds fewer than `min_items` (the idiom's words
    without it), `too_many` for more than `max_items` (the refusal without it)."""

    min_items: int = 0
    max_items: int | None = None
    refusal: str = ""
    too_many: str = ""


class ListOf(Kind):
    """A list of `item`s, kept as a tuple, as many as `counts` (Counts) say. `unique`: no value
    twice (True), or no two sections with the same value of that field (its name). `single`:
    one item alone stands for a list of it. `check`: a rule over the whole list (no path inside
    another, commands not too long in all)."""

    blank = ()

    def __init__(self, item: Kind, *, unique: bool | str = False, single: bool = False, check: ListCheck | None = None,
                 **counts: Any) -> None:
        self.item, self.unique, self.single, self.check = item, unique, single, check
        self.counts = Counts(**counts)
        self.min_items, self.max_items, self.refusal = self.counts.min_items, self.counts.max_items, self.counts.refusal
        self.noun = "a list"

    def read(self, value: Any, at: str, reading: Reader) -> tuple:
        if self.single and not isinstance(value, list):
            # A lone item is read at the setting's own path: it has no index.
            item = reading.value(self.item, value, at)
            return () if item is reading.REFUSED else (item,)
        self.counted(value)
        before = len(reading.problems)
        items = [(index, reading.value(self.item, item, f"{at}[{index}]")) for index, item in enumerate(value)]
        items = [(index, item) for index, item in items if item is not reading.REFUSED]
        if self.unique:
            self._repeats(items, at, reading)
        self.checked(items, len(reading.problems) == before, at, reading)
        return tuple(item for _, item in items)

    def counted(self, value: Any) -> None:
        """Raise Invalid unless `value` is a list of an allowed length."""
        if not isinstance(value, list):
            raise self.expected(value)
        if len(value) < self.min_items:
            raise Invalid(self.refusal or ("must not be empty" if self.min_items == 1
                                           else f"must hold at least {self.min_items} items"))
        if self.max_items is not None and len(value) > self.max_items:
            raise Invalid(self.counts.too_many or self.refusal
                          or f"must hold at most {self.max_items} items, not {len(value)}")

    def checked(self, items: list[tuple[int, Any]], whole: bool, at: str, reading: Reader) -> None:
        """The list's own rule, said at the paths it names."""
        if self.check is not None:
            for where, reason in self.check(tuple(items), whole):
                reading.fail(at + where, reason)

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        return ((self.item, "[]"),)

    def _repeats(self, items: list[tuple[int, Any]], at: str, reading: Reader) -> None:
        """Each value that an earlier item has already, named at the later item. A value left
        empty (a refused name read as "") is another problem, already named."""
        first: dict[Any, int] = {}
        for index, item in items:
            field = self.unique if isinstance(self.unique, str) else None
            value = item if field is None else getattr(item, field)
            if value in ("", None):
                continue
            if value in first:
                if field is None:
                    reading.fail(f"{at}[{index}]", f"{shown(value)} is already {at}[{first[value]}]")
                else:
                    reading.fail(f"{at}[{index}].{field}",
                                 f"{shown(value)} is already the {field} of {at}[{first[value]}]")
            first.setdefault(value, index)

    def json(self, defs: dict) -> dict:
        schema = {"type": "array", "items": self.item.json(defs),
                  **_present(minItems=self.min_items or None, maxItems=self.max_items)}
        if self.unique is True:
            schema["uniqueItems"] = True
        return {"anyOf": [self.item.json(defs), schema]} if self.single else schema

    def text(self, link: Callable[[type], str]) -> str:
        count = ""
        if self.max_items is not None:
            count = f"{self.min_items} to {self.max_items} " if self.min_items else f"up to {self.max_items} "
        elif self.min_items:
            count = f"{self.min_items} or more "
        if self.single:
            return f"{self.item.text(link)}, or a list of {count + 'of ' if count else ''}them"
        return f"list of {count}({self.item.text(link)})"


class MapOf(Kind):
    """A mapping of `key`s (strings) to `value`s, at most `max_items` of them, kept as a tuple
    of (key, value) pairs in the document's order."""

    noun, blank = "a mapping", ()

    def __init__(self, key: Text, value: Kind, *, max_items: int | None = None) -> None:
        self.key, self.value, self.max_items = key, value, max_items

    def read(self, value: Any, at: str, reading: Reader) -> tuple:
        if not isinstance(value, dict):
            raise self.expected(value)
        if self.max_items is not None and len(value) > self.max_items:
            raise Invalid(f"must hold at most {self.max_items} entries, not {len(value)}")
        pairs = []
        for key, item in value.items():
            where = f"{at}.{key}"
            key = reading.value(self.key, key, where)
            item = reading.value(self.value, item, where)
            if key is not reading.REFUSED and item is not reading.REFUSED:
                pairs.append((key, item))
        return tuple(pairs)

    def json(self, defs: dict) -> dict:
        return {"type": "object", "propertyNames": self.key.json(defs), "additionalProperties": self.value.json(defs),
                **_present(maxProperties=self.max_items)}

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        return ((self.value, ".*"),)

    def text(self, link: Callable[[type], str]) -> str:
        return f"mapping of {self.key.text(link)} to {self.value.text(link)}"


class OneOf(Kind):
    """A value of one of a few kinds, told apart by its shape before it is read: `pick` returns
    the alternative a value is meant as, or raises Invalid when it is none of them (a matrix
    is axes, or `include:` with the combinations). Reading the one picked says its problems
    in its own terms, where trying each in turn could only say that none fitted."""

    def __init__(self, *alternatives: Kind, pick: Callable[[Any], Kind], noun: str = "") -> None:
        self.alternatives, self.pick = alternatives, pick
        self.noun = noun or " or ".join(alternative.noun for alternative in alternatives)

    def read(self, value: Any, at: str, reading: Reader) -> Any:
        chosen = self.pick(value)
        assert chosen in self.alternatives, "pick returns one of the alternatives"
        return chosen.read(value, at, reading)

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        return tuple((alternative, "") for alternative in self.alternatives)

    def json(self, defs: dict) -> dict:
        return {"oneOf": [alternative.json(defs) for alternative in self.alternatives]}

    def text(self, link: Callable[[type], str]) -> str:
        return ", or ".join(alternative.text(link) for alternative in self.alternatives)


def _present(**keywords: Any) -> dict:
    """The JSON Schema keywords that have a value."""
    return {name: value for name, value in keywords.items() if value is not None}


def _without_article(what: str) -> str:
    first, _, rest = what.partition(" ")
    return rest if first in ("a", "an") and rest else what
