"""The mirror's answers and the checkout's git state, without Docker (builder/workspace/gitmirror.py,
builder/workspace/checkout.py): which commit a build gets or which reason it fails with, and a
checkout whose .git holds the tags and the build's branch alone, with no remote; the executor's
tests (test_executor.py, test_executor_checkout.py) show the same through whole builds."""

import subprocess
from pathlib import Path

import pytest

from builder.workspace import checkout
from builder.workspace.gitmirror import GitError, GitMirrors
from tests.builder.executor_helpers import GitRepo


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True).stdout.strip()


def resolve(mirrors: GitMirrors, repo: GitRepo, branch: str, commit: str | None, pull_ref: str | None = None) -> str:
    mirror, resolved = mirrors.resolve(name="r", url=str(repo.path), branch=branch, commit=commit, pull_ref=pull_ref)
    mirror.close()
    return resolved


def test_a_pinned_commit_resolves_only_on_its_branch_and_each_failure_keeps_its_reason(tmp_path, git_repo):
    first = git_repo.commit("master", {"a": "1\n"})
    other = git_repo.commit("feature", {"b": "1\n"})
    head = git_repo.commit("master", {"a": "2\n"})
    git_repo.tag("v1", first, annotated=True)
    pull = git_repo.pull_request(3, other)
    mirrors = GitMirrors(tmp_path / "mirrors")

    assert resolve(mirrors, git_repo, "master", None) == head
    assert resolve(mirrors, git_repo, "master", head) == head
    assert resolve(mirrors, git_repo, "master", first) == first  # behind the head
    assert resolve(mirrors, git_repo, "v1", first) == first  # a tag push names the tag's commit
    assert resolve(mirrors, git_repo, "master", None, pull) == other
    failures = {
        ("master", other, None): f"commit {other} is not on branch 'master'",
        ("feature", head, None): f"commit {head} is not on branch 'feature'",
        ("v1", head, None): f"commit {head} is not tag 'v1'",
        ("gone", head, None): "branch not found: gone",
        ("gone", None, None): "branch not found: gone",
        ("master", "0" * 40, None): "commit not found: " + "0" * 40,
        ("master", head, pull): f"commit {head} is not the head of {pull} (its head is {other})",
        ("master", None, "refs/pull/4/head"): "pull request ref not found: refs/pull/4/head",
    }
    for (branch, commit, pull_ref), reason in failures.items():
        with pytest.raises(GitError) as raised:
            resolve(mirrors, git_repo, branch, commit, pull_ref)
        assert raised.value.reason == reason


def test_a_tree_object_is_not_a_commit(tmp_path, git_repo):
    git_repo.commit("master", {"a": "1\n"})
    tree = git(git_repo.path, "rev-parse", "master^{tree}")

    with pytest.raises(GitError, match=f"commit not found: {tree}"):
        resolve(GitMirrors(tmp_path / "mirrors"), git_repo, "master", tree)


def check_out(tmp_path: Path, repo: GitRepo, commit: str, branch: str | None, max_bytes: int | None = None) -> Path:
    mirrors = GitMirrors(tmp_path / "mirrors")
    resolve(mirrors, repo, "master", None)
    dest = tmp_path / "checkout"
    checkout.workspace(mirrors, checkout.Checkout(
        name="r", url=str(repo.path), commit=commit, branch=branch, submodule_urls=frozenset(), max_bytes=max_bytes,
    ), dest)
    return dest


@pytest.mark.parametrize("branch", ["master", "feature", "release/1", None])
def test_a_checkout_holds_the_tags_and_the_builds_branch_alone_with_no_remote(tmp_path, git_repo, branch):
    first = git_repo.commit("master", {"a": "1\n"})
    git_repo.tag("v1", first)
    git_repo.commit("master", {"a": "2\n"})
    git_repo.commit("feature", {"b": "1\n"})
    git_repo.pull_request(3, first)
    git(git_repo.path, "checkout", "--quiet", "master")  # the mirror's HEAD, so the clone's branch

    dest = check_out(tmp_path, git_repo, first, branch)

    refs = [f"refs/heads/{branch} {first}"] if branch else []
    assert git(dest, "for-each-ref", "--format=%(refname) %(objectname)").splitlines() == [*refs, f"refs/tags/v1 {first}"]
    assert git(dest, "rev-parse", "HEAD") == first
    assert git(dest, "branch", "--show-current") == (branch or "")
    assert git(dest, "remote") == ""
    assert git(dest, "config", "--local", "--name-only", "--list").splitlines() == [
        "core.repositoryformatversion", "core.filemode", "core.bare", "core.logallrefupdates",
    ]
    assert git(dest, "status", "--porcelain", "--untracked-files=all") == ""
    assert sorted(path.name for path in dest.iterdir()) == [".git", "a"]
    # No reflog: it would show the build the node's own path to its mirror.
    assert git(dest, "reflog", "--all") == ""
    assert not (dest / ".git" / "logs").exists()


def test_a_mirror_whose_head_names_no_branch_gives_a_checkout_without_it(tmp_path, git_repo):
    head = git_repo.commit("master", {"a": "1\n"})
    mirrors = GitMirrors(tmp_path / "mirrors")
    resolve(mirrors, git_repo, "master", None)
    git(tmp_path / "mirrors" / "r.git", "symbolic-ref", "HEAD", "refs/heads/gone")
    dest = tmp_path / "checkout"

    checkout.workspace(mirrors, checkout.Checkout(
        name="r", url=str(git_repo.path), commit=head, branch="master", submodule_urls=frozenset(),
    ), dest)

    assert git(dest, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert git(dest, "remote") == ""
    assert git(dest, "reflog", "--all") == ""


def test_a_tree_too_large_is_refused_before_a_file_is_written(tmp_path, git_repo):
    head = git_repo.commit("master", {"big": "x" * (2 * 1024 * 1024 + 1)})

    with pytest.raises(GitError) as raised:
        check_out(tmp_path, git_repo, head, "master", max_bytes=2 * 1024 * 1024)

    assert raised.value.reason == "sources do not fit the 2 MB workspace (the commit's files take 3 MB)"
    assert [path.name for path in (tmp_path / "checkout").iterdir()] == [".git"]
