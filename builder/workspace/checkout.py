"""The build's workspace: a git checkout of the agreed commit, with its `.git` and its submodules.

Builds run `git describe`, `git log` and setuptools-scm, so the workspace is a
clone, not an export of the tree. It is made from the node's mirror by a
clone that links or copies the mirror's object files instead of packing them
again, in memory where the host has a tmpfs (builder/executor.py): a large
repository costs the inflation of its files, neither a second pass over its
history nor writes to the node's disk.

What a build can see of git is the same on every honest node:
- git reads neither the node's system nor its global configuration, so line
  endings, filters and hooks come from the repository alone;
- the refs are the tags, and the build's branch at the agreed commit (a tag's
  or a pull request's build has a detached HEAD); there is no remote and no
  other branch, whose heads would depend on when each node fetched;
- submodules are checked out at the commits the tree records, each fetched
  through a mirror of its own (builder/workspace/gitmirror.py), and only from a URL the
  repository's configuration allows.

All calls block; the executor runs them in its worker thread. Names that reach
git are resolved commits, checked branch names, or paths and URLs that
`.gitmodules` gives and this module checks first.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from builder.workspace.gitmirror import ISOLATED_ENV, GitError, GitMirrors

# A tree records a submodule as a gitlink: this mode and the commit's name.
_GITLINK = re.compile(r"160000 commit ([0-9a-f]{40}|[0-9a-f]{64})\t")
# A repository may name more submodules than this only by a mistake or to cost the nodes work.
MAX_SUBMODULES = 64


@dataclass(frozen=True)
class Submodule:
    name: str
    path: str  # relative to the workspace, a gitlink of the built tree
    url: str  # resolved against the repository's URL when `.gitmodules` gives a relative one
    commit: str


@dataclass(frozen=True)
class Checkout:
    """Which commit of which repository to check out, and what bounds it."""

    name: str  # the repository's, as its mirror is named
    url: str  # where it is fetched from; relative submodule URLs are resolved against it
    commit: str
    branch: str | None  # the branch the work tree is on; None: a detached HEAD
    submodule_urls: frozenset[str]  # the only URLs its submodules may come from
    max_bytes: int | None = None  # the most its files may take; None: no bound


def workspace(mirrors: GitMirrors, wanted: Checkout, dest: Path, *, kept: bool = False) -> None:
    """Check `wanted` out into the new directory `dest`, with the submodules its commit records.
    Submodules of submodules are not fetched. A tree of more than `wanted.max_bytes` (when given)
    is refused before a file is written. With `kept`, `dest` is a checkout an earlier build of
    the repository left (builder/workspace/kepttrees.py, never one with submodules): it gets the
    commit and the tags from the mirror and is brought to the same refs and files as a new
    clone by writing what differs."""
    commit = wanted.commit
    if kept:
        mirrors.fetch_into(wanted.name, commit, dest)
        refresh(dest, commit, wanted.branch, wanted.max_bytes)
    else:
        mirrors.clone(wanted.name, dest)
        check_out(dest, commit, wanted.branch, wanted.max_bytes)
    for submodule in submodules(dest, commit, wanted.url):
        if submodule.url not in wanted.submodule_urls:
            raise GitError(
                f"submodule {submodule.path}: {submodule.url} is not among the repository's submodule URLs "
                f"(repositories[].submodules)"
            )
        target = submodule_dest(dest, submodule)
        target.rmdir()  # git clone makes it again
        mirrors.clone_submodule(submodule.url, submodule.commit, target)
        check_out(target, submodule.commit, None)
        try:
            _git(dest).config(f"submodule.{submodule.name}.url", submodule.url)
        except git.GitCommandError as exc:
            raise GitError("checkout failed", exc.stderr) from None


def check_size(dest: Path, commit: str, max_bytes: int) -> None:
    """GitError unless the files of `commit`'s tree (its blobs' sizes, as the tree records
    them: the same on every node) add up to at most `max_bytes`."""
    try:
        listed = _git(dest).ls_tree("-r", "-l", "-z", "--end-of-options", commit)
    except git.GitCommandError as exc:
        raise GitError("could not list the commit's files", exc.stderr) from None
    size = sum(int(fields[3]) for entry in listed.split("\0") if (fields := entry.split(None, 4))[1:2] == ["blob"])
    if size > max_bytes:
        raise GitError(
            f"sources do not fit the {max_bytes // (1024 * 1024)} MB workspace "
            f"(the commit's files take {-(-size // (1024 * 1024))} MB)"
        )


def check_out(dest: Path, commit: str, branch: str | None, max_bytes: int | None = None) -> None:
    """Make the clone at `dest` hold `commit` as its work tree, on `branch` (a checked name)
    or on a detached HEAD, with no remote and no branch but that one. With `max_bytes`, a tree
    of more than that is refused (check_size) before a file of it is written: its files are
    listed while the clone's remote and branch are removed, which writes nothing but .git."""
    repo = _git(dest)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sized = None if max_bytes is None else pool.submit(check_size, dest, commit, max_bytes)
        try:
            _forget_origin(repo, dest)
        finally:
            if sized is not None:
                sized.result()  # raised first, as when the size was checked before all else
    _switch(repo, dest, commit, branch)


