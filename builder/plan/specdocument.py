"""The spec file made into the document the spec is read from (builder/plan/spec.py): bounded
in size and in nesting before PyYAML builds it (builder/plan/nesting.py), its anchors merged by
PyYAML, the files it includes merged under it, and its steps' and services' `extends:` applied
(builder/plan/templates.py).

    include: [ci/common.yml, ci/services.yml]   # files of the same commit, merged under this one

Each included file is a mapping like a spec, read at the same commit as the spec (a caller's
`read`, which gives a regular file's bytes or None: builder/workspace/fetch.py reads git's
objects, never the checkout, so a link is never followed); it may include others. They are
merged in the order listed, each on top of the one before, and the including file on top of
them all, GitLab's way (mappings key by key, anything else replaced). A path is relative to
the repository's root, ends .yml or .yaml and has no `.` or `..` part; at most MAX_INCLUDED
files in all, each at most MAX_SPEC_BYTES; a file included again on its own chain is a circle,
refused with the chain. `after:` stays in the spec itself: the action runner reads that file alone.

Pure: the same bytes give every node the same document or the same refusal.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import yaml

from builder.plan.nesting import nesting_problem
from builder.plan.templates import Merger, TooLarge, expand

SPEC_FILE = ".pbft-ci.yml"
MAX_SPEC_BYTES = 64 * 1024
# A top-level key that starts with this is the author's own, never read: a home for YAML
# anchors that steps, services and matrices merge with `<<:` (as in Compose and Woodpecker),
# and for the templates `extends:` names.
EXTENSION = "x-"
INCLUDE = "include"
MAX_INCLUDED = 16
_INCLUDE_PART = re.compile(r"[A-Za-z0-9._-]{1,100}")

Read = Callable[[str], "bytes | None"]


def include_path_problem(path: Any) -> str | None:
    """Why `path` cannot be included, or None: relative to the repository's root, parts of
    letters, digits and . _ - but no `.` or `..` part, ending .yml or .yaml."""
    if not isinstance(path, str) or len(path) > 255:
        return "must be a path of at most 255 characters"
    parts = path.split("/")
    if not all(_INCLUDE_PART.fullmatch(part) and part not in (".", "..") for part in parts):
        return f"{path[:80]!r} must be relative to the repository's root, with no . or .. part"
    if not path.endswith((".yml", ".yaml")):
        return f"{path[:80]!r} must end .yml or .yaml"
    return None


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


def spec_mapping(text: bytes, read: Read | None = None) -> tuple[dict, list[str]]:
    """The spec's top-level mapping with the files it includes (read by `read`; None: none can
    be) and its templates applied, and the problems doing so found (each with its key); a
    ValueError when the file is no mapping at all."""
    document = spec_document(text)
    if not isinstance(document, dict):
        raise ValueError(f"{SPEC_FILE}: must be a mapping with a 'commands' or a 'steps' list")
    inclusion = _Inclusion(read)
    try:
        document = inclusion.under(document, (SPEC_FILE,))
    except TooLarge:
        inclusion.problems.append(f"{INCLUDE}: merging the included files visits too many keys")
    expanded, problems = expand(document, EXTENSION)
    return expanded, inclusion.problems + problems


class _Inclusion:
    """The files one spec includes, read and merged (see the module's docstring)."""

    def __init__(self, read: Read | None) -> None:
        self.read = read
        self.problems: list[str] = []
        self.files = 0
        self.merger = Merger()

    def under(self, document: dict, chain: tuple[str, ...]) -> dict:
        """`document` (the last file of `chain`) on top of the files it includes."""
        paths = document.get(INCLUDE)
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            return document  # the spec's reading says what is wrong with it (or there is none)
        below: dict = {}
        for path in paths:
            included = self._file(path, chain)
            if included is not None:
                below = self.merger.merged(below, included)
        return self.merger.merged(below, document)

    def _file(self, path: str, chain: tuple[str, ...]) -> dict | None:
        """The included file `path` with its own includes merged under it, less its `include`."""
        at = f"{INCLUDE}: {' -> '.join((*chain[1:], path[:80]))}"
        if include_path_problem(path) is not None:
            return None  # said by the spec's reading when the spec itself names it
        if path in chain[1:]:
            self.problems.append(f"{INCLUDE}: the files include each other in a circle: "
                                 f"{' -> '.join((*chain[1:], path))}")
            return None
        self.files += 1
        if self.files > MAX_INCLUDED:
            self.problems.append(f"{INCLUDE}: more than {MAX_INCLUDED} files in all")
            return None
        content = self.read(path) if self.read is not None else None
        if content is None:
            self.problems.append(f"{at}: no regular file of at most {MAX_SPEC_BYTES} bytes there at the commit")
            return None
        try:
            document = spec_document(content)
        except ValueError as refused:
            self.problems.append(f"{at}: {str(refused).removeprefix(SPEC_FILE + ': ')}")
            return None
        if not isinstance(document, dict):
            self.problems.append(f"{at}: must be a mapping of a spec's keys")
            return None
        if "after" in document:
            self.problems.append(f"{at}: after: must be in {SPEC_FILE} itself (the action runner reads it alone)")
            return None
        nested = document.get(INCLUDE)
        if nested is not None and (not isinstance(nested, list) or any(map(include_path_problem, nested))):
            self.problems.append(f"{at}: include: must be a list of paths of .yml or .yaml files")
            return None
        merged = self.under(document, (*chain, path))
        return {key: value for key, value in merged.items() if key != INCLUDE}


def included_files(text: bytes, read: Read) -> tuple[tuple[str, bytes], ...]:
    """The files the spec `text` includes, directly or not, as `read` gives them: what a later,
    pure reading of the spec needs (`dict(...).get` as its `read`). Whatever is wrong with the
    spec is left to that reading to say."""
    found: dict[str, bytes] = {}

    def recorded(path: str) -> bytes | None:
        content = read(path)
        if content is not None:
            found[path] = content
        return content

    try:
        document = spec_document(text)
        if isinstance(document, dict):
            _Inclusion(recorded).under(document, (SPEC_FILE,))  # reads what it includes; templates need no file
    except (ValueError, TooLarge):
        pass
    return tuple(found.items())
