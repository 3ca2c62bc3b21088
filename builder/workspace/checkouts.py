"""Where a node's builds are checked out before their files go to the engine, and whose that folder is."""

import hashlib
import itertools
import os
import shutil
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


def checkouts_root(data_dir: Path, room_bytes: int = 0) -> Path:
    """Where a node's builds are checked out before their files go to the engine: in memory
    (/dev/shm) when the host has one of at least `room_bytes` (its builds at once, each up to
    build.workspace_mb: a container's own /dev/shm has 64 MB), else beside the mirrors. A
    repository of 30,000 files took 5 s on disk and 2 s in memory, four nodes' builds at once
    several times that; the host copy lives only while its build runs. Named for the data
    directory, which no other node shares, and readable by this node's user alone."""
    memory = Path("/dev/shm")
    try:
        usable = os.access(memory, os.W_OK | os.X_OK) and _size_bytes(memory) >= room_bytes
    except OSError:
        usable = False
    if usable:
        return memory / f"pbft-ci-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}"
    return data_dir / "workspaces"


def _size_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_blocks * info.f_frsize


# In a checkouts folder: the data directory it serves (build ids never start with a dot).
CHECKOUTS_OWNER_FILE = ".data-dir"
# In a checkouts folder: the inboxes of the node's gated build containers (builder/engine/gate.py).
INBOXES_DIR = ".inboxes"
# In a checkouts folder: finished builds' checkouts while they are removed (CheckoutRemover).
TRASH_DIR = ".trash"


def make_checkouts_folder(root: Path, data_dir: Path) -> None:
    """Make the checkouts folder `root` if need be, and check that it is this node's own: in
    /dev/shm anyone may have made it first, and could then read and change the sources a build
    gets. It names the data directory it serves, for sweep_orphaned_checkouts."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise OSError(f"{root} is not this node's own (owner uid {info.st_uid}, mode {info.st_mode & 0o7777:o})")
    owner = root / CHECKOUTS_OWNER_FILE
    if not owner.exists():
        owner.write_text(str(data_dir))


def sweep_orphaned_checkouts(memory: Path = Path("/dev/shm")) -> None:
    """Remove the checkouts folders in `memory` of this user's data directories that are gone:
    a node killed during a build leaves its folder, and its data directory may go with no node
    ever started on it again (a test's, a node moved away). Any node starting on the host does it."""
    for root in memory.glob("pbft-ci-*"):
        try:
            info = root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            served = Path((root / CHECKOUTS_OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not served.exists():
            shutil.rmtree(root, ignore_errors=True)


class CheckoutRemover:
    """Removes finished builds' checkouts after their results are out: a checkout of 30,000
    files took about 0.6 s to delete from memory, which no verdict should wait for. A checkout
    is moved aside at once (a rename in the checkouts folder) and deleted by one thread of its
    own; what a killed node left aside goes with the checkouts folder at its next start."""

    def __init__(self, root: Path, node_id: int):
        self._trash = root / TRASH_DIR
        self._discarded = itertools.count()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"checkouts-node{node_id}")

    def discard(self, checkout: Path) -> None:
        """Remove the folder `checkout` (in the checkouts folder), later; at once if it cannot be
        moved aside or the remover is closed. One never made (the build ended before its
        checkout) is no matter."""
        if not os.path.lexists(checkout):
            # Never made: nothing is written here, whose folder this is may not have been checked.
            return
        # A kept checkout's folder name comes back (builder/workspace/kepttrees.py): each
        # goes aside under a name of its own.
        aside = self._trash / f"{checkout.name}.{next(self._discarded)}"
        try:
            self._trash.mkdir(mode=0o700, exist_ok=True)
            os.rename(checkout, aside)
        except OSError:
            shutil.rmtree(checkout, ignore_errors=True)
            return
        try:
            self._worker.submit(shutil.rmtree, aside, True)
        except RuntimeError:  # closed: the build that ends now removes its own
            shutil.rmtree(aside, ignore_errors=True)

    def settled(self) -> Future:
        """A future done once every removal asked for so far has run."""
        return self._worker.submit(lambda: None)

    def close(self) -> None:
        """Finish the removals asked for; later ones are done at once by whoever asks."""
        self._worker.shutdown(wait=True)
