"""Cached bare mirrors of the configured repositories (and of their submodules), and clones of them.

All calls block; the executor runs them in a worker thread. Branch names and
commit ids must already have passed shared.refs: they reach git only as full
refs or object names, after `--` where git accepts one. Failures raise
GitError with a deterministic reason; git's own stderr goes to the build log.
"""

import hashlib
import os
import shutil
import threading
from pathlib import Path

import git

# A mirror must never wait for a password on the node's terminal, nor hang
# forever on a stalled HTTP transfer while holding its repository's lock.
from shared.refs import GIT_ENV

# A clone of a mirror into a workspace reads neither the node's system nor its global git
# configuration, so that it is the same on every node (builder/workspace/checkout.py).
# No hook runs there either: a checkout kept for the next build (builder/workspace/kepttrees.py)
# is written by the node's git alone, and even so none of its files is ever run on the node.
ISOLATED_ENV = {
    **GIT_ENV, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": os.devnull,
}


class GitError(Exception):
    """Resolving, fetching or checking out failed; `reason` is deterministic, `detail` is for the log."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class GitMirrors:
    def __init__(self, root: Path):
        self._root = root
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def resolve(
        self, *, name: str, url: str, branch: str, commit: str | None, pull_ref: str | None = None
    ) -> tuple[git.Repo, str]:
        """Update the mirror of `name` and return it with the commit to build.

        The update and the lookup happen under the repository's lock so that
        concurrent builds never see a half-written mirror. A pull request's
        build resolves its forge ref (`refs/pull/<n>/head`, which a mirror
        fetches with every other ref), and a pinned commit must be that ref's
        head: what was pushed to the pull request since the client pinned it
        is a newer build's to build.
        """
        with self._lock(name):
            repo = self._update(self._root / f"{name}.git", url)
            if pull_ref is not None:
                head = _rev_parse(repo, pull_ref, f"pull request ref not found: {pull_ref}")
                if commit is not None and _rev_parse(repo, commit, f"commit not found: {commit}") != head:
                    raise GitError(f"commit {commit} is not the head of {pull_ref} (its head is {head})")
                return repo, head
            if commit is None:
                return repo, _rev_parse(repo, f"refs/heads/{branch}", f"branch not found: {branch}")
            resolved = _rev_parse(repo, commit, f"commit not found: {commit}")
            _check_on_ref(repo, resolved, branch)
            return repo, resolved

    def clone(self, name: str, dest: Path) -> None:
        """Clone the mirror of repository `name` into the new directory `dest`, with no work tree."""
        with self._lock(name):
            _clone_local(self._root / f"{name}.git", dest)

    def fetch_into(self, name: str, commit: str, dest: Path) -> None:
        """Bring `commit` and the mirror of `name`'s tags into the clone `dest` made earlier
        (builder/workspace/kepttrees.py): its tags become exactly the mirror's, as a new clone's
        would be; no other ref changes."""
        with self._lock(name):
            _fetch_local(self._root / f"{name}.git", commit, dest)

    def clone_submodule(self, url: str, commit: str, dest: Path) -> None:
        """Clone the mirror of the submodule at `url` into the empty directory `dest` after
        fetching it, with no work tree; GitError if the mirror lacks `commit`.

        Mirrors of submodules are kept by URL, apart from the repositories' own; the caller
        has checked that the repository being built allows `url`.
        """
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        with self._lock(f"submodule {key}"):
            repo = self._update(self._root / "submodules" / f"{key}.git", url)
            try:
                _rev_parse(repo, commit, f"commit {commit} not found at {url}")
            finally:
                repo.close()
            _clone_local(self._root / "submodules" / f"{key}.git", dest)

    def _update(self, path: Path, url: str) -> git.Repo:
        if not path.exists():
            return self._clone(path, url)
        repo = git.Repo(path)
        repo.git.update_environment(**GIT_ENV)
        # The config is the only source of URLs; follow it if it changed.
        if repo.remotes.origin.url != url:
            with repo.config_writer() as writer:
                writer.set_value('remote "origin"', "url", url)
        try:
            repo.git.fetch("--prune", "--", "origin")
        except git.GitCommandError as exc:
            raise GitError("fetch failed", exc.stderr) from None
        return repo

    def _clone(self, path: Path, url: str) -> git.Repo:
        # Clone beside the final path and rename, so that an interrupted clone
        # never leaves something that looks like a mirror.
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            repo = git.Repo.clone_from(url, partial, mirror=True, env=GIT_ENV)
        except git.GitCommandError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise GitError("clone failed", exc.stderr) from None
        repo.close()
        partial.rename(path)
        repo = git.Repo(path)
        repo.git.update_environment(**GIT_ENV)
        return repo


def _rev_parse(repo: git.Repo, revision: str, reason: str) -> str:
    """The commit `revision` names (`<revision>^{commit}`, as `git rev-parse --verify` reads it),
    or GitError(reason). Asked first of the repository's persistent `git cat-file --batch-check`,
    which reading the commit's time, message and author uses anyway, so that a name found costs
    no process of its own (it is a line on its stdin, never an option); a name it does not find,
    or an answer GitPython cannot read (a SHA-256 repository's), is left to `git rev-parse`."""
    try:
        hexsha = repo.git.get_object_header(f"{revision}^{{commit}}")[0]
        return hexsha.decode("ascii") if isinstance(hexsha, bytes) else hexsha
    except ValueError:
        pass
    try:
        return repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    except git.GitCommandError:
        raise GitError(reason) from None


def _check_on_ref(repo: git.Repo, commit: str, name: str) -> None:
    """Raise GitError unless `commit` belongs to the branch (or tag) `name`.

    A build is recorded under the name it was asked for, so a pinned commit
    must be reachable from that branch's head: otherwise anyone could have a
    commit of their own branch built and recorded as master. Forge tag pushes
    carry the tag's name in the branch field; a tag names one commit, so
    there it must be exactly the tag's. Both arguments are checked or
    resolved object names by now, never raw request text.
    """
    head = _rev_parse_or_none(repo, f"refs/heads/{name}")
    if head == commit:
        return  # a commit is its own ancestor; the client pins the head it saw, so this is the usual case
    if head is not None:
        try:
            # `git merge-base --is-ancestor`: exit 1 means "no", anything else failed.
            on_branch = repo.is_ancestor(commit, head)
        except git.GitCommandError as exc:
            raise GitError("ancestry check failed", exc.stderr) from None
        if on_branch:
            return
        raise GitError(f"commit {commit} is not on branch '{name}'")
    tagged = _rev_parse_or_none(repo, f"refs/tags/{name}")
    if tagged is None:
        raise GitError(f"branch not found: {name}")
    if tagged != commit:
        raise GitError(f"commit {commit} is not tag '{name}'")


def _rev_parse_or_none(repo: git.Repo, ref: str) -> str | None:
    try:
        return _rev_parse(repo, ref, "")
    except GitError:
        return None


def commit_time(repo: git.Repo, commit: str) -> int:
    """The committer time of `commit` (a resolved object name), in unix seconds: the build's SOURCE_DATE_EPOCH.

    The committer's, not the author's: a rebase or cherry-pick makes a new
    commit, and its time is when that commit was made.
    """
    try:
        return int(repo.commit(commit).committed_date)
    except (ValueError, git.GitCommandError) as exc:
        raise GitError("could not read the commit's time", str(exc)) from None


# Beyond these, the changed paths count as unknown (a path condition then holds): the
# list is matched against every glob of a spec, on the node, outside the sandbox.
MAX_CHANGED_PATHS = 1000
MAX_CHANGED_CHARS = 100_000


def commit_message(repo: git.Repo, commit: str) -> str:
    """The full message of `commit` (a resolved object name), as `[skip ci]` is looked for in it."""
    try:
        return repo.commit(commit).message
    except (ValueError, git.GitCommandError) as exc:
        raise GitError("could not read the commit's message", str(exc)) from None


def commit_author(repo: git.Repo, commit: str) -> tuple[str, str]:
    """The author's name and e-mail address of `commit`, as its object records them."""
    try:
        author = repo.commit(commit).author
        return author.name or "", author.email or ""
    except (ValueError, git.GitCommandError) as exc:
        raise GitError("could not read the commit's author", str(exc)) from None


def changed_paths(repo: git.Repo, before: str, commit: str) -> tuple[str, ...] | None:
    """The paths `commit` changed since `before`, or None when that is not the same answer on
    every node: `before` must be an ancestor of `commit` (then every mirror holding the
    commit holds it too, whatever else each has fetched), and the list must stay bounded."""
    try:
        repo.git.merge_base("--is-ancestor", "--end-of-options", before, commit)
    except git.GitCommandError:
        return None  # not an ancestor, or an object this mirror does not hold
    try:
        # -z: names as they are, never quoted; --no-renames: no heuristic whose result
        # could depend on a node's git version or configuration.
        listed = repo.git.diff("--name-only", "--no-renames", "-z", "--end-of-options", before, commit)
    except git.GitCommandError as exc:
        raise GitError("could not list the changed paths", exc.stderr) from None
    paths = tuple(path for path in listed.split("\0") if path)
    if len(paths) > MAX_CHANGED_PATHS or sum(map(len, paths)) > MAX_CHANGED_CHARS:
        return None
    return paths


def agreed_base(repo: git.Repo, before: str, commit: str, branch: str) -> bool:
    """Whether `before`, a pull request's base commit, is one every node holds after the
    build's fetch: an ancestor of the built `commit` (then every mirror holding the commit
    holds it too), or of the head of the base `branch` as this mirror fetched it. The second
    differs between nodes only if the branch is force-pushed past `before` between their
    fetches; an object a mirror kept from an earlier fetch and nothing reaches never counts."""
    for tip in (commit, f"refs/heads/{branch}"):
        try:
            repo.git.merge_base("--is-ancestor", "--end-of-options", before, tip)
            return True
        except git.GitCommandError:
            continue  # not an ancestor, or an object or branch this mirror does not hold
    return False


def regular_file_at(repo: git.Repo, commit: str, path: str, max_bytes: int) -> bytes | None:
    """The bytes of `path` in `commit`'s tree, or None when the tree has no regular file there
    (nothing, a link, a directory, a submodule) or it is larger than `max_bytes`: the size is
    the blob's, read before its contents."""
    try:
        entry = repo.commit(commit).tree / path
    except KeyError:
        return None
    except (ValueError, git.GitCommandError) as exc:
        raise GitError(f"could not read the tree of {commit}", str(exc)) from None
    if entry.type != "blob" or entry.mode not in (0o100644, 0o100755) or entry.size > max_bytes:
        return None
    try:
        return entry.data_stream.read()
    except (ValueError, git.GitCommandError) as exc:
        raise GitError(f"could not read {path} at {commit}", str(exc)) from None


def _clone_local(mirror: Path, dest: Path) -> None:
    """A clone of the mirror on this host: git links the mirror's object files where `dest` is
    on the same file system, and copies them where it is not (a checkout in memory), so it
    costs no packing of the history. The caller holds the mirror's lock, so no fetch repacks
    it meanwhile."""
    try:
        git.Git().execute(
            ["git", "clone", "--quiet", "--no-checkout", "--template=", "--", str(mirror), str(dest)],
            env={**os.environ, **ISOLATED_ENV},
        )
    except git.GitCommandError as exc:
        raise GitError("checkout failed", exc.stderr) from None


# A commit no ref of the mirror names (an older commit of a branch, pinned) is served by
# protocol v2 as it is reachable; protocol v0 (an older git's default) serves it only when
# told, and a local fetch passes the client's `-c` settings not on to its upload-pack.
_UPLOAD_ANY_COMMIT = "git -c uploadpack.allowAnySHA1InWant=true upload-pack"


def _fetch_local(mirror: Path, commit: str, dest: Path) -> None:
    """Fetch `commit` (a resolved object name) and every tag of the mirror into `dest`, pruning
    the tags the mirror no longer has; FETCH_HEAD is not written, no hook runs, nothing is
    collected: what a build sees of `dest` is its refs and its work tree, not its history of
    fetches. The caller holds the mirror's lock."""
    try:
        git.Git(str(dest)).execute(
            ["git", "fetch", "--quiet", "--prune", "--no-tags",
             "--no-write-fetch-head", "--no-auto-gc", "--no-recurse-submodules", f"--upload-pack={_UPLOAD_ANY_COMMIT}",
             "--", str(mirror), commit, "+refs/tags/*:refs/tags/*"],
            env={**os.environ, **ISOLATED_ENV},
        )
    except git.GitCommandError as exc:
        raise GitError("checkout failed", exc.stderr) from None
