"""Build caches, per repository, per trust scope and per node: the key, the store, the wrapper script.

A spec's `cache:` names directories (under HOME or /workspace) that a build
gets back from an earlier successful build on this node. The build itself
does the tar work inside its sandbox, driven by a script the node generates
(`wrapper_script`); the node only stores the tar it copied out and hands it
back read-only, after checking it (builder/workspace/cachetar.py).

Whoever can write a cache can plant files a later build runs, so a cache is
kept in the scope of the build that wrote it, and a build reads only scopes
at least as trusted as itself (`CacheScope`, GitHub Actions' rule): a branch
(or tag) build its own branch's, a pull request its own and then its base
branch's. A pull request's build never writes where a branch build reads, and
pruning one scope never deletes another's caches.

Layout under the node's data directory:

    caches/<repository>/<scope>/<key>.tar     the cache
    caches/<repository>/<scope>/<key>.json    its digest and who wrote it, written by the node when it stored it
    cache-restores/<build id>.tar             a hard link to the cache a running build was given

A cache changes only how long a build takes, unless it was poisoned; a
poisoned cache lives on one node only, so it can sway at most that node's vote.
"""

import hashlib
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.plan.containerpaths import OUT_TAR, RESTORE_TAR, WORKSPACE_DIR
from builder.plan.spec import CacheSpec
from builder.workspace.cachetar import CacheRefused, check_cache_tar
from pbft.build import pull_request_number

log = logging.getLogger(__name__)

_CACHE_NAME = re.compile(r"[0-9a-f]{64}\.tar")
_READ_CHUNK_BYTES = 1024 * 1024


