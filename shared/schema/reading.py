"""Reading a document into its sections: every problem found in one pass, each with its path.

A refused value is recorded (`at: reason`) and read as the setting's default (a required
one as its kind's blank), and reading goes on: an operator fixes a file in one pass, as a
compiler's errors let one fix a program. The reading remembers, for each section it built,
where it stands in the document and which of its settings were refused: rules that look
across sections name what they find by its path, and skip a setting read as a stand-in, so
that one mistake is not named twice.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from shared.schema.kinds import FilePath, Invalid, Kind
from shared.schema.sections import Declared, Inline, SectionSchema, schema_of

# PyYAML reads YAML 1.1, where a bare `on`, `yes` or `off` is a boolean even as a key:
# `on: [failure]` arrives keyed True. A section that declares such a key gets it back.
_BOOLEAN_WORDS = {True: ("on", "yes", "true"), False: ("off", "no", "false")}
# Sections with at most this many keys list them after an unknown one.
_MAX_KEYS_LISTED = 10
_FILE_PATH = FilePath()


def join(at: str, key: str) -> str:
    """The path of `key` inside the mapping at `at` ("" is the document itself)."""
    return f"{at}.{key}" if at and key else at or key


class Reading:
    """One reading of a document: where its relative paths start (`base`), the reader's own
    `options` (what a file source reads), and every problem found, one line each."""

    REFUSED = object()  # what `value` returns for a value it recorded as refused

    def __init__(self, base: Path, options: Any = None) -> None:
        self.base, self.options = base, options
        self.problems: list[str] = []
        # For each section read, by id: the section (kept alive, so that ids stay theirs), its
        # path and the fields read as a stand-in for a refused value.
        self._sections: dict[int, tuple[Any, str, frozenset[str]]] = {}

    def fail(self, at: str, reason: str) -> None:
        self.problems.append(f"{at}: {reason}" if at else reason)

    def value(self, kind: Kind, value: Any, at: str) -> Any:
        """`value` read as `kind`, or REFUSED once its problem is recorded."""
        try:
            return kind.read(value, at, self)
        except Invalid as error:
            self.fail(at, str(error))
            return self.REFUSED

    def where(self, instance: Any) -> str:
        """The path of a section this reading built (`repositories[0].notify[1]`)."""
        return self._sections[id(instance)][1]

    def refused(self, instance: Any) -> frozenset[str]:
        """The fields of a section this reading built that hold a stand-in: their values were
        refused, or they were required and left out (problems in a nested section count)."""
        return self._sections[id(instance)][2]

    def section(self, cls: type, mapping: dict, at: str, *, prefix: str = "", fixed: dict | None = None) -> Any:
        """`mapping` read into the section `cls`. `prefix` goes before each key (an inline
        section's); `fixed` gives the fields the document does not set."""
        schema = schema_of(cls)
        mapping = _yaml11_keys(mapping, schema)
        values: dict[str, Any] = {}
        said = {declared.name: declared.key for declared in schema.settings}  # field: key the document used
        given, refused = set(), set()
        for declared in schema.settings:
            before = len(self.problems)
            if isinstance(declared.kind, Inline):
                values[declared.name], present = self._inline(declared, mapping, at, prefix)
            else:
                values[declared.name], present = self._setting(declared, mapping, at, prefix)
            if len(self.problems) > before:
                refused.add(declared.name)
            if present is not None:
                said[declared.name] = present
                given.add(declared.name)
        for key in mapping:
            if key not in schema.keys:
                self.fail(join(at, prefix + str(key)), _unknown(str(key), schema.keys))
        instance = cls(**values, **(fixed or {}))
        if schema.check is not None:
            for key, reason in schema.check(instance, frozenset(given)):
                head, tail = re.fullmatch(r"([^.\[]*)(.*)", key).groups()
                self.fail(join(at, prefix + said.get(head, head) + tail) if key else at, reason)
        self._sections[id(instance)] = (instance, at, frozenset(refused))
        return instance

    def _setting(self, declared: Declared, mapping: dict, at: str, prefix: str) -> tuple[Any, str | None]:
        """The setting's value, and the key the document gave it under (None: left out)."""
        keys = [declared.key] + ([declared.file_key] if declared.file_key else [])
        present = [key for key in keys if mapping.get(key) is not None]
        kind = declared.kind
        fallback = kind.blank if declared.required else kind.absent(declared.default, self)
        if not present:
            if declared.required:
                alternative = f" (or {prefix}{declared.file_key})" if declared.file_key else ""
                self.fail(join(at, prefix + declared.key), f"is required{alternative}")
            return fallback, None
        if len(present) > 1:
            # Which one would win is a guess an operator should not have to make.
            self.fail(join(at, prefix + declared.file_key), f"{declared.key} and {declared.file_key} both set: "
                                                            "keep one")
            return fallback, present[0]
        key = present[0]
        where = join(at, prefix + key)
        if key == declared.key:
            value = self.value(kind, mapping[key], where)
        else:
            value = self._from_file(declared, mapping[key], where)
        return (fallback if value is self.REFUSED else value), key

    def _from_file(self, declared: Declared, name: Any, where: str) -> Any:
        """The value kept in the file `name` (relative to `base`); REFUSED also for a file left
        unread, which leaves the setting at its default."""
        path = self.value(_FILE_PATH, name, where)
        if path is self.REFUSED:
            return path
        try:
            text = declared.setting.file.read(path, self)
        except Invalid as error:
            self.fail(where, str(error))
            return self.REFUSED
        return self.REFUSED if text is None else self.value(declared.kind, text, where)

    def _inline(self, declared: Declared, mapping: dict, at: str, prefix: str) -> tuple[Any, str | None]:
        inline = declared.kind
        inner = {key: mapping[inline.prefix + key] for key in schema_of(inline.cls).keys
                 if mapping.get(inline.prefix + key) is not None}
        if not inner:
            return declared.default, None
        return self.section(inline.cls, inner, at, prefix=prefix + inline.prefix), declared.key


def _yaml11_keys(mapping: dict, schema: SectionSchema) -> dict:
    if not any(isinstance(key, bool) for key in mapping):
        return mapping
    renamed = {}
    for key, value in mapping.items():
        if isinstance(key, bool):
            key = next((word for word in _BOOLEAN_WORDS[key] if word in schema.keys), key)
        renamed[key] = value
    return renamed


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return f"unknown setting; did you mean {close[0]}?"
    if len(known) <= _MAX_KEYS_LISTED:
        return f"unknown setting; known here: {', '.join(known)}"
    return "unknown setting"
