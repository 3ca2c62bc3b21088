"""The kinds of values a setting holds: each reads and checks a value, and describes itself to
the JSON Schema and to the Markdown reference (shared/schema/outputs.py).

A kind's `read` takes the value as YAML built it and returns it checked (and, for a few kinds,
made into what the program keeps: a path resolved, a list made a tuple), or raises `Invalid`
with the reason, which the reading prints after the value's path. A kind that holds other
values (a list, a mapping, a section) reads each through `Reading.value`, which records a
refused one and goes on, so that a document's problems are all found in one reading.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from shared.schema.reading import Reading

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


class Kind:
    """How the values of one setting are read, and what the schema's outputs say of them."""

    noun = "a value"  # what "expected ..." names
    # What a required value that was refused reads as, so that reading goes on to the rest.
    blank: Any = None

    def read(self, value: Any, at: str, reading: Reading) -> Any:
        raise NotImplementedError

    def absent(self, default: Any, reading: Reading) -> Any:
        """The value of a setting the document leaves out (or sets to null)."""
        return default

    def json(self, defs: dict) -> dict:
        """The JSON Schema of a value; `defs` collects the sections it refers to."""
        raise NotImplementedError

    def text(self, link: Callable[[type], str]) -> str:
        """The kind as the reference's table names it; `link` names a section's heading."""
        raise NotImplementedError

    def expected(self, value: Any) -> Invalid:
        return Invalid(f"expected {self.noun}, got {shown(value)}")


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

    def read(self, value: Any, at: str, reading: Reading) -> int:
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

    def __init__(self, minimum: float | None = None, *, above: float | None = None) -> None:
        assert minimum is None or above is None, "one lower bound"
        self.minimum, self.above = minimum, above

    def read(self, value: Any, at: str, reading: Reading) -> float:
        if type(value) not in (int, float):
            raise self.expected(value)
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"must be at least {self.minimum:g}")
        if self.above is not None and not value > self.above:
            raise Invalid(f"must be more than {self.above:g}")
        return float(value)

    def json(self, defs: dict) -> dict:
        return {"type": "number", **_present(minimum=self.minimum, exclusiveMinimum=self.above)}

    def text(self, link: Callable[[type], str]) -> str:
        return "number" + _bounds(self.minimum, None, self.above)


class Bool(Kind):
    """true or false."""

    noun, blank = "a boolean", False

    def read(self, value: Any, at: str, reading: Reading) -> bool:
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
    value with its article ("a valid repository name"); `secret`: the value is never shown."""

    blank = ""

    def __init__(self, pattern: re.Pattern | None = None, *, what: str = "", check: Callable[[str], str] | None = None,
                 secret: bool = False) -> None:
        assert pattern is None or what, "a pattern's refusal names what the value must be"
        self.pattern, self.what, self.check, self.secret = pattern, what, check, secret
        self.noun = what or "a string"

    def read(self, value: Any, at: str, reading: Reading) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected {self.noun}, got {shown(value, self.secret)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
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
        return {"type": "string", **({} if self.pattern is None else {"pattern": f"^(?:{self.pattern.pattern})$"})}

    def text(self, link: Callable[[type], str]) -> str:
        return f"string: {_without_article(self.what)}" if self.what else "string"


class Choice(Kind):
    """One of a few strings. `what` names one with its article ("an event")."""

    def __init__(self, choices: tuple[str, ...], *, what: str = "") -> None:
        self.choices = choices
        listed = ", ".join(choices)
        self.noun = f"{what} ({listed})" if what else f"one of {listed}"

    def read(self, value: Any, at: str, reading: Reading) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise self.expected(value)
        return value

    def json(self, defs: dict) -> dict:
        return {"enum": list(self.choices)}

    def text(self, link: Callable[[type], str]) -> str:
        return "one of " + ", ".join(f"`{choice}`" for choice in self.choices)


class FilePath(Kind):
    """A path to a file or folder; a relative one is relative to the document's folder
    (`Reading.base`), and so is a default."""

    noun, blank = "a path", None

    def read(self, value: Any, at: str, reading: Reading) -> Path:
        if not isinstance(value, str) or not value:
            raise self.expected(value)
        return (reading.base / value).resolve()

    def absent(self, default: Any, reading: Reading) -> Any:
        return default if default is None else (reading.base / default).resolve()

    def json(self, defs: dict) -> dict:
        return {"type": "string", "minLength": 1}

    def text(self, link: Callable[[type], str]) -> str:
        return "path"


class ListOf(Kind):
    """A list of `item`s, kept as a tuple: `min_items` to `max_items` of them. `unique`: no
    value twice (True), or no two sections with the same value of that field (its name).
    `single`: one item alone stands for a list of it."""

    blank = ()

    def __init__(self, item: Kind, *, min_items: int = 0, max_items: int | None = None, unique: bool | str = False,
                 single: bool = False) -> None:
        self.item, self.min_items, self.max_items = item, min_items, max_items
        self.unique, self.single = unique, single
        self.noun = "a list"

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
        if self.single and not isinstance(value, list):
            # A lone item is read at the setting's own path: it has no index.
            item = reading.value(self.item, value, at)
            return () if item is reading.REFUSED else (item,)
        if not isinstance(value, list):
            raise self.expected(value)
        if len(value) < self.min_items:
            raise Invalid("must not be empty" if self.min_items == 1 else f"must hold at least {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            raise Invalid(f"must hold at most {self.max_items} items, not {len(value)}")
        items = [(index, reading.value(self.item, item, f"{at}[{index}]")) for index, item in enumerate(value)]
        items = [(index, item) for index, item in items if item is not reading.REFUSED]
        if self.unique:
            self._repeats(items, at, reading)
        return tuple(item for _, item in items)

    def _repeats(self, items: list[tuple[int, Any]], at: str, reading: Reading) -> None:
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

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
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

    def text(self, link: Callable[[type], str]) -> str:
        return f"mapping of {self.key.text(link)} to {self.value.text(link)}"


def _present(**keywords: Any) -> dict:
    """The JSON Schema keywords that have a value."""
    return {name: value for name, value in keywords.items() if value is not None}


def _without_article(what: str) -> str:
    first, _, rest = what.partition(" ")
    return rest if first in ("a", "an") and rest else what
