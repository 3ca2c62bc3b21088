"""Each node's own commit status (node/statuses.py): four real nodes on loopback with faked
builds, one of them lying, post their own results to a recording forge, each with a token
of its own; a node without its token does not start; which builds get a node status."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
import yaml

from harness.network import write_network
from node.statuses import NodeStatuses
from pbft.build import Operation, Result
from pbft.messages import Request
from shared.config import ConfigError, load_config
from shared.statuses import running_poster
from tests.support.node_network import Network
from tests.support.status_server import StatusServer

TOKENS = {node_id: f"ghp_node-{node_id}-own-token" for node_id in range(4)}
MASTER = "a" * 40  # what tests.support.node_network's fake build gives for master


@pytest.fixture
def forge():
    server = StatusServer(*TOKENS.values()).start()
    yield server
    server.stop()


def node_statuses_network(
    tmp_path, forge: StatusServer, *, with_tokens=range(4), allow_byzantine=False, **settings
):
    """A network whose repository `example` asks for node statuses, with its other `settings`;
    tokens written for `with_tokens`."""
    path = write_network(tmp_path, allow_byzantine=allow_byzantine, protocol={"view_change_timeout_s": 0.5})
    data = yaml.safe_load(path.read_text())
    data["repositories"][0].update(full_name="octo/example", status_api=forge.url, node_statuses=True,
                                   node_status_token_file="keys/node-{id}.status-token", **settings)
    path.write_text(yaml.safe_dump(data))
    for node_id in with_tokens:
        (tmp_path / "keys" / f"node-{node_id}.status-token").write_text(TOKENS[node_id] + "\n")
    return load_config(path)


async def wait_for_calls(forge: StatusServer, count: int, timeout_s: float = 10) -> list:
    """The forge's calls once it has `count` (it serves in a thread; the nodes post from this loop)."""
    async with asyncio.timeout(timeout_s):
        while len(forge.calls) < count:
            await asyncio.sleep(0.02)
    return list(forge.calls)


async def test_each_node_posts_its_own_result_with_its_own_token_a_liar_its_lie(tmp_path, forge, caplog):
    caplog.set_level(logging.INFO)
    config = node_statuses_network(tmp_path, forge, allow_byzantine=True)
    net = Network(config, tampered={3})
    try:
        for node_id in range(4):
            await net.start(node_id)
        async with aiohttp.ClientSession() as session:
            agreed, _ = await net.submit(session, "master", 7, [0])
        assert agreed["status"] == "success"
        calls = await wait_for_calls(forge, 4)
    finally:
        for node_id in list(net.runners):
            await net.stop(node_id)

    by_context = {call.context: call for call in calls}
    assert sorted(by_context) == [f"pbft-ci/node-{node_id}" for node_id in range(4)], calls
    client_url = f"http://127.0.0.1:{config.clients[0].port}"
    for node_id in range(4):
        call = by_context[f"pbft-ci/node-{node_id}"]
        assert call.path == f"/repos/octo/example/statuses/{MASTER}"
        assert call.token == TOKENS[node_id]  # its own, no other node's
        assert call.target_url == f"{client_url}/builds/7/log?node={node_id}"
    assert [(by_context[f"pbft-ci/node-{i}"].state, by_context[f"pbft-ci/node-{i}"].description)
            for i in range(4)] == [(
                "success", f"node {i}: build passed (exit 0)") for i in range(3)] + [
            ("failure", "node 3: build failed (exit 1)")]  # the liar's own voice says its lie
    assert not any(token in caplog.text for token in TOKENS.values())
    assert len(forge.calls) == 4  # one each, and nothing for the network as a whole: that is the client's


async def test_a_node_without_its_token_file_does_not_start(tmp_path, forge):
    config = node_statuses_network(tmp_path, forge, with_tokens=[0, 1, 2])
    net = Network(config, tampered=set())
    missing = tmp_path / "keys" / "node-3.status-token"
    try:
        await net.start(0)
        with pytest.raises(ConfigError) as caught:
            await net.start(3)
    finally:
        for node_id in list(net.runners):
            await net.stop(node_id)
    assert caught.value.problems == [
        f"repository example: node_status_token_file: node 3: cannot read {missing}: No such file or directory"]


