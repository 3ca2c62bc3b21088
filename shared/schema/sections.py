"""Sections: a mapping of settings declared once, as a frozen dataclass.

Each field that a document sets is declared with `setting(kind, doc=...)`, the way
pbft/wire.py declares a message's fields with `wire(kind)`; the dataclass default is the
setting's default, and a field without one is required. A field declared without `setting`
is not read from the document: the program derives it (a node's URL scheme from `tls:`).

    @section
    class ScheduleConfig:
        \"\"\"A build the client submits on a clock.\"\"\"

        name: str = setting(NAME, doc="names the schedule in the client's log")
        cron: str = setting(CRON, doc="when, in UTC")

`@section(check=...)` adds rules across a section's fields: a function of the section read
and of the names of the fields the document gave (whether or not their values held), which
yields (key, reason) for each problem; a key is a field's name (said as the key the document
used for it), another key of the section, or "" for the section itself. `either=(a, b)`
names two settings of which the document gives exactly one (a build spec's `commands` or
`steps`): the first is required unless the second is given. `ignored="x-"` leaves the keys
that start with it to the document's author: never read, allowed by the JSON Schema.

A section held in another is a kind (`Section`, or `Inline` for keys that stand in the
enclosing mapping); like every kind it says its own JSON Schema, the object schema of its
section's settings (`section_json`), which shared/schema/outputs.py puts together.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from shared.schema.kinds import Kind, Reader

Check = Callable[[Any, frozenset], Iterable[tuple[str, str]]]


class FileSource(Protocol):
    """Where a setting's value may be kept instead of the document: a file named by
    `<key>_file`. `read` returns the file's text, None to leave the setting at its default
    unread, or raises Invalid."""

    def read(self, path: Path, reading: Reader) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a section's field is set in the document."""

    kind: Kind
    doc: str  # one line, for the reference's table and the JSON Schema's description
    key: str = ""  # the document's key when it is not the field's name ("from": a Python keyword)
    file: FileSource | None = None  # the value may be kept in the file `<key>_file` names instead
    shown_default: str = ""  # the default in words, where the loader works it out
    # Whether null is "left out". When it is not, a null is read as a value, which the kind
    # refuses: in a build spec `steps: null` is a mistake, as it has always been.
    nullable: bool = True
    # A node's own setting (its folders, its engine, its files), as opposed to the network's:
    # left out of the agreed network document (shared/networkdoc.py), so two hosts may differ.
    local: bool = False


def setting(kind: Kind, *, doc: str, default: Any = dataclasses.MISSING, **how: Any) -> Any:
    """A dataclass field that the document sets as `kind`; without `default` it is required.
    `how` gives the rest of Setting (`key`, `file`, `shown_default`, `nullable`, `local`). A secret's
    field is left out of the dataclass's repr, so a printed section does not leak it."""
    assert doc and "\n" not in doc, "every setting has a one-line description"
    return dataclasses.field(default=default, repr=not getattr(kind, "secret", False),
                             metadata={"setting": Setting(kind, doc, **how)})


@dataclasses.dataclass(frozen=True)
class Declared:
    """A setting as reading it needs it: its field, its key, its default."""

    name: str
    key: str
    setting: Setting
    default: Any  # dataclasses.MISSING: required

    @property
    def kind(self) -> Kind:
        return self.setting.kind

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def file_key(self) -> str | None:
        return None if self.setting.file is None else f"{self.key}_file"


@dataclasses.dataclass(frozen=True)
class SectionSchema:
    """What reading a section and describing it need, made once when the class is declared."""

    doc: str  # the first line of the class's docstring
    settings: tuple[Declared, ...]
    check: Check | None
    keys: tuple[str, ...]  # every key, in declaration order (an inline section's in its place)
    either: tuple[str, str] | None = None  # two fields of which the document gives exactly one
    ignored: str | None = None  # a key starting with this is the author's own: never read, always allowed

    def declared(self, name: str) -> Declared:
        """The setting of the field `name`."""
        return next(declared for declared in self.settings if declared.name == name)