def cache_key(repository: str, image_id: str, cache: CacheSpec, workspace: Path) -> str:
    """sha256 over the repository, the image the build runs, the sorted paths and the key files' contents."""
    material = {
        "repository": repository,
        "image": image_id,
        "paths": sorted(cache.paths),
        "key_files": [[name, key_file_digest(workspace, name)] for name in cache.key_files],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def key_file_digest(workspace: Path, relative: str) -> str:
    """sha256 of a key file in the exported commit; a missing file counts as empty.

    A link (anywhere on the way) or anything but a regular file also counts
    as missing: reading it would follow the link on the node's own file system.
    """
    digest = hashlib.sha256()
    path = workspace
    for part in relative.split("/"):
        path = path / part
        if path.is_symlink() or not path.exists():
            return digest.hexdigest()
    if path.is_file():
        with open(path, "rb") as file:
            while chunk := file.read(_READ_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheScope:
    """Where a build's caches are kept: its branch's, its tag's, or its pull request's.

    A pull request's is of its own (`pull`): its code is its author's, who may
    not push to any branch. Scopes of pull requests and the others are pruned
    apart, so no number of pull requests can push a branch's caches out.
    """

    kind: str  # "branch", "tag" or "pull"
    name: str  # the branch, the tag, or the pull request's number

    @property
    def trusted(self) -> bool:
        """Written by builds of what someone with push access pushed, not by a pull request."""
        return self.kind != "pull"

    @property
    def directory(self) -> str:
        """A file name for the scope: a branch's name may hold `/`, and is hashed."""
        if self.kind == "pull":
            return f"pull-{self.name}"
        return f"{self.kind}-{hashlib.sha256(self.name.encode()).hexdigest()[:32]}"

    def __str__(self) -> str:
        return f"pull request #{self.name}" if self.kind == "pull" else f"{self.kind} {self.name!r}"


def cache_scopes(event: str, branch: str, pull_ref: str | None) -> tuple[CacheScope, ...]:
    """The scope a build writes, then the others it may read, most trusted last.

    A pull request's trust follows its checkout (`pull_ref`), whatever event its
    request names. Its `branch` is the branch it targets: a base branch's
    caches were written by that branch's own builds, which are at least as
    trusted as the pull request. A branch build reads no other branch's: one
    anyone may push to must not plant files for a protected one.
    """
    if pull_ref is not None:
        return (CacheScope("pull", str(pull_request_number(pull_ref))), CacheScope("branch", branch))
    return (CacheScope("tag" if event == "tag" else "branch", branch),)


@dataclass(frozen=True)
class CacheWriter:
    """The build that saved a cache, kept beside it so that a restore can say whose it is."""

    build_id: str
    commit: str
    event: str

    def describe(self) -> str:
        return f"saved by build {self.build_id} ({self.event}) at commit {self.commit[:12]}"


@dataclass(frozen=True)
class Restore:
    """The cache a build gets: this build's own link to it and the paths to extract."""

    tar: Path
    paths: tuple[str, ...]  # container paths, absolute
    exact: bool  # the cache of the build's own key, not a fallback
    scope: CacheScope  # the scope it came from
    writer: str  # who saved it, as the log says


@dataclass(frozen=True)
class CacheLookup:
    """The caches a build may restore: of `repository`, from `scopes` in turn, for `key` or else
    the newest whose members lie inside `roots`."""

    repository: str
    scopes: tuple[CacheScope, ...]
    key: str
    roots: tuple[str, ...]


class CacheStore:
    def __init__(self, data_dir: Path, *, keep: int, max_bytes: int, scopes: int = 4):
        self._root = data_dir / "caches"
        self._restores = data_dir / "cache-restores"
        self._keep = keep
        self._scopes = scopes
        self._max_bytes = max_bytes

    def incoming_path(self, repository: str, scope: CacheScope, build_id: str) -> Path:
        """Where the node copies a finished build's cache tar before checking it."""
        directory = self._root / repository / scope.directory
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".incoming-{build_id}.tar"

    @property
    def size_mb(self) -> int:
        """The most one cache may take."""
        return self._max_bytes // (1024 * 1024)

    def restore(
        self, wanted: CacheLookup, build_id: str, workspace: Path, line: Callable[[str], None],
    ) -> Restore | None:
        """The cache for `key`, else the newest (as restore-keys do), from `scopes` in turn, else None.

        The exact key is looked for in each scope before any fallback, as
        GitHub Actions does. Each candidate is linked to a name of this
        build's own, so that a save or prune meanwhile cannot pull it from
        under the container, and checked through that link: its digest must
        match, its members must lie inside `roots`. One whose bytes changed on
        disk, or the exact key's that fails, is deleted, with a line saying
        why. A fallback whose members lie outside `roots` is another spec's
        cache (a branch with other cache paths), not a bad one: it is skipped
        and kept for the builds it is for.
        """
        repository, scopes, key, roots = wanted.repository, wanted.scopes, wanted.key, wanted.roots
        exacts = [(scope, self._root / repository / scope.directory / f"{key}.tar") for scope in scopes]
        candidates = [(scope, path) for scope, path in exacts if path.exists()]
        for scope in scopes:
            candidates += [(scope, path) for path in self._caches(repository, scope) if path.name != f"{key}.tar"]
        where = " or ".join(map(str, scopes))
        if not candidates:
            line(f"cache restore miss key {key[:12]}: no cache of {repository!r} for {where} on this node")
            return None
        self._restores.mkdir(parents=True, exist_ok=True)
        for scope, candidate in candidates:
            exact = candidate.name == f"{key}.tar"
            link = self._restores / f"{build_id}.tar"
            try:
                link.unlink(missing_ok=True)
                os.link(candidate, link)
                writer = self._check_digest(candidate, link)
            except FileNotFoundError:
                # Pruned by a concurrent save between listing and linking.
                continue
            except CacheRefused as exc:
                link.unlink(missing_ok=True)
                self._delete(candidate)
                line(f"cache dropped key {candidate.stem[:12]} of {scope}: {exc}")
                continue
            try:
                present = check_cache_tar(link, roots, self._max_bytes)
            except CacheRefused as exc:
                link.unlink(missing_ok=True)
                if exact:
                    self._delete(candidate)
                    line(f"cache dropped key {candidate.stem[:12]} of {scope}: {exc}")
                else:
                    line(f"cache restore skips key {candidate.stem[:12]} of {scope}: {exc}")
                continue
            link.chmod(0o644)  # read inside the container by the build user
            size = _size(link.stat().st_size)
            if exact:
                # Used counts as new: pruning deletes the least recently used.
                os.utime(candidate)
                line(f"cache restore hit key {key[:12]} of {scope} ({size}), {writer}")
            else:
                line(f"cache restore miss key {key[:12]}, fallback to key {candidate.stem[:12]}, "
                     f"the newest of {scope} ({size}), {writer}")
            in_commit = [root for root in present if _in_commit(workspace, root)]
            for root in in_commit:
                line(f"cache restore skips {_spec_form(root)}: the commit has it")
            wanted = tuple(root for root in present if root not in in_commit)
            if not wanted:
                link.unlink()
                return None
            return Restore(link, wanted, exact, scope, writer)
        line(f"cache restore miss key {key[:12]}: no usable cache of {repository!r} for {where} on this node")
        return None

    def sweep(self) -> None:
        """Delete what builds of a killed earlier process left (restore links, half-copied tars),
        and caches kept before they had scopes: nobody can say which builds wrote those."""
        if self._restores.is_dir():
            for link in self._restores.iterdir():
                link.unlink(missing_ok=True)
        if self._root.is_dir():
            for leftover in self._root.glob("*/*/.incoming-*"):
                leftover.unlink(missing_ok=True)
            unscoped = [path for path in self._root.glob("*/*") if path.is_file()]
            for path in unscoped:
                path.unlink(missing_ok=True)
            if unscoped:
                log.warning("deleted %d cache files kept without a scope (from before caches had scopes)",
                            len(unscoped))

    def release(self, build_id: str) -> None:
        (self._restores / f"{build_id}.tar").unlink(missing_ok=True)

    def save(
        self, repository: str, scope: CacheScope, key: str, incoming: Path, roots: tuple[str, ...],
        writer: CacheWriter,
    ) -> str:
        """Check the copied tar and store it atomically under `key` in `scope`; the log line saying what happened."""
        try:
            check_cache_tar(incoming, roots, self._max_bytes)
        except CacheRefused as exc:
            incoming.unlink(missing_ok=True)
            return f"cache dropped: {exc}"
        size = incoming.stat().st_size
        directory = self._root / repository / scope.directory
        about = incoming.with_suffix(".json")
        about.write_text(json.dumps({"sha256": _digest(incoming), "scope": str(scope), "build_id": writer.build_id,
                                     "commit": writer.commit, "event": writer.event}, sort_keys=True) + "\n")
        # The digest goes first: a crash between the renames leaves an old tar
        # with a new digest, which the next restore drops, never a wrong cache.
        os.replace(about, directory / f"{key}.json")
        os.replace(incoming, directory / f"{key}.tar")
        kept = self._prune(repository, scope)
        dropped = self._prune_scopes(repository, scope)
        note = f"; {dropped} least recently used scopes dropped" if dropped else ""
        return f"cache saved key {key[:12]} for {scope} ({_size(size)}); {kept} kept for it{note}"

    def _caches(self, repository: str, scope: CacheScope) -> list[Path]:
        """The scope's caches, newest first."""
        return newest_first(self._root / repository / scope.directory,
                            lambda name: _CACHE_NAME.fullmatch(name) is not None)

    def _prune(self, repository: str, scope: CacheScope) -> int:
        caches = self._caches(repository, scope)
        for old in caches[self._keep:]:
            self._delete(old)
        return min(len(caches), self._keep)

    def _prune_scopes(self, repository: str, saved: CacheScope) -> int:
        """Drop whole scopes of the saved one's kind (pull requests, or branches and tags),
        least recently used first, past `scopes` of them; never the one just saved to."""
        pulls = saved.kind == "pull"
        others = [directory for directory in newest_first(self._root / repository)
                  if directory.is_dir() and directory.name.startswith("pull-") == pulls
                  and directory.name != saved.directory]
        by_use = sorted(others, key=_last_used, reverse=True)
        for directory in by_use[self._scopes - 1:]:
            for cache in directory.glob("*.tar"):
                self._delete(cache)
            for leftover in directory.iterdir():
                if not leftover.name.startswith(".incoming-"):
                    leftover.unlink(missing_ok=True)
            try:
                directory.rmdir()
            except OSError:
                pass  # a build is copying its cache into it: the scope goes at a later save
        return max(0, len(by_use) - (self._scopes - 1))

    def _check_digest(self, stored: Path, link: Path) -> str:
        """Who wrote the cache, once its bytes are those its writer stored."""
        try:
            about = json.loads(stored.with_suffix(".json").read_text())
            expected, writer = about["sha256"], CacheWriter(about["build_id"], about["commit"], about["event"])
        except FileNotFoundError:
            raise CacheRefused("no checksum stored with it") from None
        except (ValueError, KeyError, TypeError):
            raise CacheRefused("what is stored with it does not read") from None
        if _digest(link) != expected:
            raise CacheRefused("checksum mismatch (changed on disk)")
        return writer.describe()

    @staticmethod
    def _delete(cache: Path) -> None:
        cache.unlink(missing_ok=True)
        cache.with_suffix(".json").unlink(missing_ok=True)


def _last_used(directory: Path) -> int:
    """When a scope's newest cache was saved or restored (0 if it has none)."""
    caches = newest_first(directory, lambda name: _CACHE_NAME.fullmatch(name) is not None)
    try:
        return caches[0].stat().st_mtime_ns if caches else 0
    except FileNotFoundError:
        return 0


def wrapper_script(restore_paths: tuple[str, ...], save_paths: tuple[str, ...], cache_mb: int) -> str:
    """The build's command when it has caches: restore, run the spec's script, save.

    Run as `sh -e -c <wrapper> pbft-ci-cache <script>`. The spec's script runs
    as `/bin/sh -e -c "$1"`, exactly as a build without caches runs it, and
    its exit status is the container's. A cache that does not extract is
    removed again and the build goes on without it. The cache is written only
    after a successful script, into the tmpfs the node copies it from; with
    no `save_paths` (the build's own key was restored, and is kept as it is)
    nothing is written.
    """
    lines = ["# generated by the pbft-ci node: restore the cache, run the build, save the cache"]
    if restore_paths:
        members = " ".join(shlex.quote(path.lstrip("/")) for path in restore_paths)
        restored = " ".join(shlex.quote(path) for path in restore_paths)
        lines += [
            f"if ! tar -xof {RESTORE_TAR} -C / {members}; then",
            f"  rm -rf {restored}",
            '  echo "cache dropped: tar could not extract it; the build goes on without it"',
            "fi",
            f"rm -f {RESTORE_TAR}",
        ]
    lines += ["status=0", '/bin/sh -e -c "$1" || status=$?']
    if save_paths:
        members = " ".join(shlex.quote(path.lstrip("/")) for path in save_paths)
        lines += [
            'if [ "$status" -eq 0 ]; then',
            "  set --",
            f"  for path in {members}; do",
            '    if [ -e "/$path" ] || [ -h "/$path" ]; then set -- "$@" "$path"; fi',
            "  done",
            f'  if [ "$#" -gt 0 ] && ! tar -cf {OUT_TAR} -C / "$@"; then',
            f"    rm -f {OUT_TAR}",
            f'    echo "cache not saved: tar could not write it (at most {cache_mb} MB)"',
            "  fi",
            "fi",
        ]
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def _in_commit(workspace: Path, root: str) -> bool:
    """Whether the exported commit has something at a /workspace root (a link on the way counts)."""
    if not root.startswith(WORKSPACE_DIR + "/"):
        return False
    path = workspace
    for part in root[len(WORKSPACE_DIR) + 1:].split("/"):
        path = path / part
        if path.is_symlink():
            return True
        if not path.exists():
            return False
    return True


def _spec_form(root: str) -> str:
    return root[len(WORKSPACE_DIR) + 1:] if root.startswith(WORKSPACE_DIR + "/") else "~/" + root.split("/", 3)[3]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _size(size_bytes: int) -> str:
    return f"{size_bytes / (1024 * 1024):.1f} MB"


def newest_first(directory: Path, wanted: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """The entries of `directory` whose names are `wanted`, newest first (ties by name, so the
    order is total); none if it does not exist. One deleted meanwhile is left out."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if wanted(path.name):
            try:
                found.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:
                continue
    return [path for _, _, path in sorted(found, reverse=True)]
