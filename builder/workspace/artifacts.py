"""Build artifacts: the files a `.pbft-ci.yml` names under `artifacts:`, and their sha256 digests.

    artifacts:
      - dist/*.whl          # a glob, relative to /workspace
      - out/app.bin         # or one file
      - reports             # a directory stands for every file beneath it

A pattern is a path relative to /workspace whose parts hold letters, digits,
`. _ - + @` and the wildcards `*` (any run of characters within one part,
names starting with a dot included) and `?` (one character); a part that is
exactly `**` matches any number of directories, none included. An entry a
pattern matches is selected; an entry below a selected directory is
selected too.

The node reads the workspace as the Docker engine's archive of it (tar), never
through the container's own tools, and `Collector` turns that archive into the
selected files and their digests. Only regular files are artifacts. Links are
never followed: a selected symbolic link, device or fifo, or a symbolic link
on a pattern's literal way (`dist` for `dist/*.whl`), ends the build as
`error`, as do more files or bytes than the limits, a name outside the
pattern character set, and a pattern that selects no file. A reason is
decided once the whole archive is read and names the first offending path
in sorted order, not the first one met, so honest nodes that saw the same
tree give the same text. (Two exceptions, both fixed by the tree alone:
reading stops at MAX_SCANNED_ENTRIES, and a hard link is refused when the
name the engine met first, walking in lexical order, is not an artifact.)

No Docker and no network here: `Collector` reads file objects and writes the
selected files under a directory it is given.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from builder.plan.artifactpatterns import MAX_FILES, ArtifactError, Pattern, archive_path


WORKSPACE_ARCHIVE_NAME = "workspace"  # the engine names the entries of /workspace's archive "workspace/…"
# Entries of the archives read (files, directories, links, whether selected
# or not). Reading the archive costs the node time, so a build that fills its
# workspace with millions of empty files cannot make it read them all.
MAX_SCANNED_ENTRIES = 500_000
MAX_PATH_CHARS = 1024
_NAME_PART = re.compile(r"[A-Za-z0-9._+@-]+")
_CHUNK_BYTES = 1024 * 1024
# How a refused entry is described, by tar type; anything else is "not a regular file".
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.CHRTYPE: "a device",
    tarfile.BLKTYPE: "a device",
    tarfile.FIFOTYPE: "a fifo",
}


@dataclass(frozen=True)
class ArtifactCopy:
    """The artifacts a spec build declares, and where the node puts them after it exits 0.

    The files are read from the engine's archive of the workspace, kept
    mounted after the build by the holder (see run_container), and written
    under `dest`, a directory of this node, by the `collector()` the engine
    streams that archive into (builder/engine/transfer.py).
    """

    patterns: tuple[str, ...]
    dest: Path
    max_bytes: int
    max_files: int = MAX_FILES

    def collector(self) -> Collector:
        """A fresh reader of the workspace's archives, writing the selected files under `dest`."""
        return Collector(self.patterns, self.dest, max_bytes=self.max_bytes, max_files=self.max_files)


