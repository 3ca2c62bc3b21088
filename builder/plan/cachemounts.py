"""A build's caches as its containers mount them: a value the workspace makes
(builder/workspace/cacherun.py) and the engine carries out (builder/engine/transfer.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheMounts:
    """A build's caches as the sandbox sees them.

    `restore_tar` (a file on this node, or None) is uploaded to RESTORE_TAR,
    on the tmpfs of `size_mb` that the build writes its new cache to
    (OUT_TAR) once the wrapper has extracted and deleted it: a copy, since
    the engine may run on another machine, and the build may do with its
    copy what it likes; after a build that exited 0 the node copies that tar, at most
    `size_mb`, to `save_to` and nowhere else. Without `save_to` (the cache
    is kept as it is) nothing is copied.
    """

    restore_tar: Path | None
    size_mb: int
    save_to: Path | None
