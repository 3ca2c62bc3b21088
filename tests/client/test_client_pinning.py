"""The client pins the commit a request's branch names before it signs it (client.heads): a
plain call, a schedule and a re-run of a build without a commit go out with the branch's
head of that moment, so a push between two nodes' fetches cannot give them two commits.
Against fake nodes (tests/client/fake_nodes.py), with a real git repository as the
configured `example` (the fixture's `repo`)."""

import asyncio
import logging
import subprocess

from client.heads import HeadUnknown, branch_head
from client.keys import RECORDS_KEY, SERVICE_KEY
from client.outcome import TimedOut
from pbft.build import Actor, Operation
from tests.client.fake_nodes import post, start_client

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def commit(repo, message: str, branch: str = "main") -> str:
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", branch, str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-B", branch], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-q", "--allow-empty", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def ordered(cluster) -> list[Operation]:
    return [request.operation for _view, request in cluster.committed.values()]


async def test_a_plain_call_is_pinned_to_the_branch_head_of_the_moment(cluster, aiohttp_client, tmp_path):
    repo = tmp_path / "repo"
    first = commit(repo, "one")
    client = await start_client(aiohttp_client, cluster)
    assert (await post(client, {"branch": "main"}))[0] == 200
    second = commit(repo, "two")  # a push: the next call builds the new head, the first stays as it was
    assert (await post(client, {"branch": "main"}))[0] == 200
    assert [operation.commit for operation in ordered(cluster)] == [first, second]
    # A commit the caller pinned is its own: the client does not look.
    assert (await post(client, {"branch": "main", "commit": first}))[0] == 200
    assert ordered(cluster)[-1].commit == first


async def test_what_cannot_be_pinned_goes_unpinned_and_the_log_says_why(cluster, aiohttp_client, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    commit(tmp_path / "repo", "one")
    client = await start_client(aiohttp_client, cluster)
    # No such branch: every node answers `branch not found` for itself.
    assert (await post(client, {"branch": "missing"}))[0] == 200
    # `other` is configured as a folder that is no repository: the client cannot look.
    assert (await post(client, {"branch": "main", "repository": "other"}))[0] == 200
    assert [operation.commit for operation in ordered(cluster)] == [None, None]
    assert "branch 'missing' of example not found at its repository: sent unpinned" in caplog.text
    assert "could not pin the head of branch 'main' of other" in caplog.text


async def test_a_rerun_of_a_build_without_a_commit_is_pinned(cluster, aiohttp_client, tmp_path):
    client = await start_client(aiohttp_client, cluster, deadline_s=1.0)
    service = client.server.app[SERVICE_KEY]
    for node in range(4):
        cluster.behaviour[node] = "silent"
    # The repository is not there yet: the build goes unpinned, and no node answers it.
    lost = await service.verbs.submit.wait(Operation("example", "main", None, event="manual"))
    record = client.server.app[RECORDS_KEY].builds.get(int(lost.build_id))
    assert isinstance(lost.outcome, TimedOut)
    assert record["request"]["operation"]["commit"] is None and not record["replies"]
    for node in range(4):
        cluster.behaviour[node] = "honest"
    head = commit(tmp_path / "repo", "one")
    rerun_id = await service.verbs.rerun.start(record, Actor("machine", "client"))
    async with asyncio.timeout(10):
        while rerun_id not in cluster.committed:
            await asyncio.sleep(0.02)
    assert cluster.committed[rerun_id][1].operation.commit == head


async def test_the_head_of_a_branch_is_the_exact_ref_never_one_that_ends_like_it(tmp_path):
    repo = tmp_path / "repo"
    main = commit(repo, "one", branch="main")
    commit(repo, "two", branch="x/refs/heads/main")
    assert await branch_head(str(repo), "main") == main
    assert await branch_head(str(repo), "nothing") is None
    try:
        await branch_head(str(tmp_path / "nowhere"), "main")
    except HeadUnknown as error:
        assert "does not appear to be a git repository" in str(error)
    else:
        raise AssertionError("an unreachable repository has no head to tell")


def test_a_rerun_takes_the_commit_f_plus_1_replies_name_when_the_verdict_names_none():
    from client.verbs.rerun import commit_of

    def reply(sender: int, commit: str | None) -> dict:
        return {"sender": sender, "result": {"status": "failure", "exit_code": 1, "commit": commit}}

    a, b = "a" * 40, "b" * 40
    disputed = {"result": {"status": "disputed"}, "replies": [reply(0, a), reply(1, a), reply(2, b), reply(3, None)]}
    assert commit_of(disputed, 2) == a
    # One node alone may lie; two commits with f+1 each say the branch moved: neither is taken.
    assert commit_of({**disputed, "replies": [reply(0, a), reply(2, b)]}, 2) is None
    assert commit_of({"result": None, "replies": [reply(0, a), reply(1, a), reply(2, b), reply(3, b)]}, 2) is None
    assert commit_of({"result": {"status": "failure", "commit": b}, "replies": []}, 2) == b
