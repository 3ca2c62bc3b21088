"""A pull request's base branch's spec, read from a real git repository (builder/workspace/basespec.py):
it decides whether the pull request builds only where every node reads the same commit and
spec; anywhere else there are no conditions and the pull request is not skipped."""

import os

import git
import pytest
import yaml

from builder.workspace.basespec import read_base_spec
from builder.plan.spec import MAX_SPEC_BYTES
from builder.plan.triggers import Trigger, parse_when

PUSH_ONLY = yaml.safe_dump({"commands": ["true"], "when": {"event": "push"}})


@pytest.fixture
def repo(git_repo):
    opened = git.Repo(git_repo.path)
    yield opened
    opened.close()


def pull_request(before) -> Trigger:
    return Trigger("pull_request", "master", before)


def test_the_base_commits_when_decides_and_the_line_names_it(git_repo, repo):
    base = git_repo.commit("master", {".pbft-ci.yml": PUSH_ONLY})
    head = git_repo.commit("feature", {".pbft-ci.yml": yaml.safe_dump({"commands": ["exit 3"]})})

    read, line = read_base_spec(repo, pull_request(base), head)

    assert read is not None and (read.commit, read.conditions) == (base, parse_when({"event": "push"})[0])
    assert line == f"the base branch's .pbft-ci.yml at {base[:12]} decides whether the pull request builds (its when:)"


def test_a_base_the_target_moved_on_to_counts_while_it_is_on_the_target_branch(git_repo, repo):
    # GitHub's `before` is the target's head when the pull request was opened or updated: not an
    # ancestor of the head once the target moved on since the branch, but on the target branch.
    git_repo.commit("master", {".pbft-ci.yml": PUSH_ONLY, "a": "1\n"})
    head = git_repo.commit("feature", {"b": "1\n"})
    moved_on = git_repo.commit("master", {"a": "2\n"})

    read, _ = read_base_spec(repo, pull_request(moved_on), head)
    assert read is not None and read.commit == moved_on


def test_a_base_on_neither_the_head_nor_the_target_does_not_decide(git_repo, repo):
    git_repo.commit("master", {".pbft-ci.yml": PUSH_ONLY})
    head = git_repo.commit("feature", {"b": "1\n"})
    elsewhere = git_repo.commit("other", {"c": "1\n"})

    for before, said in [
        (None, "the request names no base commit"),
        (elsewhere, f"base commit {elsewhere[:12]} is neither an ancestor of the pull request's head nor on master"),
        ("0123456789abcdef0123456789abcdef01234567", "base commit 0123456789ab is neither"),
    ]:
        read, line = read_base_spec(repo, pull_request(before), head)
        assert read is None and line.startswith(said) and line.endswith("the pull request is not skipped"), line


@pytest.mark.parametrize("spec, said", [
    (None, "is missing, not a regular file or larger than"),
    ("link", "is missing, not a regular file or larger than"),
    ("commands: [make]\nwhen: {event: push}\n" + "#" * MAX_SPEC_BYTES, "is missing, not a regular file or larger than"),
    ("commands: [make]\nwhen: {event: deploy}\n", "does not parse"),
    ("commands: [make\n", "does not parse"),
    ("commands: [make]\n", "has no when"),
])
def test_a_base_spec_that_cannot_be_read_as_a_spec_does_not_skip(git_repo, repo, spec, said):
    files = {"README.md": "a\n"}
    if spec == "link":
        files["push-only.yml"] = PUSH_ONLY
    elif spec is not None:
        files[".pbft-ci.yml"] = spec
    base = git_repo.commit("master", files)
    if spec == "link":
        # Whatever it points at, a link would be followed on the node's own file system.
        os.symlink("push-only.yml", git_repo.path / ".pbft-ci.yml")
        base = git_repo.commit("master", {})
    head = git_repo.commit("feature", {"b": "1\n"})

    read, line = read_base_spec(repo, pull_request(base), head)

    assert read is None
    assert line.startswith(f"the base branch's .pbft-ci.yml at {base[:12]} {said}"), line


def test_a_directory_named_as_the_spec_is_no_spec(git_repo, repo):
    base = git_repo.commit("master", {".pbft-ci.yml/when.yml": PUSH_ONLY})
    head = git_repo.commit("feature", {"b": "1\n"})

    read, line = read_base_spec(repo, pull_request(base), head)
    assert read is None and "is missing, not a regular file" in line
