"""The pattern language of a spec's `artifacts:` (builder/workspace/artifacts.py takes the files),
the parts of /workspace the engine archives for them, and the error that says, the same on every
honest node, why a build's artifacts cannot be taken.

A pattern is a path relative to /workspace whose parts hold letters, digits,
`. _ - + @` and the wildcards `*` (any run of characters within one part,
names starting with a dot included) and `?` (one character); a part that is
exactly `**` matches any number of directories, none included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from shared.schema import ListOf, Text

MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 256
MAX_FILES = 256  # the most files one build's artifacts may hold
_PATTERN_PART = re.compile(r"[A-Za-z0-9._+@*?-]+")


def normalize_pattern(text) -> str:
    """`text` as a pattern with no empty or '.' parts; ValueError (a spec problem) if it is not one."""
    if not isinstance(text, str) or not text:
        raise ValueError("must be a non-empty string")
    if len(text) > MAX_PATTERN_CHARS:
        raise ValueError(f"longer than {MAX_PATTERN_CHARS} characters")
    if text.startswith("/"):
        raise ValueError("must be relative to /workspace, not absolute")
    if text.startswith("~"):
        raise ValueError("must be relative to /workspace; artifacts are never taken from HOME")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' is not allowed")
    if not parts:
        raise ValueError("must name files below /workspace, not the workspace itself (use '**' for all)")
    for part in parts:
        if not _PATTERN_PART.fullmatch(part):
            raise ValueError("may hold only letters, digits, . _ - + @ and the wildcards * ? between slashes")
        if "**" in part and part != "**":
            raise ValueError("'**' must be a whole part, as in 'dist/**/*.whl'")
    return "/".join(parts)


def pattern_list(key: str, max_items: int) -> ListOf:
    """The spec kind of a list of patterns under `key` (`artifacts`, `junit`): at least one, at
    most `max_items`, none twice as written or once normalized (`dist` and `./dist/`)."""

    def once(items: tuple[tuple[int, str], ...], whole: bool) -> Iterable[tuple[str, str]]:
        first: dict[str, int] = {}
        for index, pattern in items:
            if pattern in first:
                yield f"[{index}]", f"repeats {key}[{first[pattern]}]"
            first.setdefault(pattern, index)

    return ListOf(Text(what="a path or glob", check=normalize_pattern, refusal="must be a non-empty string"),
                  min_items=1, max_items=max_items, check=once,
                  refusal="must be a non-empty list of paths or globs relative to /workspace",
                  too_many=f"at most {max_items} paths or globs")


@dataclass(frozen=True)
class Pattern:
    """A normalized pattern, compiled."""

    text: str

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.text.split("/"))

    @property
    def root(self) -> str:
        """The top-level workspace entry every match lies in, or "" when the first part is a wildcard."""
        first = self.parts[0]
        return "" if _is_wild(first) else first

    @property
    def literal_dirs(self) -> str:
        """The directories a match must go through, as written before the first wildcard: 'a/b' for 'a/b/*.whl'."""
        dirs = []
        for part in self.parts[:-1]:
            if _is_wild(part):
                break
            dirs.append(part)
        return "/".join(dirs)

    def regex(self) -> re.Pattern:
        pieces = []
        parts = self.parts
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "**":
                pieces.append(".+" if last else "(?:[^/]+/)*")
            else:
                pieces.append("".join(
                    "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char) for char in part
                ) + ("" if last else "/"))
        return re.compile("".join(pieces))


def _is_wild(part: str) -> bool:
    return "*" in part or "?" in part


def archive_roots(patterns: Iterable[str]) -> tuple[str, ...]:
    """The workspace entries to archive so that every match is seen, each once: top-level
    names (sorted), or just "" (all of /workspace) when a pattern starts with a wildcard.

    Top-level only: the engine resolves links in the directories of a path
    it archives (it never follows the last part), so archiving 'dist/sub'
    with 'dist' a link would read another directory of the container.
    """
    roots = {Pattern(text).root for text in patterns}
    return ("",) if "" in roots else tuple(sorted(roots))


def archive_path(root: str, workspace: str = "/workspace") -> str:
    """The container path whose archive covers `root` (one of archive_roots')."""
    return f"{workspace}/{root}" if root else workspace


class ArtifactError(Exception):
    """The build's artifacts cannot be taken; `reason` is the same text on every honest node."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
