"""A checkout kept from an earlier build and brought to the next commit gives a build what a new
clone gives (builder/workspace/kepttrees.py, builder/workspace/checkout.py `refresh`), without
Docker; test_executor_kepttrees.py shows it through whole builds."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.workspace import checkout
from builder.workspace.gitmirror import GitError, GitMirrors
from builder.workspace.kepttrees import MAX_USES, KeptTrees, TreeKey
from tests.builder.executor_helpers import GitRepo


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True).stdout.strip()


def snapshot(dest: Path) -> dict:
    """Everything of a checkout a build's script can tell apart but file times and the object
    store's layout: each entry's kind, executable bit and bytes or target; refs, HEAD, branch,
    local settings, what git says is untracked or ignored, and the files beside the refs."""
    entries = {}
    for folder, dirs, files in os.walk(dest):
        here = Path(folder)
        if here == dest:
            dirs.remove(".git")
        for name in dirs + files:
            path = here / name
            relative = str(path.relative_to(dest))
            if path.is_symlink():
                entries[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[relative] = ("dir",)
            else:
                entries[relative] = ("file", os.access(path, os.X_OK), path.read_bytes())
    dot_git = dest / ".git"
    return {
        "entries": entries,
        "refs": git(dest, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": git(dest, "rev-parse", "HEAD"),
        "branch": git(dest, "branch", "--show-current"),
        "config": git(dest, "config", "--local", "--list"),
        "status": git(dest, "status", "--porcelain", "--ignored", "--untracked-files=all"),
        "reflog": git(dest, "reflog", "--all"),
        "beside": sorted(path.name for path in dot_git.iterdir() if path.name not in ("objects", "refs", "index")),
    }


def check_out(mirrors: GitMirrors, repo: GitRepo, dest: Path, commit: str, branch: str | None, *, kept: bool,
              max_bytes: int | None = None) -> None:
    mirror, resolved = mirrors.resolve(name="r", url=str(repo.path), branch="master", commit=None)
    mirror.close()
    checkout.workspace(mirrors, checkout.Checkout(
        name="r", url=str(repo.path), commit=commit, branch=branch, submodule_urls=frozenset(), max_bytes=max_bytes,
    ), dest, kept=kept)


def test_a_kept_checkout_brought_to_each_next_commit_is_what_a_new_clone_is(tmp_path, git_repo):
    first = git_repo.commit("master", {"a": "1\n", "dir/b": "b\n", "run.sh": "echo\n", ".gitignore": "*.o\n"})
    git_repo.tag("v1", first)
    mirrors = GitMirrors(tmp_path / "mirrors")
    kept = tmp_path / "kept"
    check_out(mirrors, git_repo, kept, first, "master", kept=False)
    # What no build writes, but a checkout must lose: files of no commit, a changed one.
    (kept / "stray.txt").write_text("left\n")
    (kept / "build.o").write_text("ignored\n")
    (kept / "dir" / "b").write_text("changed\n")

    # The next commits: a file becomes a folder, a folder a link, a mode changes; a tag goes,
    # another comes; a second branch, a pull request, and a commit no ref names any more.
    origin = git_repo.path
    os.remove(origin / "a")
    (origin / "a").mkdir()
    (origin / "a" / "x").write_text("x\n")
    git_repo._git("rm", "--quiet", "-r", "dir")
    os.symlink("a", origin / "dir")
    os.chmod(origin / "run.sh", 0o755)
    second = git_repo.commit("master", {"c": "3\n"})
    git_repo._git("tag", "-d", "v1")
    git_repo.tag("v2", second, annotated=True)
    third = git_repo.commit("master", {"c": "4\n"})
    behind = git_repo.commit("master", {"c": "5\n"})
    git_repo.commit("master", {"c": "6\n"})
    feature = git_repo.commit("feature", {"f": "feature\n"})
    git_repo.pull_request(5, feature)

    # `behind` is no ref's head, and the kept checkout has fetched none of its objects before.
    steps = [(second, "master"), (feature, "feature"), (behind, None), (third, None), (first, None), (second, "main")]
    for commit, branch in steps:
        fresh = tmp_path / f"fresh-{commit[:8]}-{branch}"
        check_out(mirrors, git_repo, fresh, commit, branch, kept=False)
        check_out(mirrors, git_repo, kept, commit, branch, kept=True)
        assert snapshot(kept) == snapshot(fresh), (commit, branch)
    assert snapshot(kept)["refs"] == f"refs/heads/main {second}\nrefs/tags/v2 {git(origin, 'rev-parse', 'v2')}"
    assert snapshot(kept)["reflog"] == ""  # neither the builds before it nor the node's own paths


def test_a_kept_checkout_refuses_a_commit_too_large_before_writing_a_file(tmp_path, git_repo):
    first = git_repo.commit("master", {"a": "1\n"})
    mirrors = GitMirrors(tmp_path / "mirrors")
    kept = tmp_path / "kept"
    check_out(mirrors, git_repo, kept, first, "master", kept=False)
    large = git_repo.commit("master", {"big": "x" * (2 * 1024 * 1024 + 1)})

    with pytest.raises(GitError) as raised:
        check_out(mirrors, git_repo, kept, large, "master", kept=True, max_bytes=2 * 1024 * 1024)

    assert raised.value.reason == "sources do not fit the 2 MB workspace (the commit's files take 3 MB)"
    assert sorted(path.name for path in kept.iterdir()) == [".git", "a"]
    assert git(kept, "rev-parse", "HEAD") == first


class Discarded(list):
    """The names of the trees discarded, each gone at once as CheckoutRemover.discard has it."""

    def __call__(self, tree: Path) -> None:
        self.append(tree.name)
        shutil.rmtree(tree)


def a_tree(path: Path, *files: str) -> Path:
    (path / ".git").mkdir(parents=True)
    for name in files:
        (path / name).write_text("")
    return path


def test_a_kept_checkout_serves_its_own_scope_alone_and_each_build_takes_it_once(tmp_path):
    checkouts, discarded = tmp_path / "checkouts", Discarded()
    checkouts.mkdir()
    trees = KeptTrees(checkouts, discarded)
    branch, pull = TreeKey("app", pull_request=False), TreeKey("app", pull_request=True)

    trees.give_back(branch, a_tree(checkouts / "build-1", "one"), 1)

    assert trees.take(pull, checkouts / "build-2") == 0
    assert not (checkouts / "build-2").exists()
    assert trees.take(TreeKey("other", pull_request=False), checkouts / "build-2") == 0
    assert trees.take(branch, checkouts / "build-2") == 1
    assert (checkouts / "build-2" / "one").exists()
    assert trees.take(branch, checkouts / "build-3") == 0  # taken: a build beside it makes its own
    assert discarded == []


def test_the_kept_checkouts_are_bounded_in_number_and_in_uses(tmp_path):
    checkouts, discarded = tmp_path / "checkouts", Discarded()
    checkouts.mkdir()
    trees = KeptTrees(checkouts, discarded, max_kept=2)
    keys = [TreeKey(name, pull_request=False) for name in ("a", "b", "c")]

    for number, key in enumerate(keys):
        trees.give_back(key, a_tree(checkouts / f"build-{number}"), 1)
    assert trees.kept() == {keys[1]: 1, keys[2]: 1}
    assert discarded == [keys[0].folder]  # the least recently given back

    # One given back for a key that has one (two builds of it at once): the newer stays.
    trees.give_back(keys[1], a_tree(checkouts / "build-3", "newer"), 5)
    assert trees.kept() == {keys[2]: 1, keys[1]: 5}
    assert trees.take(keys[1], checkouts / "build-4") == 5 and (checkouts / "build-4" / "newer").exists()

    trees.give_back(keys[1], checkouts / "build-4", MAX_USES)
    trees.give_back(keys[0], a_tree(checkouts / "build-5", ".gitmodules"), 1)
    (checkouts / "build-6").mkdir()  # a Dockerfile build's whose .git did not come back
    trees.give_back(keys[0], checkouts / "build-6", 1)
    assert trees.kept() == {keys[2]: 1}
    assert discarded[-3:] == ["build-4", "build-5", "build-6"]
