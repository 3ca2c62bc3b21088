"""A spec's `cache:`: directories a repository keeps between its builds on one node
(builder/workspace/caches.py restores and saves them).

    cache:
      paths: [~/.cache/pip, .tox]   # under HOME (~/...) or relative to /workspace
      key_files: [requirements.txt] # optional: the cache key covers these files' contents
"""

from __future__ import annotations

import re
from typing import Iterable

from builder.plan.containerpaths import HOME_DIR, WORKSPACE_DIR
from shared.schema import ListOf, Text, section, setting

MAX_CACHE_PATHS = 16
MAX_KEY_FILES = 16
# Cache paths end up in a shell script and in tar member names; a plain
# character set keeps both free of quoting, globbing and encoding surprises.
_PATH_PART = re.compile(r"[A-Za-z0-9._+@-]+")


def _parts(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' is not allowed")
    if not all(_PATH_PART.fullmatch(part) for part in parts):
        raise ValueError("may hold only letters, digits and . _ - + @ between slashes")
    return parts


def _cache_path(path: str) -> str:
    """'~/…' or a workspace path, normalized: no '.', empty or trailing parts."""
    if not path:
        raise ValueError("must be a non-empty string")
    if path.startswith("/"):
        raise ValueError("must be '~/…' or relative to /workspace, not absolute")
    under_home = path == "~" or path.startswith("~/")
    if path.startswith("~") and not under_home:
        raise ValueError("only '~/' may start a path")
    parts = _parts(path[1:] if under_home else path)
    if not parts:
        raise ValueError("must name a directory below ~ or /workspace, not all of it")
    return ("~/" if under_home else "") + "/".join(parts)


def _key_file(path: str) -> str:
    if not path:
        raise ValueError("must be a non-empty string")
    if path.startswith(("/", "~")):
        raise ValueError("must be relative to /workspace")
    parts = _parts(path)
    if not parts:
        raise ValueError("must name a file")
    return "/".join(parts)


def _no_overlap(items: tuple[tuple[int, str], ...], whole: bool) -> Iterable[tuple[str, str]]:
    """Nested paths would be saved twice and restored in an order that matters."""
    for position, (index, path) in enumerate(items):
        earlier = next((other_index for other_index, other in items[:position]
                        if path == other or path.startswith(other + "/") or other.startswith(path + "/")), None)
        if earlier is not None:
            yield f"[{index}]", f"overlaps paths[{earlier}]"


@section
class CacheSpec:
    """Directories a repository keeps between its builds on one node.

    `paths` are normalized as written ("~/.cache/pip", ".tox"); `key_files`
    are paths relative to /workspace.
    """

    paths: tuple[str, ...] = setting(
        ListOf(Text(what="a directory", check=_cache_path, refusal="must be a non-empty string"), min_items=1,
               max_items=MAX_CACHE_PATHS,
               check=_no_overlap, refusal="must be a non-empty list of strings",
               too_many=f"at most {MAX_CACHE_PATHS} paths"),
        doc=f"up to {MAX_CACHE_PATHS} directories, `~/…` or relative to /workspace, none inside another")
    key_files: tuple[str, ...] = setting(
        ListOf(Text(what="a file", check=_key_file, refusal="must be a non-empty string"), max_items=MAX_KEY_FILES,
               refusal="must be a list of strings", too_many=f"at most {MAX_KEY_FILES} files"),
        default=(), nullable=False, doc="files of the commit, relative to /workspace, whose contents the key covers")

    def container_paths(self) -> tuple[str, ...]:
        """The paths as the build container sees them, absolute."""
        return tuple(_container_path(path) for path in self.paths)


def _container_path(path: str) -> str:
    if path.startswith("~/"):
        return f"{HOME_DIR}/{path[2:]}"
    return f"{WORKSPACE_DIR}/{path}"
