"""One way to declare the shape of a YAML document, and to read one: the network
configuration (shared/config.py) is declared with it.

A document is a tree of sections, each a frozen dataclass whose fields are declared with
their kind and a one-line description (`shared.schema.sections`); the kinds
(`shared.schema.kinds`) are integers and numbers with bounds, booleans, strings with a
pattern or a check, choices, paths, lists and mappings of other kinds, and nested sections.
Named lists (`shared.schema.named`: a list or a mapping of names to entries) and unions
(`OneOf`) hold sections too. From that one declaration come the reading
(`shared.schema.reading`: every problem at once, each with its path,
`repositories[2].build_network: expected a boolean, got 'yes'`, or in a document's own words,
`Wording`), a JSON Schema and the tables of a Markdown reference (`shared.schema.outputs`).
"""

from shared.schema.kinds import (
    Bool, Choice, FilePath, Int, Invalid, Kind, ListOf, MapOf, Number, OneOf, Text, shown,
)
from shared.schema.named import Named
from shared.schema.outputs import json_schema, markdown_reference
from shared.schema.reading import Reading, Wording
from shared.schema.sections import FileSource, Inline, Section, held, schema_of, section, setting

__all__ = [
    "Bool", "Choice", "FilePath", "FileSource", "Inline", "Int", "Invalid", "Kind", "ListOf", "MapOf", "Named",
    "Number", "OneOf", "Reading", "Section", "Text", "Wording", "held", "json_schema", "markdown_reference",
    "schema_of", "section", "setting", "shown",
]
