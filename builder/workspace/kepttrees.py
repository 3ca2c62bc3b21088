"""Checkouts a node keeps after their builds, so that the next build of the repository writes
only the files its commit changes instead of every file of the tree.

A build's checkout is never written by the build (its files are copied or streamed into the
container, builder/engine/sources.py), so after the build it is still the commit's tree and
its `.git`. Kept here, the next build of the same repository in the same scope takes it by a
rename, has the mirror's new objects and tags fetched into it, and checks its own commit out
over it (builder/workspace/checkout.py `refresh`): for a repository of 30,000 files the
checkout that wrote all of them (2.7 s of a build's 3 s on the node) becomes the few files a
push changed.

What a build sees is what a new clone gives: the same refs (its branch and the mirror's
tags), the same files, no untracked or ignored file, no reflog. Its object store may hold
less (the commits fetched so far, not every object of the mirror) and its files older
times; neither is something the order fixes for a new clone either.

Scopes: a pull request's build never takes a checkout a branch build left, nor the other
way round, though no build can write a checkout: what one scope's builds leave is not
read by the other's. A checkout with submodules is not kept (their settings and
nested clones would outlive their commit). A kept checkout is used at most MAX_USES times,
then made again, so the packs and loose objects of many small fetches stay bounded; at most
MAX_KEPT are kept per node, the least recently used going first. They live in the node's
checkouts folder, which goes at every start of the node.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# In a checkouts folder: the kept checkouts (build ids never start with a dot).
KEPT_DIR = ".kept"
# How many checkouts a node keeps: a repository's branch builds and its pull requests'.
MAX_KEPT = 2
# How many builds one kept checkout serves before it is made anew.
MAX_USES = 100


@dataclass(frozen=True)
class TreeKey:
    """Which builds may share a kept checkout: one repository, one scope."""

    repository: str
    pull_request: bool

    @property
    def folder(self) -> str:
        scope = "pull" if self.pull_request else "branch"
        return f"{hashlib.sha256(self.repository.encode()).hexdigest()[:16]}-{scope}"


class KeptTrees:
    """The kept checkouts of one node. Thread-safe: builds take and give back from worker
    threads."""

    def __init__(self, checkouts: Path, discard: Callable[[Path], None], *, max_kept: int = MAX_KEPT):
        self._root = checkouts / KEPT_DIR
        self._discard = discard
        self._max_kept = max_kept
        self._uses: OrderedDict[TreeKey, int] = OrderedDict()  # least recently given back first
        self._lock = threading.Lock()

    def take(self, key: TreeKey, dest: Path) -> int:
        """Move the checkout kept for `key` to `dest` (which must not exist): how many builds
        it served so far, 0 when none is kept (nothing moved)."""
        with self._lock:
            uses = self._uses.pop(key, 0)
            if not uses:
                return 0
            try:
                os.rename(self._root / key.folder, dest)
            except OSError:
                # Untracked from here on: it goes, rather than block the key's next one.
                self._discard(self._root / key.folder)
                return 0
            return uses

    def give_back(self, key: TreeKey, tree: Path, uses: int) -> None:
        """Keep `tree`, a build's checkout that has served `uses` builds (its own included),
        for the next build of `key`; or discard it when it has served enough or is no checkout
        (its `.git` gone). One kept for `key` meanwhile (by a build beside it) is replaced; the
        least recently used goes when more than the limit would be kept."""
        if uses >= MAX_USES or not (tree / ".git").is_dir() or (tree / ".gitmodules").exists():
            self._discard(tree)
            return
        with self._lock:
            if key in self._uses:
                self._drop(key)
            try:
                self._root.mkdir(mode=0o700, exist_ok=True)
                os.rename(tree, self._root / key.folder)
            except OSError:
                self._discard(tree)
                return
            self._uses[key] = uses
            while len(self._uses) > self._max_kept:
                self._drop(next(iter(self._uses)))

    def kept(self) -> dict[TreeKey, int]:
        """The kept checkouts and how many builds each served."""
        with self._lock:
            return dict(self._uses)

    def _drop(self, key: TreeKey) -> None:
        del self._uses[key]
        self._discard(self._root / key.folder)
