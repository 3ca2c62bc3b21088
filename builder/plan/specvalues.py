"""The kinds of `.pbft-ci.yml`'s values (shared/schema), and the words its problems are said in.

A spec's problems become the reason of an `error` result, which every node signs and the
client compares; they are said as nodes have always said them (`steps[0]: unknown key
'services'`, `commands: must be a non-empty list of strings`), not in the idiom's own words
(`expected a list, got 'x'`), so that a reason reads the same before and after the spec was
declared in the idiom. Hence the `refusal` each kind here is given, and `SPEC_WORDING`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

from builder.plan.artifactpatterns import MAX_PATTERNS, pattern_list
from builder.plan.reportspec import REPORTS, ReportsSpec  # noqa: F401 (the spec's, read from here)
from builder.plan.concurrencyspec import ConcurrencySpec  # noqa: F401 (the spec's, read from here)
from builder.plan.imageref import parse_reference
from shared.config import MAX_SECRETS, SECRET_NAME
from shared.schema import Invalid, Kind, ListOf, Reading, Text, Wording

# Below the kernel's limit on one argument (128 KiB), which the script is passed as.
MAX_SCRIPT_CHARS = 64 * 1024
MAX_VARIABLES = 64
MAX_VALUE_CHARS = 4096
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Names the node sets itself: the CI variables (builder/plan/civars.py), HOME (the build user's),
# and SOURCE_DATE_EPOCH (the commit's time, builder/plan/civars.py).
RESERVED_VARIABLE = re.compile(r"CI|CI_.*|HOME|SOURCE_DATE_EPOCH")

SPEC_WORDING = Wording(unknown=lambda key: f"unknown key {key!r}", required_as_null=True,
                       both="a spec has one or the other")


def spec_reading() -> Reading:
    """A reading of (part of) a spec. A spec names no file to read beside it, so the reading's
    folder is never used."""
    return Reading(Path(), wording=SPEC_WORDING)


def _image(text: str) -> str:
    parse_reference(text)
    return text


# An image reference, checked where it is written (builder/plan/imageref.py).
IMAGE = Text(what="an image reference", check=_image, refusal="must be an image reference of at most 255 characters")


def _command(text: str) -> str:
    if not text.strip():
        raise ValueError("must be a non-empty string")
    if "\0" in text:
        # A shell silently drops a NUL byte, so a command holding one would not run as written.
        raise ValueError("must not contain a NUL byte")
    return text


def _script_size(items: tuple[tuple[int, Any], ...], whole: bool) -> Iterable[tuple[str, str]]:
    # The joined script must fit one argument; YAML aliases can make it far larger than the file.
    if whole and sum(len(command) for _, command in items) > MAX_SCRIPT_CHARS:
        yield "", f"longer than {MAX_SCRIPT_CHARS} characters in all"


# One `sh -e` script, a line per entry: the spec's `commands`, a step's, a service's, an action's.
COMMANDS = ListOf(Text(what="a command", check=_command, refusal="must be a non-empty string"), min_items=1,
                  check=_script_size, refusal="must be a non-empty list of strings")


# `artifacts:`, paths or globs of /workspace (builder/plan/artifactpatterns.py).
ARTIFACTS = pattern_list("artifacts", MAX_PATTERNS)


def _value(text: str) -> str:
    if "\0" in text or len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"must be at most {MAX_VALUE_CHARS} characters, without NUL")
    return text


class Variables(Kind):
    """`environment:`: variables' names to their values, kept as (name, value) pairs in the
    order written. A value is a string; a YAML number or boolean is taken as written (`true`,
    `3`). A name that is none is said at the mapping (it may not make a path), a name the node
    sets itself at the name."""

    noun, blank, refusal = "a mapping of names to values", (), "must be a mapping of names to values"
    VALUE = Text(scalars=True, check=_value, refusal="must be a string, a number or a boolean")

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
        if not isinstance(value, dict):
            raise self.expected(value)
        if len(value) > MAX_VARIABLES:
            raise Invalid(f"at most {MAX_VARIABLES} variables")
        pairs = []
        for name, written in value.items():
            if not isinstance(name, str) or not VARIABLE.fullmatch(name):
                reading.fail(at, f"{str(name)[:40]!r} is not a variable name (letters, digits, _)")
            elif RESERVED_VARIABLE.fullmatch(name):
                reading.fail(f"{at}.{name}", "set by the node, not by a spec")
            elif (kept := reading.value(self.VALUE, written, f"{at}.{name}")) is not reading.REFUSED:
                pairs.append((name, kept))
        return tuple(pairs)

    def json(self, defs: dict) -> dict:
        name = {"type": "string", "pattern": f"^(?:{VARIABLE.pattern})$",
                "not": {"pattern": f"^(?:{RESERVED_VARIABLE.pattern})$"}}
        return {"type": "object", "maxProperties": MAX_VARIABLES, "propertyNames": name,
                "additionalProperties": self.VALUE.json(defs)}

    def text(self, link: Callable[[type], str]) -> str:
        return "mapping of variable names (letters, digits, _) to strings, numbers or booleans"


class Words(Kind):
    """A list of names, or with `single` one name alone, refused as a whole in one sentence
    (`refusal`), at the list's own path: `depends_on`, a `when: status`, an action's `status`
    and `secrets`. `item` is a name's pattern or its choices (None: any string); `keep` makes
    the tuple kept of the names given (`distinct`: each once, in the order written; `choices`:
    in the choices' order), as written otherwise."""

    blank = ()

    def __init__(self, item: re.Pattern | tuple[str, ...] | None, refusal: str, *, single: bool = False,
                 min_items: int = 0, keep: str = "") -> None:
        self.item, self.refusal, self.single, self.min_items, self.keep = item, refusal, single, min_items, keep
        self.noun = "a list of names"

    def _holds(self, name: Any) -> bool:
        if isinstance(self.item, tuple):
            return name in self.item
        return isinstance(name, str) and (self.item is None or bool(self.item.fullmatch(name)))

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
        names = [value] if self.single and isinstance(value, str) else value
        if not isinstance(names, list) or len(names) < self.min_items or not all(map(self._holds, names)):
            raise self.expected(value)
        if self.keep == "choices":
            return tuple(choice for choice in self.item if choice in names)
        return tuple(dict.fromkeys(names)) if self.keep == "distinct" else tuple(names)

    def json(self, defs: dict) -> dict:
        if isinstance(self.item, tuple):
            one = {"enum": list(self.item)}
        else:
            one = {"type": "string", **({} if self.item is None else {"pattern": f"^(?:{self.item.pattern})$"})}
        listed = {"type": "array", "items": one, **({"minItems": self.min_items} if self.min_items else {})}
        return {"anyOf": [one, listed]} if self.single else listed

    def text(self, link: Callable[[type], str]) -> str:
        one = " or ".join(f"`{choice}`" for choice in self.item) if isinstance(self.item, tuple) else "name"
        return f"{one}, or a list of them" if self.single else f"list of ({one})"


class SecretNames(Kind):
    """A step's or service's `secrets:`: the names of the build's secrets it gets, each once."""

    noun, blank = "a list of secret names", ()
    refusal = f"must be a list of at most {MAX_SECRETS} secret names"

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
        if not isinstance(value, list) or len(value) > MAX_SECRETS:
            raise self.expected(value)
        bad = [name for name in value if not isinstance(name, str) or not SECRET_NAME.fullmatch(name)]
        if bad:
            # A list or mapping is named by its kind alone: str() would spell out every alias in
            # it, and a few hundred bytes of aliases stand for a billion items.
            named = {list: "a list", dict: "a mapping"}.get(type(bad[0])) or repr(str(bad[0])[:40])
            raise Invalid(f"{named} is not a secret's name (capitals, digits and _)")
        if len(set(value)) != len(value):
            raise Invalid("names a secret twice")
        return tuple(value)

    def json(self, defs: dict) -> dict:
        return {"type": "array", "items": {"type": "string", "pattern": f"^(?:{SECRET_NAME.pattern})$"},
                "maxItems": MAX_SECRETS, "uniqueItems": True}

    def text(self, link: Callable[[type], str]) -> str:
        return f"list of up to {MAX_SECRETS} secret names (capitals, digits and _)"