class Collector:
    """Reads archives of the workspace and keeps the selected regular files under `dest`.

    Call `add_archive` once per root of `archive_roots(patterns)` whose path
    exists, then `finish`, which returns the digests or raises ArtifactError.
    Files are written while the limits hold; `dest` is the caller's to remove
    when `finish` raises.
    """

    def __init__(
        self, patterns: Iterable[str], dest: Path, *, max_bytes: int, max_files: int = MAX_FILES,
        max_entries: int = MAX_SCANNED_ENTRIES,
    ):
        self._patterns = tuple(Pattern(text) for text in patterns)
        self._regexes = tuple(pattern.regex() for pattern in self._patterns)
        self._dest = dest
        self._max_bytes = max_bytes
        self._max_files = max_files
        self.max_entries = max_entries
        self._entries = 0
        self._selected_dirs: dict[str, frozenset[int]] = {}
        self._hits: set[int] = set()
        self._refused: dict[str, str] = {}  # path → why it cannot be an artifact
        self._bad_names: set[str] = set()
        self._sizes: dict[str, int] = {}  # every selected regular file, written or not
        self._digests: dict[str, str] = {}  # the files written, "sha256:<hex>"
        self._total_bytes = 0

    def add_archive(self, archive: IO[bytes], root: str) -> None:
        """Read one archive of `root` ("" for all of /workspace) as the engine streams it."""
        prefix = WORKSPACE_ARCHIVE_NAME if root == "" else root
        try:
            with tarfile.open(fileobj=archive, mode="r|") as tar:
                for member in tar:
                    self._entries += 1
                    if self._entries > self.max_entries:
                        raise ArtifactError(
                            f"artifacts: more than {self.max_entries} entries to search under "
                            f"{archive_path(root)}; name the files more narrowly"
                        )
                    path = _relative(member.name, prefix, root)
                    if path is not None:
                        self._take(tar, member, path, prefix, root)
        except tarfile.TarError as exc:
            # The engine's archive, not the build: this node could not read it.
            raise OSError(f"unreadable workspace archive: {exc}") from None

    def finish(self) -> dict[str, str]:
        """The artifacts as `{path: "sha256:<hex>"}`, sorted by path."""
        if self._refused:
            first = min(self._refused)
            more = len(self._refused) - 1
            raise ArtifactError(
                f"artifacts: {_shown(first)} is {self._refused[first]}: only regular files are artifacts, "
                "and links are not followed" + (f" ({more} more such entries)" if more else "")
            )
        if self._bad_names:
            first = min(self._bad_names)
            more = len(self._bad_names) - 1
            raise ArtifactError(
                f"artifacts: {_shown(first)}: artifact paths may hold only letters, digits and . _ - + @ "
                f"between slashes, at most {MAX_PATH_CHARS} characters"
                + (f" ({more} more such paths)" if more else "")
            )
        if len(self._sizes) > self._max_files:
            raise ArtifactError(f"artifacts: {len(self._sizes)} files, more than the limit of {self._max_files}")
        if self._total_bytes > self._max_bytes:
            raise ArtifactError(f"artifacts: more than {_megabytes(self._max_bytes)} in all")
        missing = [
            f"artifacts[{index}] {pattern.text!r} matched no file"
            for index, pattern in enumerate(self._patterns)
            if index not in self._hits
        ]
        if missing:
            raise ArtifactError("; ".join(missing))
        return dict(sorted(self._digests.items()))

    def _take(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, prefix: str, root: str) -> None:
        matched = frozenset(index for index, regex in enumerate(self._regexes) if regex.fullmatch(path))
        selected = matched | self._inherited(path)
        if member.isdir():
            if selected:
                self._selected_dirs[path] = selected
            return
        if member.issym():
            self._check_link_on_the_way(path)
        if not selected:
            return
        if not (member.isreg() or member.islnk()):
            self._refused[path] = _KINDS.get(member.type, "not a regular file")
            return
        if len(path) > MAX_PATH_CHARS or not all(_NAME_PART.fullmatch(part) for part in path.split("/")):
            self._bad_names.add(path)
            return
        if path in self._sizes:
            raise OSError(f"workspace archive holds {path!r} twice")
        link_target = None
        if member.islnk():
            # The engine stores the first name of a file it meets (walking
            # names in lexical order) as the file and every later name as a
            # link to it, whose bytes the stream no longer holds unless that
            # first name was an artifact. Which name comes first depends only
            # on the tree, so a refusal is the same on every honest node.
            link_target = _relative(member.linkname, prefix, root)
            if link_target not in self._sizes:
                self._refused[path] = f"a hard link to {_shown(link_target)}, which is not an artifact"
                return
            size = self._sizes[link_target]
        else:
            size = member.size
        self._hits |= selected
        self._sizes[path] = size
        self._total_bytes += size
        over = len(self._sizes) > self._max_files or self._total_bytes > self._max_bytes
        if self._bad_names or self._refused or over:
            return  # The build ends as an error: its files are not worth writing.
        target = self._dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if link_target is not None:
            shutil.copyfile(self._dest / link_target, target)
            self._digests[path] = self._digests[link_target]
        else:
            self._digests[path] = _write(tar.extractfile(member), target, size)

    def _inherited(self, path: str) -> frozenset[int]:
        """The patterns that selected a directory `path` lies in."""
        found: frozenset[int] = frozenset()
        end = path.find("/")
        while end != -1:
            found |= self._selected_dirs.get(path[:end], frozenset())
            end = path.find("/", end + 1)
        return found

    def _check_link_on_the_way(self, path: str) -> None:
        """A symbolic link where a pattern names a directory: the engine's archive never follows it."""
        for pattern in self._patterns:
            dirs = pattern.literal_dirs
            if dirs == path or dirs.startswith(path + "/"):
                self._refused[path] = "a symbolic link"


def _relative(name: str, prefix: str, root: str) -> str | None:
    """An archive entry's path relative to /workspace; None for the archived directory itself.

    The engine names entries after the archived path's last part; anything
    else (absolute, '..', another prefix) is not from an honest engine.
    """
    name = name.rstrip("/")
    if name == prefix:
        return None if root == "" else root
    if not name.startswith(prefix + "/"):
        raise OSError(f"workspace archive entry {name!r} lies outside {prefix!r}")
    relative = name[len(prefix) + 1:] if root == "" else name
    if any(part in ("", ".", "..") for part in relative.split("/")):
        raise OSError(f"workspace archive entry {name!r} is not a plain path")
    return relative


def _write(source: IO[bytes], target: Path, size: int) -> str:
    digest = hashlib.sha256()
    written = 0
    with open(target, "xb") as file:
        while chunk := source.read(_CHUNK_BYTES):
            digest.update(chunk)
            file.write(chunk)
            written += len(chunk)
    if written != size:
        raise OSError(f"workspace archive cut short in {target.name!r}")
    return "sha256:" + digest.hexdigest()


def _shown(path: str) -> str:
    """A path as a reason shows it: printable ASCII (escapes otherwise), at most 120 characters."""
    text = ascii(path)[1:-1]
    return text if len(text) <= 120 else text[:117] + "..."


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / (1024 * 1024):g} MB"
