"""Where a node keeps its builds' artifacts, and how it reads one back, checked.

Layout under the node's data directory:

    artifacts/<repository>/<build id>/manifest.json   what the build left: digests and sizes
    artifacts/<repository>/<build id>/files/<path>    the bytes, as copied out of the workspace
    artifacts/.incoming-<build id>/                   a build's artifacts being copied; swept at start

The manifest is `{"build", "repository", "commit", "artifacts": {path:
"sha256:<hex>"}, "sizes": {path: bytes}}`; its `artifacts` are exactly the
digests the executor returned with the build's result. The artifacts of the
newest `keep` builds of each repository are kept, by when they were stored.

A file is read back only under a path its manifest lists, and served only if
its bytes still have the recorded digest: a file changed on this node's disk
is refused, not passed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from builder.workspace.caches import newest_first
from pbft.attestation import is_manifest_entry

MANIFEST = "manifest.json"
FILES = "files"
_INCOMING = ".incoming-"
READ_CHUNK_BYTES = 256 * 1024


class ArtifactUnavailable(Exception):
    """The artifact cannot be served; `status` is the HTTP status that says why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Artifact:
    path: str
    digest: str  # "sha256:<hex>", as recorded and as the bytes have it
    file: BinaryIO  # open at its start; the caller closes it. Pruning cannot take the bytes from under it.
    size: int


class ArtifactStore:
    def __init__(self, data_dir: Path, *, keep: int):
        self._root = Path(data_dir) / "artifacts"
        self._keep = keep

    def incoming(self, build_id: str) -> Path:
        """A fresh, empty directory the build's artifacts are copied into."""
        directory = self._root / f"{_INCOMING}{build_id}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return directory

    def discard(self, incoming: Path) -> None:
        shutil.rmtree(incoming, ignore_errors=True)

    def sweep(self) -> None:
        """Delete what builds of a killed earlier process were copying."""
        if self._root.is_dir():
            for leftover in self._root.glob(f"{_INCOMING}*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def store(
        self, *, repository: str, build_id: str, commit: str, incoming: Path, digests: dict[str, str]
    ) -> tuple[dict[str, int], int]:
        """Keep the files copied into `incoming` as the build's artifacts.

        Returns each file's size and how many builds of the repository are
        kept now.

        A build run again (its node restarted mid-build) replaces what an
        earlier run of it stored.
        """
        sizes = {path: (incoming / path).stat().st_size for path in digests}
        manifest = {
            "build": build_id, "repository": repository, "commit": commit,
            "artifacts": dict(sorted(digests.items())), "sizes": dict(sorted(sizes.items())),
        }
        staged = incoming.with_name(incoming.name + ".stored")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        os.replace(incoming, staged / FILES)
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        final = self._root / repository / build_id
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staged, final)
        # Stored counts as new, whatever the files' own times.
        os.utime(final)
        return sizes, self._prune(repository)

    def manifest(self, repositories: Iterable[str], build_id: str) -> dict | None:
        """The manifest of `build_id`, looked for under each repository, or None."""
        directory = self._find(repositories, build_id)
        return None if directory is None else _read_manifest(directory)

    def read(self, repositories: Iterable[str], build_id: str, path: str) -> Artifact:
        """The artifact at `path` of `build_id`, its bytes checked against the recorded digest,
        a chunk at a time: a file of tens of megabytes is never held whole."""
        directory = self._find(repositories, build_id)
        manifest = None if directory is None else _read_manifest(directory)
        if manifest is None:
            raise ArtifactUnavailable(404, f"no artifacts of build {build_id} on this node")
        recorded = manifest["artifacts"].get(path)
        if recorded is None:
            raise ArtifactUnavailable(404, f"build {build_id} has no artifact {path!r}")
        file = directory / FILES / path
        try:
            # The path was checked when the manifest was read; no link is followed at its end.
            handle = os.fdopen(os.open(file, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except OSError:
            raise ArtifactUnavailable(410, f"artifact {path!r} of build {build_id} is gone from this node") from None
        try:
            sha256, size = hashlib.sha256(), 0
            while chunk := handle.read(READ_CHUNK_BYTES):
                sha256.update(chunk)
                size += len(chunk)
            if "sha256:" + sha256.hexdigest() != recorded:
                raise ArtifactUnavailable(
                    500, f"artifact {path!r} of build {build_id} no longer has its recorded digest on this node"
                )
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return Artifact(path, recorded, handle, size)

    def _find(self, repositories: Iterable[str], build_id: str) -> Path | None:
        for repository in repositories:
            directory = self._root / repository / build_id
            if (directory / MANIFEST).is_file():
                return directory
        return None

    def _builds(self, repository: str) -> list[Path]:
        """The repository's stored builds, newest first."""
        return newest_first(self._root / repository)

    def _prune(self, repository: str) -> int:
        builds = self._builds(repository)
        for old in builds[self._keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return min(len(builds), self._keep)


def _read_manifest(directory: Path) -> dict | None:
    """The manifest if it is whole and every path and digest in it is well formed; None otherwise."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(artifacts, dict):
        return None
    for path, digest in artifacts.items():
        if not is_manifest_entry(path, digest):
            return None
    return manifest
