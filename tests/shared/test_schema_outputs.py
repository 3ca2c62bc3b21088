"""What the schema idiom tells others (shared/schema/outputs.py): a JSON Schema (draft 2020-12)
and the tables of a Markdown reference, both from the declarations the reading uses."""

from __future__ import annotations

import re
from pathlib import Path

from shared.schema import (
    Bool, Choice, FilePath, Inline, Int, ListOf, MapOf, Number, Reading, Section, Text, json_schema,
    markdown_reference, section, setting,
)
from shared.schema.outputs import anchor


class NoFile:
    def read(self, path: Path, reading: Reading) -> str | None:
        return None


@section
class Address:
    """Where a thing listens; its keys stand in the enclosing mapping."""

    host: str = setting(Text(), default="", doc="a host")
    port: int = setting(Int(1, 65535), default=80, doc="a port")


@section
class Part:
    """One part of a machine."""

    name: str = setting(Text(re.compile(r"[a-z]+"), what="a part name"), doc="what the part is called")
    spares: int = setting(Int(minimum=0), default=0, doc="how many are kept")


@section
class Machine:
    """A machine, declared with every kind."""

    name: str = setting(Text(re.compile(r"[a-z]+"), what="a machine name"), doc="what it is called")
    parts: tuple[Part, ...] = setting(ListOf(Section(Part), min_items=1, max_items=4, unique="name"),
                                      doc="what it is made of")
    key: str = setting(Text(secret=True), file=NoFile(), doc="what opens it")
    speed: float = setting(Number(above=0), default=1.0, doc="how fast it runs | in turns")
    delay_s: float = setting(Number(minimum=0), default=0.5, doc="how long it waits")
    loud: bool = setting(Bool(), default=False, doc="whether it is loud")
    mode: str = setting(Choice(("on", "off")), default="on", doc="its mode")
    tags: tuple[str, ...] = setting(ListOf(Text(), unique=True), default=("new",), doc="labels, e.g. <kind>")
    owners: tuple[str, ...] = setting(ListOf(Text(), single=True), default=(), doc="who owns it")
    settings: tuple = setting(MapOf(Text(re.compile(r"[A-Z]+"), what="a name"), Int(), max_items=8), default=(),
                              doc="numbers it is tuned with")
    manual: Path = setting(FilePath(), default=Path("manual.pdf"), doc="its manual")
    address: Address = setting(Inline(Address, "listen_"), default=Address(), doc="where it listens")
    spare: Part | None = setting(Section(Part), default=None, doc="a part kept aside")


SCHEMA = json_schema(Machine, title="machine.yml", schema_id="https://example.org/machine.schema.json")


def test_the_json_schema_is_draft_2020_12_with_each_section_once_in_defs():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (SCHEMA["$id"], SCHEMA["title"], SCHEMA["type"]) == (
        "https://example.org/machine.schema.json", "machine.yml", "object")
    assert SCHEMA["description"] == "A machine, declared with every kind."
    assert SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["name", "parts"]
    assert set(SCHEMA["$defs"]) == {"Part"}  # held twice, described once
    assert SCHEMA["$defs"]["Part"]["required"] == ["name"]


def test_each_kind_has_its_json_form_and_an_optional_setting_may_be_null():
    properties = SCHEMA["properties"]
    assert properties["name"] == {"type": "string", "pattern": "^(?:[a-z]+)$", "description": "what it is called"}
    assert properties["speed"] == {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                                   "description": "how fast it runs | in turns", "default": 1.0}
    assert properties["delay_s"]["anyOf"][0] == {"type": "number", "minimum": 0}
    assert properties["loud"]["anyOf"][0] == {"type": "boolean"} and properties["loud"]["default"] is False
    assert properties["mode"]["anyOf"][0] == {"enum": ["on", "off"]}
    assert properties["parts"] == {"type": "array", "items": {"$ref": "#/$defs/Part"}, "minItems": 1, "maxItems": 4,
                                   "description": "what it is made of"}
    assert properties["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    assert properties["tags"]["default"] == ["new"]
    assert properties["owners"]["anyOf"][0] == {"anyOf": [{"type": "string"},
                                                          {"type": "array", "items": {"type": "string"}}]}
    assert properties["settings"]["anyOf"][0] == {
        "type": "object", "propertyNames": {"type": "string", "pattern": "^(?:[A-Z]+)$"},
        "additionalProperties": {"type": "integer"}, "maxProperties": 8}
    assert properties["manual"]["anyOf"][0] == {"type": "string", "minLength": 1}
    assert properties["manual"]["default"] == "manual.pdf"
    assert properties["spare"]["anyOf"][0] == {"$ref": "#/$defs/Part"}


def test_an_inline_sections_keys_and_a_files_key_are_the_sections_own():
    properties = SCHEMA["properties"]
    assert properties["listen_port"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 65535}
    assert "address" not in properties
    assert "key" not in SCHEMA["required"]  # it may come from key_file instead
    assert properties["key_file"]["anyOf"][0] == {"type": "string", "minLength": 1}
    assert SCHEMA["allOf"] == [{"not": {"required": ["key", "key_file"]}}, {"anyOf": [
        {"required": ["key"], "properties": {"key": {"not": {"type": "null"}}}},
        {"required": ["key_file"], "properties": {"key_file": {"not": {"type": "null"}}}},
    ]}]


REFERENCE = markdown_reference(Machine, title="Top level")


def test_the_reference_has_a_table_per_section_headed_by_its_path():
    headings = [line for line in REFERENCE if line.startswith("## ")]
    assert headings == ["## Top level", "## parts[]"]  # `spare` is a Part too: described once
    assert REFERENCE[2] == "A machine, declared with every kind."
    assert REFERENCE[4:6] == ["| key | kind | default | description |", "| --- | --- | --- | --- |"]


def test_each_row_says_key_kind_default_and_description():
    top_level = REFERENCE[:REFERENCE.index("## parts[]")]
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in top_level if line.startswith("| `")}
    assert rows["`name`"] == "| `name` | string: machine name | required | what it is called |"
    assert rows["`speed`"] == "| `speed` | number > 0 | `1.0` | how fast it runs \\| in turns |"
    assert rows["`mode`"] == "| `mode` | one of `on`, `off` | `\"on\"` | its mode |"
    assert rows["`parts`"] == ("| `parts` | list of 1 to 4 (mapping: [parts[]](#parts)) | required "
                               "| what it is made of |")
    # A `<name>` outside a code span would be taken for HTML.
    assert rows["`tags`"] == '| `tags` | list of (string) | `["new"]` | labels, e.g. &lt;kind> |'
    assert rows["`owners`"] == "| `owners` | string, or a list of them | none | who owns it |"
    assert rows["`key` (or `key_file`)"] == "| `key` (or `key_file`) | string | required | what opens it |"
    assert rows["`listen_host`"].startswith("| `listen_host` | string | none |")
    assert rows["`spare`"] == "| `spare` | mapping: [parts[]](#parts) | none | a part kept aside |"


def test_a_heading_s_anchor_is_the_one_mkdocs_gives_it():
    assert anchor("Top level") == "top-level"
    assert anchor("repositories[].notify[]") == "repositoriesnotify"
    assert anchor("nodes[].docker_tls") == "nodesdocker_tls"
