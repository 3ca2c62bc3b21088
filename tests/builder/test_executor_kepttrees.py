"""A node keeps a build's checkout for the next build of the repository in the same scope
(builder/workspace/kepttrees.py), on the real Docker engine: the next build gets its own
commit's files and nothing of the one before, a pull request's build never takes a branch
build's checkout, and a Dockerfile build keeps its checkout too."""

import pytest

from builder.workspace.kepttrees import TreeKey
from tests.builder.executor_helpers import build, log_text, spec

pytestmark = pytest.mark.docker

BRANCH, PULL = TreeKey("example", pull_request=False), TreeKey("example", pull_request=True)


async def test_the_next_build_takes_the_checkout_the_last_build_of_its_scope_left(make_executor, git_repo, build_ids):
    listing = spec("ls -A | tr '\\n' ' '", "cat *.txt")
    git_repo.commit("master", {"old.txt": "the first commit's\n", ".pbft-ci.yml": listing})
    executor = make_executor()

    first = await build(executor, git_repo, build_ids)
    assert first.status == "success", log_text(first)
    assert executor.kept_checkouts() == {BRANCH: 1}
    # A build that finds nothing to fetch leaves the kept checkout to the next one.
    missing = await build(executor, git_repo, build_ids, branch="gone")
    assert (missing.status, missing.reason) == ("error", "branch not found: gone")
    assert executor.kept_checkouts() == {BRANCH: 1}

    git_repo._git("rm", "--quiet", "old.txt")
    head = git_repo.commit("master", {"new.txt": "the second commit's\n"})
    second = await build(executor, git_repo, build_ids)

    text = log_text(second)
    assert (second.status, second.commit) == ("success", head), text
    assert ".git .pbft-ci.yml new.txt the second commit's\n" in text
    assert "first commit" not in text
    assert executor.kept_checkouts() == {BRANCH: 2}

    pull = git_repo.pull_request(4, head)
    third = await build(executor, git_repo, build_ids, event="pull_request", pull_ref=pull)

    assert third.status == "success", log_text(third)
    assert executor.kept_checkouts() == {BRANCH: 2, PULL: 1}  # made anew: the branch's was not taken


async def test_a_dockerfile_build_keeps_its_checkout_and_its_context_holds_no_git(
    make_executor, git_repo, build_ids, docker_client
):
    dockerfile = (
        "FROM pbft-ci/busybox:latest\n"
        "COPY . /context\n"
        "RUN test ! -e /context/.git\n"
        'CMD ["cat", "/context/check.txt"]\n'
    )
    heads = [git_repo.commit("master", {"Dockerfile": dockerfile, "check.txt": "first\n"})]
    executor = make_executor()
    try:
        first = await build(executor, git_repo, build_ids)
        heads.append(git_repo.commit("master", {"check.txt": "second\n"}))
        second = await build(executor, git_repo, build_ids)
    finally:
        for head in heads:
            docker_client.images.remove(f"pbft-ci-build/example:{head[:12]}", force=True)

    assert first.status == "success", log_text(first)
    assert (second.status, second.commit) == ("success", heads[1]), log_text(second)
    assert "second\n" in log_text(second)
    assert executor.kept_checkouts() == {BRANCH: 2}
