"""Reading a document into its sections: every problem found in one pass, each with its path.

A refused value is recorded (`at: reason`) and read as the setting's default (a required
one as its kind's blank), and reading goes on: an operator fixes a file in one pass, as a
compiler's errors let one fix a program. The reading remembers, for each section it built,
where it stands in the document and which of its settings were refused: rules that look
across sections name what they find by its path, and skip a setting read as a stand-in, so
that one mistake is not named twice.

A reading may be told that some settings, when the mapping leaves them out, stand in
(`stands_in`): a network document read alone holds none of a host's own settings, which each
host's file gives, and a node's file need not give the client's secrets
(shared/config_files.py, `LoadOptions.stands_in`). Such a setting is read as its default (a
required one as its kind's blank), is not required, and no rule judges it: a section's rule
that names it is not said, and it counts among the section's stand-ins (`refused`), which
rules across sections skip.

The reading says the problems it finds itself (a key it does not know, a setting left out)
in the idiom's words unless it is given a document's own (`Wording`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from shared.schema.kinds import FilePath, Invalid, Kind
from shared.schema.sections import Declared, Inline, SectionSchema, schema_of

# PyYAML reads YAML 1.1, where a bare `on`, `yes` or `off` is a boolean even as a key:
# `on: [failure]` arrives keyed True. A section that declares such a key gets it back.
_BOOLEAN_WORDS = {True: ("on", "yes", "true"), False: ("off", "no", "false")}
# Sections with at most this many keys list them after an unknown one.
_MAX_KEYS_LISTED = 10
_FILE_PATH = FilePath()


@dataclass(frozen=True)
class Wording:
    """How a reading says the problems the idiom finds itself. The default is the idiom's own
    (`nodes[0].prot: unknown setting; did you mean port?` after the section's other problems,
    `nodes[0].port: is required`); a document whose problems have long been said otherwise
    keeps its words: the build spec, whose problems nodes sign as a build's reason."""

    # Given: an unknown key is said in these words at the section's own path, before the
    # section's settings are read (`steps[0]: unknown key 'services'`).
    unknown: Callable[[Any], str] | None = None
    # A required setting left out is read as null: its kind's refusal says what is missing.
    required_as_null: bool = False
    # What is said of both settings of a section's `either` pair given (at `a and b`).
    both: str = "keep one of the two"


def join(at: str, key: str) -> str:
    """The path of `key` inside the mapping at `at` ("" is the document itself)."""
    return f"{at}.{key}" if at and key else at or key


