"""The spec file made into the document the spec is read from (builder/plan/spec.py): bounded
in size and in nesting before PyYAML builds it (builder/plan/nesting.py), its anchors merged by
PyYAML, and its steps' and services' `extends:` applied (builder/plan/templates.py).

Pure: the same bytes give every node the same document or the same refusal.
"""

from __future__ import annotations

from typing import Any

import yaml

from builder.plan.nesting import nesting_problem
from builder.plan.templates import expand

SPEC_FILE = ".pbft-ci.yml"
MAX_SPEC_BYTES = 64 * 1024
# A top-level key that starts with this is the author's own, never read: a home for YAML
# anchors that steps, services and matrices merge with `<<:` (as in Compose and Woodpecker),
# and for the templates `extends:` names.
EXTENSION = "x-"


def spec_document(text: bytes) -> Any:
    """The spec's YAML document, as PyYAML builds it, or a ValueError saying why it is not
    built: too large, nested too deeply (builder/plan/nesting.py), or not YAML."""
    if len(text) > MAX_SPEC_BYTES:
        raise ValueError(f"{SPEC_FILE}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        # Checked first: building a document nested deeper recurses past Python's limit.
        problem = nesting_problem(text)
        if problem is not None:
            raise ValueError(f"{SPEC_FILE}: {problem}")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The mark gives line and column only, never a path, so the text is
        # the same on every node.
        raise ValueError(f"{SPEC_FILE}: invalid YAML: {exc}") from None


def spec_mapping(text: bytes) -> tuple[dict, list[str]]:
    """The spec's top-level mapping with its templates applied, and the problems applying them
    found (each with its key); a ValueError when the file is no mapping at all."""
    document = spec_document(text)
    if not isinstance(document, dict):
        raise ValueError(f"{SPEC_FILE}: must be a mapping with a 'commands' or a 'steps' list")
    return expand(document, EXTENSION)
