"""`extends:` in a spec: a step or a service built on named templates, GitLab's rule.

    x-python:                     # a template: a top-level key starting with x-, never read alone
      image: python:3.12
      environment: {PIP_NO_CACHE_DIR: "1"}
    x-tested:
      extends: x-python           # a template may extend others
      retry: 1
    steps:
      - name: test
        extends: x-tested         # or a list, merged in order, each on top of the one before
        commands: [pytest]
        environment: {A: "1"}     # mappings merge key by key; anything else replaces

The entry's own keys go on top of its templates' (each template's on top of those it extends):
a mapping merges key by key, at every depth; a list or a value replaces the one below.
`extends` is applied to the document before the spec is read, once, the same on every node
(`expand`); the entry keeps its `extends` as written. A template that names one not there,
or that is no mapping, is refused at the entry's `extends`; a chain that comes back to where
it started is refused with the chain, as is one longer than MAX_DEPTH.

Pure: a function of the document alone.
"""

from __future__ import annotations

from typing import Any

EXTENDS = "extends"
# How many templates deep a chain may go (GitLab allows 11), and how many one entry names.
MAX_DEPTH = 10
MAX_NAMED = 8
# How many keys the merges of one spec may visit: aliases make a mapping that is small in the
# file and huge when walked, and two of them merged key by key would be walked whole.
MAX_MERGED_KEYS = 100_000
_ENTRIES = ("steps", "services")


class TooLarge(Exception):
    """A merge visited more keys than its Merger allows."""


class Merger:
    """Merges mappings GitLab's way, within a bound on the keys it visits in all: aliases make a
    mapping small in the file and huge when walked, and two of them merged would be walked whole."""

    def __init__(self, budget: int = MAX_MERGED_KEYS) -> None:
        self.budget = budget

    def merged(self, below: dict, above: dict) -> dict:
        """`above` on top of `below`: mappings merge key by key, at every depth; anything else
        in `above` replaces what `below` has. TooLarge past the bound."""
        merged = dict(below)
        for key, value in above.items():
            self.budget -= 1
            if self.budget < 0:
                raise TooLarge
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = self.merged(merged[key], value)
            else:
                merged[key] = value
        return merged


def expand(document: dict, prefix: str) -> tuple[dict, list[str]]:
    """`document` with the `extends` of its steps and services applied (templates are its
    top-level keys starting with `prefix`), and the problems, each with its key."""
    expansion = _Expansion(document, prefix)
    expanded = dict(document)
    for key in _ENTRIES:
        entries = document.get(key)
        if isinstance(entries, list):
            expanded[key] = [expansion.entry(entry, _at(key, index, entry)) for index, entry in enumerate(entries)]
        elif isinstance(entries, dict):
            expanded[key] = {name: expansion.entry(entry, f"{key}.{name}") for name, entry in entries.items()}
    return expanded, expansion.problems


def _at(key: str, index: int, entry: Any) -> str:
    """Where a listed entry is, as the spec's reading says it: by its name once it has one."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{key}.{name}" if isinstance(name, str) and name else f"{key}[{index}]"


class _Expansion:
    """One spec's templates, each resolved once (a template's own `extends` applied)."""

    def __init__(self, document: dict, prefix: str) -> None:
        self.document, self.prefix = document, prefix
        self.problems: list[str] = []
        self.resolved: dict[str, dict] = {}
        self.merger = Merger()

    def entry(self, entry: Any, at: str) -> Any:
        if not isinstance(entry, dict) or EXTENDS not in entry:
            return entry  # the spec's reading says what is wrong with an entry that is no mapping
        try:
            merged = self._on_templates(entry, at, ())
        except TooLarge:
            self.problems.append(f"{at}.{EXTENDS}: merging its templates visits more than {MAX_MERGED_KEYS} keys")
            return entry
        return entry if merged is None else merged

    def _on_templates(self, entry: dict, at: str, chain: tuple[str, ...]) -> dict | None:
        """`entry` on top of the templates its `extends` names, each resolved first; None (with
        a problem said) if one cannot be."""
        names = entry.get(EXTENDS)
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            if chain:  # a template's: nothing else reads it
                self.problems.append(
                    f"{at}.{EXTENDS}: {chain[-1]}.{EXTENDS} must be a template's name or a list of them")
            return None  # an entry's: the spec's reading refuses it in its own words
        if len(names) > MAX_NAMED:
            self.problems.append(f"{at}.{EXTENDS}: at most {MAX_NAMED} templates")
            return None
        below: dict = {}
        for name in names:
            template = self._template(name, at, chain)
            if template is None:
                return None
            below = self.merger.merged(below, template)
        return self.merger.merged(below, entry)

    def _template(self, name: str, at: str, chain: tuple[str, ...]) -> dict | None:
        """The template `name` with its own `extends` applied, less that key."""
        if name in self.resolved:
            return self.resolved[name]
        if not name.startswith(self.prefix) or name not in self.document:
            self.problems.append(f"{at}.{EXTENDS}: {name[:64]!r} is no top-level key starting with {self.prefix}")
            return None
        if name in chain or len(chain) >= MAX_DEPTH:
            shown = " -> ".join((*chain, name))
            self.problems.append(f"{at}.{EXTENDS}: " + (
                f"the templates extend each other in a circle: {shown}" if name in chain
                else f"more than {MAX_DEPTH} templates deep: {shown}"))
            return None
        template = self.document[name]
        if not isinstance(template, dict):
            self.problems.append(f"{at}.{EXTENDS}: {name} must be a mapping to be extended")
            return None
        if EXTENDS in template:
            template = self._on_templates(template, at, (*chain, name))
            if template is None:
                return None
        self.resolved[name] = {key: value for key, value in template.items() if key != EXTENDS}
        return self.resolved[name]