def _keys(settings: tuple[Declared, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for declared in settings:
        if isinstance(declared.kind, Inline):
            found += [declared.kind.prefix + key for key in schema_of(declared.kind.cls).keys]
        else:
            found += [declared.key] + ([declared.file_key] if declared.file_key else [])
    return tuple(found)


_SCHEMAS: dict[type, SectionSchema] = {}


def section(cls: type | None = None, *, check: Check | None = None, either: tuple[str, str] | None = None,
            ignored: str | None = None) -> Any:
    """Make a class a section: a frozen dataclass read from a mapping by its settings. A key
    that starts with `ignored` is left to the document's author (a home for YAML anchors)."""

    def declare(cls: type) -> type:
        doc = (cls.__doc__ or "").strip()
        assert doc, f"section {cls.__name__} says what it is in a docstring"
        cls = dataclasses.dataclass(frozen=True)(cls)
        settings = tuple(
            Declared(field.name, field.metadata["setting"].key or field.name, field.metadata["setting"],
                     field.default)
            for field in dataclasses.fields(cls) if "setting" in field.metadata
        )
        schema = SectionSchema(doc.splitlines()[0], settings, check, _keys(settings), either, ignored)
        assert ignored is None or not any(key.startswith(ignored) for key in schema.keys), "no setting is ignored"
        assert either is None or not any(schema.declared(name).required for name in either), "either is optional"
        _SCHEMAS[cls] = schema
        return cls

    return declare if cls is None else declare(cls)


def schema_of(cls: type) -> SectionSchema:
    return _SCHEMAS[cls]


def held(kind: Any) -> tuple[type | None, bool]:
    """The section a setting's kind holds, and whether as a list of them (ListOf(Section)):
    (None, False) for a plain value."""
    listed = getattr(getattr(kind, "item", None), "cls", None)
    if listed is not None:
        return listed, True
    return getattr(kind, "cls", None), False


class Section(Kind):
    """A nested section: a mapping read into `cls`. `nonempty`: an empty mapping is refused as
    a value that is not one (a `when:` that names nothing); `refusal`: the reason given."""

    noun = "a mapping"

    def __init__(self, cls: type, *, refusal: str = "", nonempty: bool = False) -> None:
        assert cls in _SCHEMAS, f"{cls.__name__} is not a @section"
        self.cls, self.refusal, self.nonempty = cls, refusal, nonempty

    def read(self, value: Any, at: str, reading: Reader) -> Any:
        if not isinstance(value, dict) or (self.nonempty and not value):
            raise self.expected(value)
        return reading.section(self.cls, value, at)

    def json(self, defs: dict) -> dict:
        if self.cls.__name__ not in defs:
            defs[self.cls.__name__] = {}  # taken before it is made: a section may hold itself
            defs[self.cls.__name__] = section_json(self.cls, defs)
        reference = {"$ref": f"#/$defs/{self.cls.__name__}"}
        return {**reference, "minProperties": 1} if self.nonempty else reference

    def text(self, link: Callable[[type], str]) -> str:
        return f"mapping: {link(self.cls)}"


class Inline(Kind):
    """A section whose keys stand in the enclosing mapping itself, each after `prefix`
    (a node's `docker_host` and `docker_tls` make its engine). Set when any of them is."""

    def __init__(self, cls: type, prefix: str) -> None:
        assert cls in _SCHEMAS, f"{cls.__name__} is not a @section"
        # Set when any of its keys is: a required one would be required of every enclosing mapping.
        assert not any(declared.required for declared in _SCHEMAS[cls].settings), "its keys are all optional"
        self.cls, self.prefix = cls, prefix

    def read(self, value: Any, at: str, reading: Reader) -> Any:
        raise AssertionError("an inline section is read with the mapping that holds it")

    def json(self, defs: dict) -> dict:
        raise AssertionError("an inline section's keys are the enclosing section's")

    def text(self, link: Callable[[type], str]) -> str:
        raise AssertionError("an inline section's keys are the enclosing section's")


def keyed_settings(cls: type, prefix: str = "") -> Iterator[tuple[str, Declared]]:
    """A section's settings with their keys, an inline section's in its place."""
    for declared in schema_of(cls).settings:
        if isinstance(declared.kind, Inline):
            yield from keyed_settings(declared.kind.cls, prefix + declared.kind.prefix)
        else:
            yield prefix + declared.key, declared


def section_json(cls: type, defs: dict) -> dict:
    """The object schema of one section, in JSON Schema (shared/schema/outputs.py); its nested
    sections go to `defs`."""
    properties: dict[str, dict] = {}
    required: list[str] = []
    rules: list[dict] = []
    for key, declared in keyed_settings(cls):
        value = declared.kind.json(defs)
        described = {"description": declared.setting.doc}
        default = {} if declared.required or declared.setting.shown_default else json_default(
            declared.kind.written(declared.default))
        if declared.required and declared.file_key is None:
            properties[key] = {**value, **described}
            required.append(key)
        elif not declared.setting.nullable:
            properties[key] = {**value, **described, **default}  # null is a value, which the kind refuses
        else:
            # The reading takes null for "left out": a default, or the value in the file.
            properties[key] = {"anyOf": [value, {"type": "null"}], **described, **default}
        if declared.file_key is not None:
            file_key = key.removesuffix(declared.key) + declared.file_key
            properties[file_key] = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}],
                                    "description": f"a file that holds {key}, in its place"}
            rules.append({"not": {"required": [key, file_key]}})
            if declared.required:
                # One of the two set, and not to null (which reads as left out).
                rules.append({"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                                        for name in (key, file_key)]})
    either = schema_of(cls).either
    if either is not None:
        given = [_given(schema_of(cls).declared(name)) for name in either]
        rules += [{"not": {"allOf": given}}, {"anyOf": given}]
    schema = {"type": "object", "description": schema_of(cls).doc, "properties": properties,
              "additionalProperties": False}
    if schema_of(cls).ignored is not None:
        schema["patternProperties"] = {f"^{re.escape(schema_of(cls).ignored)}": {}}
    return {**schema, **({"required": required} if required else {}), **({"allOf": rules} if rules else {})}


def _given(declared: Declared) -> dict:
    """A setting the document gives: present, and not null where null reads as left out."""
    if not declared.setting.nullable:
        return {"required": [declared.key]}
    return {"required": [declared.key], "properties": {declared.key: {"not": {"type": "null"}}}}


def json_default(default: Any) -> dict:
    """A setting's default as JSON Schema's `default` says it (none for a section's)."""
    if dataclasses.is_dataclass(default):
        return {}  # a section's defaults are its own settings'
    if isinstance(default, tuple):
        return {"default": [str(item) if isinstance(item, Path) else item for item in default]}
    return {"default": str(default) if isinstance(default, Path) else default}