class Reading:
    """One reading of a document: where its relative paths start (`base`), the reader's own
    `options` (what a file source reads), and every problem found, one line each."""

    REFUSED = object()  # what `value` returns for a value it recorded as refused

    def __init__(self, base: Path, options: Any = None, *, wording: Wording = Wording(),
                 stands_in: Callable[[Declared], bool] | None = None) -> None:
        self.base, self.options, self.wording, self.stands_in = base, options, wording, stands_in
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
        refused, or they were required and left out (problems in a nested section count), or
        they stand in for what the mapping leaves to another (`stands_in`)."""
        return self._sections[id(instance)][2]

    def section(self, cls: type, mapping: dict, at: str, *, prefix: str = "", fixed: dict | None = None) -> Any:
        """`mapping` read into the section `cls`. `prefix` goes before each key (an inline
        section's); `fixed` gives the fields the document does not set, or does not set here
        (a named entry's name)."""
        schema = schema_of(cls)
        mapping = self.known(cls, mapping, at, prefix)
        fixed = fixed or {}
        values: dict[str, Any] = {}
        said = {declared.name: declared.key for declared in schema.settings}  # field: key the document used
        given, refused, stood = set(), set(), set()
        for declared in schema.settings:
            if declared.name in fixed:
                continue
            if self._stood_in(declared, mapping, prefix):
                kind = declared.kind
                values[declared.name] = kind.blank if declared.required else kind.absent(declared.default, self)
                stood.add(declared.name)
                continue
            before = len(self.problems)
            if isinstance(declared.kind, Inline):
                values[declared.name], present = self._inline(declared, mapping, at, prefix)
            else:
                values[declared.name], present = self.setting(cls, declared, mapping, (at, prefix))
            if len(self.problems) > before:
                refused.add(declared.name)
            if present is not None:
                said[declared.name] = present
                given.add(declared.name)
        if self.wording.unknown is None:
            for key in mapping:
                if key not in schema.keys:
                    self.fail(join(at, prefix + str(key)), _unknown(str(key), schema.keys))
        instance = cls(**values, **fixed)
        if schema.check is not None:
            # A rule that names a setting standing in judges what another file gives, not this mapping.
            unjudged = {key for declared in schema.settings if declared.name in stood
                        for key in (declared.name, declared.key, declared.file_key) if key}
            for key, reason in schema.check(instance, frozenset(given)):
                head, tail = re.fullmatch(r"([^.\[]*)(.*)", key).groups()
                if head not in unjudged:
                    self.fail(join(at, prefix + said.get(head, head) + tail) if key else at, reason)
        self._sections[id(instance)] = (instance, at, frozenset(refused | stood))
        return instance

    def _stood_in(self, declared: Declared, mapping: dict, prefix: str) -> bool:
        """Whether `declared` stands in: the reading was told so of it, and the mapping gives
        neither its key nor its file's."""
        if self.stands_in is None or isinstance(declared.kind, Inline) or not self.stands_in(declared):
            return False
        keys = [declared.key] + ([declared.file_key] if declared.file_key else [])
        return not any(_present(mapping, prefix + key, declared.setting.nullable or key != declared.key)
                       for key in keys)

    def known(self, cls: type, mapping: dict, at: str, prefix: str = "") -> dict:
        """`mapping` with YAML 1.1's boolean keys named as `cls` declares them; where the
        wording says unknown keys first, each is said now, at `at`, and left out."""
        schema = schema_of(cls)
        mapping = _yaml11_keys(mapping, schema)
        if schema.ignored is not None:
            mapping = {key: value for key, value in mapping.items()
                       if not (isinstance(key, str) and key.startswith(schema.ignored))}
        if self.wording.unknown is None:
            return mapping
        for key in mapping:
            if key not in schema.keys:
                self.fail(at, self.wording.unknown(key))
        return {key: value for key, value in mapping.items() if key in schema.keys}

    def setting(self, cls: type, declared: Declared, mapping: dict, where: tuple[str, str]) -> tuple[Any, str | None]:
        """One setting of the section `cls` read from `mapping`, which stands at `where` (its
        path, and its keys' prefix): its value, and the key the document gave it under (None:
        left out)."""
        at, prefix = where
        either = schema_of(cls).either
        if either is not None and declared.name == either[0]:
            other = schema_of(cls).declared(either[1])
            if _present(mapping, other.key, other.setting.nullable):
                if _present(mapping, declared.key, declared.setting.nullable):
                    self.fail(join(at, f"{prefix}{declared.key} and {prefix}{other.key}"), self.wording.both)
                    return declared.default, declared.key
                return declared.default, None
        keys = [declared.key] + ([declared.file_key] if declared.file_key else [])
        present = [key for key in keys if _present(mapping, key, declared.setting.nullable or key != declared.key)]
        kind = declared.kind
        required = declared.required or (either is not None and declared.name == either[0])
        fallback = kind.blank if required else kind.absent(declared.default, self)
        if not present:
            if required and self.wording.required_as_null:
                value = self.value(kind, None, join(at, prefix + declared.key))
                return (fallback if value is self.REFUSED else value), None
            if required:
                alternative = f" (or {prefix}{declared.file_key})" if declared.file_key else ""
                self.fail(join(at, prefix + declared.key), f"is required{alternative}")
            return fallback, None
        if len(present) > 1:
            # Which one would win is a guess an operator should not have to make.
            self.fail(join(at, prefix + declared.file_key), f"{declared.key} and {declared.file_key} both set: "
                                                            "keep one")
            return fallback, present[0]
        key = present[0]
        where_key = join(at, prefix + key)
        if key == declared.key:
            value = self.value(kind, mapping[key], where_key)
        else:
            value = self._from_file(declared, mapping[key], where_key)
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
        nullable = {inner.key: inner.setting.nullable for inner in schema_of(inline.cls).settings}
        inner = {key: mapping[inline.prefix + key] for key in schema_of(inline.cls).keys
                 if _present(mapping, inline.prefix + key, nullable.get(key, True))}
        if not inner:
            return declared.default, None
        return self.section(inline.cls, inner, at, prefix=prefix + inline.prefix), declared.key


def _present(mapping: dict, key: str, nullable: bool) -> bool:
    """Whether the document gives `key`: a null is "left out" where the setting is nullable."""
    return key in mapping and (mapping[key] is not None or not nullable)


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
