"""Name validation, checked against git's own `check-ref-format --branch`."""

import subprocess

import pytest

from shared.refs import check_branch_name, check_commit_sha, check_repository_name

VALID_BRANCHES = [
    "master", "feature/x", "a@b", "@a", "a/@", "a{b}", "x.lock.y", "a-", "a/-b", "refs/heads/x",
    "release-1.2", "a#b", "a%b", "a,b", "a=b",
    "x" * 255,
]
INVALID_BRANCHES = [
    "", "-x", "-", "a..b", "..", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b",
    "a@{b", "@{-1}", ".a", "a/.b", "a.lock", "a/b.lock", "a.lock/b", ".lock", "a/", "a.", "a/.",
    "a//b", "/a", "HEAD", "a\tb", "a\nb", "a\x7fb", "a\x00b",
]
# Refused by us although git accepts them, on purpose (see shared.refs).
STRICTER_THAN_GIT = ["@", "é", "x" * 256, "a!b", "a'b", 'a"b', "a&b", "a;b", "a<b", "a|b", "a$b", "a`b", "a(b"]


def git_accepts(name: str) -> bool:
    # Outside any repository: inside one, `@{-1}` names the branch checked out before.
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, cwd="/")
    return result.returncode == 0


@pytest.mark.parametrize("name", VALID_BRANCHES)
def test_valid_branch_names_are_accepted_like_git_does(name):
    check_branch_name(name)
    assert git_accepts(name)


@pytest.mark.parametrize("name", INVALID_BRANCHES)
def test_invalid_branch_names_are_refused_like_git_does(name):
    with pytest.raises(ValueError):
        check_branch_name(name)
    if "\x00" not in name:  # a NUL cannot even be passed on a command line
        assert not git_accepts(name)


@pytest.mark.parametrize("name", STRICTER_THAN_GIT)
def test_some_names_git_accepts_are_refused(name):
    with pytest.raises(ValueError):
        check_branch_name(name)
    assert git_accepts(name)


def test_branch_name_must_be_a_string():
    with pytest.raises(ValueError):
        check_branch_name(b"master")


@pytest.mark.parametrize("text", ["0" * 40, "0123456789abcdef" * 2 + "01234567", "f" * 64])
def test_full_commit_ids_are_accepted(text):
    check_commit_sha(text)


@pytest.mark.parametrize("text", ["", "abc123", "A" * 40, "g" * 40, "0" * 41, "0" * 39, "0" * 63, " " + "0" * 40, None])
def test_other_commit_ids_are_refused(text):
    with pytest.raises(ValueError):
        check_commit_sha(text)


@pytest.mark.parametrize("name", ["example", "a", "My.Repo_2-x", "9" * 64])
def test_repository_names_are_accepted(name):
    check_repository_name(name)


@pytest.mark.parametrize("name", ["", ".git", "-x", "_x", "a/b", "..", "a b", "x" * 65, "é", None])
def test_other_repository_names_are_refused(name):
    with pytest.raises(ValueError):
        check_repository_name(name)