def refresh(dest: Path, commit: str, branch: str | None, max_bytes: int | None = None) -> None:
    """Make a checkout kept from an earlier build, which holds `commit` already, what check_out
    makes of a new clone: `commit` checked out on `branch` or on a detached HEAD, no file of
    another commit's left (untracked and ignored ones removed too), and no ref but that branch
    and the tags. The size is checked first, as there."""
    if max_bytes is not None:
        check_size(dest, commit, max_bytes)
    repo = _git(dest)
    _switch(repo, dest, commit, branch, "--force")
    try:
        repo.clean("-ffdxq")
        kept = {f"refs/heads/{branch}"} if branch is not None else set()
        for ref in repo.for_each_ref("--format=%(refname)").splitlines():
            if ref not in kept and not ref.startswith("refs/tags/"):
                repo.update_ref("-d", "--end-of-options", ref)
    except git.GitCommandError as exc:
        raise GitError("checkout failed", exc.stderr) from None


def _switch(repo: git.Git, dest: Path, commit: str, branch: str | None, *options: str) -> None:
    """Check `commit` out on `branch` (made or moved there) or on a detached HEAD. The reflogs
    go: they would show a build the node's own path to its mirror and, in a kept checkout, the
    builds before it."""
    try:
        if branch is None:
            repo.checkout("--quiet", *options, "--detach", commit, "--")
        else:
            repo.checkout("--quiet", *options, "-B", branch, commit, "--")
    except git.GitCommandError as exc:
        raise GitError("checkout failed", exc.stderr) from None
    shutil.rmtree(dest / ".git" / "logs", ignore_errors=True)


def _forget_origin(repo: git.Git, dest: Path) -> None:
    """Remove the clone's remote, with its refs and its branch's settings, and its one branch."""
    try:
        repo.remote("remove", "origin")
        cloned = _cloned_branch(dest)
        if cloned is not None:
            repo.update_ref("-d", "--end-of-options", cloned)
    except git.GitCommandError as exc:
        raise GitError("checkout failed", exc.stderr) from None


def _cloned_branch(dest: Path) -> str | None:
    """The one branch a clone has: the one its HEAD names, as the mirror's HEAD did. None when
    that is detached, or names a branch the mirror lacks (deleting one would log it in HEAD's
    reflog). Read from the files `git clone` has just written: a branch as a file of its own,
    or a line of packed-refs."""
    git_dir = dest / ".git"
    head = (git_dir / "HEAD").read_text(encoding="utf-8", errors="surrogateescape").strip()
    ref = head.removeprefix("ref: ")
    if ref == head or not ref.startswith("refs/heads/"):
        return None
    packed = git_dir / "packed-refs"
    if (git_dir / ref).is_file() or (
        packed.is_file() and f" {ref}\n" in packed.read_text(encoding="utf-8", errors="surrogateescape")
    ):
        return ref
    return None


