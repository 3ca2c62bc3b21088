"""What a schema tells others, made from the same declarations the reading uses: a JSON
Schema (draft 2020-12), which editors complete and check a document with, and the Markdown
tables of a reference page (key, kind, default, description), one per section. Each kind
says its own part of the JSON Schema (`Kind.json`), a section's object schema among them
(`shared.schema.sections.section_json`).

The JSON Schema says what the kinds and sections say of a value's shape; rules that only
Python code states (a `Text` kind's check, a section's check) stay the reading's, so a
document the schema accepts may still be refused, never the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata

from shared.schema.kinds import Kind
from shared.schema.reading import join
from shared.schema.sections import Declared, Section, json_default, keyed_settings, schema_of, section_json

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(root: type, *, title: str, schema_id: str = "") -> dict:
    """The JSON Schema of a document whose top level is the section `root`."""
    defs: dict[str, dict] = {}
    body = section_json(root, defs)
    head = {"$schema": DIALECT, **({"$id": schema_id} if schema_id else {}), "title": title}
    return {**head, **body, **({"$defs": defs} if defs else {})}


def markdown_reference(root: type, *, title: str) -> list[str]:
    """The reference's lines: for each section, from `root` (headed `title`) down in the
    document's order, a heading (its path, `repositories[].notify[]`), its description and the
    table of its settings. A section that appears in two places is described at the first."""
    paths: dict[type, str] = {}
    _walk(root, "", paths)

    def link(cls: type) -> str:
        heading = paths[cls] or title
        return f"[{heading}](#{anchor(heading)})"

    lines = []
    for cls, path in paths.items():
        lines += [f"## {path or title}", "", schema_of(cls).doc, "", "| key | kind | default | description |",
                  "| --- | --- | --- | --- |"]
        for key, declared in keyed_settings(cls):
            shown_key = f"`{key}`" + (f" (or `{key.removesuffix(declared.key)}{declared.file_key}`)"
                                      if declared.file_key else "")
            # A host's own setting is not part of the network document (shared/networkdoc.py).
            cells = [shown_key, declared.kind.text(link), _default_text(cls, declared),
                     ("*local:* " if declared.setting.local else "") + declared.setting.doc]
            lines.append("| " + " | ".join(map(_cell, cells)) + " |")
        lines.append("")
    return lines


def _cell(text: str) -> str:
    """Text as one table cell: a `|` would end the cell, and a `<name>` outside a code span
    would be taken for HTML and vanish."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if index % 2 else part.replace("<", "&lt;") for index, part in enumerate(parts))


def anchor(heading: str) -> str:
    """The id Python-Markdown's toc (which MkDocs uses) gives a heading."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _walk(cls: type, path: str, paths: dict[type, str]) -> None:
    if cls in paths:
        return
    paths[cls] = path
    for key, declared in keyed_settings(cls):
        for inner, suffix in _nested(declared.kind):
            _walk(inner, join(path, key) + suffix, paths)


def _nested(kind: Kind) -> list[tuple[type, str]]:
    """The sections a kind holds, each with what follows its key in their path."""
    if isinstance(kind, Section):
        return [(kind.cls, "")]
    return [(cls, suffix + inner) for held, suffix in kind.nested() for cls, inner in _nested(held)]


def _default_text(cls: type, declared: Declared) -> str:
    if declared.required:
        return "required"
    either = schema_of(cls).either or ()
    if declared.name in either:
        other = schema_of(cls).declared(either[1 - either.index(declared.name)]).key
        return f"required, or `{other}` in its place" if declared.name == either[0] else f"none: `{other}` instead"
    if declared.setting.shown_default:
        return declared.setting.shown_default
    default = declared.kind.written(declared.default)
    if dataclasses.is_dataclass(default):
        shown = "its section's"
    elif default in (None, "", ()):
        shown = "none"
    else:
        shown = f"`{json.dumps(json_default(default)['default'])}`"
    return shown if declared.setting.nullable else f"{shown}, not null"