async def test_which_builds_a_node_posts_and_under_which_context(tmp_path, forge):
    config = node_statuses_network(tmp_path, forge)
    pinned, other = "c" * 40, "d" * 40

    def request(timestamp: int, **operation) -> Request:
        return Request("client", timestamp, Operation("example", "master", **operation))

    async with running_poster() as poster:
        statuses = NodeStatuses(config, 2, {"example": tmp_path / "keys" / "node-2.status-token"}, poster)
        matrix = Result("matrix", None, MASTER, "expands", combinations=((("PYTHON", "3.12"),),))
        statuses.finished(request(1), matrix)  # a plan, not a pass or a fail
        statuses.finished(request(2, cancels=1), Result("success", 0, None, "cancel of build ordered"))
        statuses.finished(request(3), Result("error", None, None, "branch master not found"))  # no commit
        statuses.finished(request(4, commit="abc"), Result("error", None, None, "not a full sha"))
        statuses.finished(request(5, commit=pinned), Result("error", None, None, f"commit {pinned} is not on master"))
        statuses.finished(request(6, combination=(("PYTHON", "3.12"),)), Result("failure", 2, other))
        statuses.finished(request(7), Result("skipped", None, other, "[skip ci] in the commit message"))
        await wait_for_calls(forge, 3)

    # Several workers post at once: the order they land in is not the order they were queued in.
    assert sorted((call.path, call.context, call.state, call.description) for call in forge.calls) == [
        (f"/repos/octo/example/statuses/{pinned}", "pbft-ci/node-2", "error",
         f"node 2: build error: commit {pinned} is not on master"),
        (f"/repos/octo/example/statuses/{other}", "pbft-ci/PYTHON=3.12/node-2", "failure",
         "node 2: build failed (exit 2)"),
        # A skipped build keeps a required check expected, as the client's verdict of it does.
        (f"/repos/octo/example/statuses/{other}", "pbft-ci/node-2", "pending",
         "node 2: build skipped, nothing built: [skip ci] in the commit message"),
    ]
    assert {call.token for call in forge.calls} == {TOKENS[2]}


@pytest.mark.parametrize("settings, path, state", [
    ({}, "/repos/octo/example/statuses/", "pending"),
    ({"skipped_passes": True}, "/repos/octo/example/statuses/", "success"),
    ({"status_style": "gitlab"}, "/projects/octo/example/statuses/", "skipped"),
    ({"status_style": "gitlab", "skipped_passes": True}, "/projects/octo/example/statuses/", "skipped"),
])
async def test_a_nodes_skipped_build_passes_a_check_only_where_the_repository_says(
    tmp_path, forge, settings, path, state
):
    config = node_statuses_network(tmp_path, forge, **settings)
    skipped = Result("skipped", None, MASTER, "when: event pull_request is not push")

    async with running_poster() as poster:
        statuses = NodeStatuses(config, 1, {"example": tmp_path / "keys" / "node-1.status-token"}, poster)
        statuses.finished(Request("client", 1, Operation("example", "master", MASTER)), skipped)
        [call] = await wait_for_calls(forge, 1)

    assert (call.path, call.context, call.state) == (path + MASTER, "pbft-ci/node-1", state)
    assert call.description == "node 1: build skipped, nothing built: when: event pull_request is not push"


async def test_a_renewed_token_is_used_from_the_next_status_on(tmp_path, forge, caplog):
    config = node_statuses_network(tmp_path, forge)
    token_file = tmp_path / "keys" / "node-1.status-token"
    renewed = "ghp_node-1-renewed-token"

    def build(timestamp: int) -> tuple[Request, Result]:
        return Request("client", timestamp, Operation("example", "master")), Result("success", 0, f"{timestamp:x}" * 40)

    async with running_poster() as poster:
        statuses = NodeStatuses(config, 1, {"example": token_file}, poster)
        statuses.finished(*build(1))
        await wait_for_calls(forge, 1)
        token_file.write_text(renewed + "\n")  # as a job that renews a short-lived token would
        statuses.finished(*build(2))
        await wait_for_calls(forge, 2)
        token_file.unlink()
        statuses.finished(*build(3))

    assert [(call.path[-40:], call.token) for call in forge.calls] == [("1" * 40, TOKENS[1]), ("2" * 40, renewed)]
    assert f"no status of its own for build client-3: cannot read {token_file}" in caplog.text
    assert renewed not in caplog.text and TOKENS[1] not in caplog.text