def submodules(dest: Path, commit: str, repository_url: str) -> list[Submodule]:
    """The submodules the checkout at `dest` (of `commit`) declares and records.

    A `.gitmodules` entry whose path is not a gitlink of the tree is not a
    submodule of this commit, as for `git submodule update`; a gitlink
    without an entry cannot be fetched and is refused.
    """
    declaration = dest / ".gitmodules"
    if declaration.is_symlink():
        # git refuses to check one out; reading it would read a file of this host.
        raise GitError(".gitmodules must be a regular file")
    if not declaration.is_file():
        return []
    repo = _git(dest)
    try:
        listed = repo.config("--file", ".gitmodules", "--null", "--get-regexp", r"^submodule\..*\.(path|url)$")
    except git.GitCommandError as exc:
        if exc.status == 1:  # no entries
            listed = ""
        else:
            raise GitError(".gitmodules could not be read", exc.stderr) from None
    entries: dict[str, dict[str, str]] = {}
    for record in listed.split("\0"):
        key, _, value = record.partition("\n")
        if key:
            name, _, field = key.removeprefix("submodule.").rpartition(".")
            entries.setdefault(name, {})[field] = value
    try:
        gitlinks = {
            path: found.group(1)
            for line in repo.ls_tree("-r", "-z", "--end-of-options", commit).split("\0")
            if (found := _GITLINK.match(line)) and (path := line.partition("\t")[2])
        }
    except git.GitCommandError as exc:
        raise GitError("could not list the commit's submodules", exc.stderr) from None
    declared = {}
    for name, entry in sorted(entries.items()):
        path = entry.get("path")
        if path is None or path not in gitlinks:
            continue
        if "url" not in entry:
            raise GitError(f"submodule {path}: .gitmodules gives it no url")
        declared[path] = Submodule(name, path, resolve_url(repository_url, entry["url"], path), gitlinks[path])
    missing = sorted(set(gitlinks) - set(declared))
    if missing:
        raise GitError(f"submodule {missing[0]}: recorded in the tree but not in .gitmodules")
    if len(declared) > MAX_SUBMODULES:
        raise GitError(f"more than {MAX_SUBMODULES} submodules")
    return list(declared.values())


def submodule_dest(dest: Path, submodule: Submodule) -> Path:
    """Where `submodule` is checked out: under `dest`, never through a link (the gitlink's
    directory was made by the superproject's checkout, empty)."""
    target = dest.joinpath(*PurePosixPath(submodule.path).parts)
    if not target.is_dir() or target.is_symlink() or any(target.iterdir()):
        raise GitError(f"submodule {submodule.path}: its directory is not the empty one a checkout makes")
    return target


def resolve_url(repository_url: str, url: str, path: str) -> str:
    """`url` as `.gitmodules` gives it, made absolute against the repository's own URL when it
    starts with ./ or ../ (git's rule); an option-like or malformed URL is refused."""
    if not url or url.startswith("-") or any(ord(char) < 0x21 for char in url):
        raise GitError(f"submodule {path}: url {url[:80]!r} is not a URL")
    if not url.startswith(("./", "../")):
        return url
    parsed = urllib.parse.urlsplit(repository_url)
    if parsed.scheme:
        joined = posixpath.normpath(posixpath.join(parsed.path.rstrip("/"), url))
        return urllib.parse.urlunsplit(parsed._replace(path=joined))
    return posixpath.normpath(posixpath.join(repository_url.rstrip("/"), url))


def _git(directory: Path) -> git.Git:
    command = git.Git(str(directory))
    command.update_environment(**ISOLATED_ENV)
    return command
