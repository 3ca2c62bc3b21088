"""Nodes re-read their configuration on SIGHUP (shared/reload.py): a repository added to the file
is built once the nodes have reloaded; during a rolling reload the nodes that lack it answer
`unknown repository`, and the verdict is what f+1 (and 2f+1) of them say. Four real nodes on
loopback (aiohttp, WebSockets, Ed25519), builds faked."""

from __future__ import annotations

import logging

import aiohttp
import pytest
import yaml

from harness.network import free_port, parse_metrics, write_network
from node.server import LIVE
from shared.config import load_config
from tests.support.node_network import Network

SUCCESS = {"status": "success", "exit_code": 0, "commit": "a" * 40}


@pytest.fixture
async def network(tmp_path):
    config = load_config(write_network(tmp_path, protocol={"view_change_timeout_s": 0.5}))
    net = Network(config, set())
    try:
        for node_id in range(4):
            await net.start(node_id)
        yield net
    finally:
        for node_id in list(net.runners):
            await net.stop(node_id)


def add_repository(net: Network, name: str) -> None:
    path = net.config.path
    data = yaml.safe_load(path.read_text())
    data["repositories"].append({"name": name, "url": f"{name}-repo"})
    path.write_text(yaml.safe_dump(data))


async def reload(net: Network, nodes) -> list[str]:
    return [await net.runners[node_id].app[LIVE].reload() for node_id in nodes]


def unknown(result) -> bool:
    return result.status == "error" and result.reason.startswith(
        "unknown repository: newrepo (not in this node's configuration; a repository just added to the file "
        "needs a reload of every node: SIGHUP, ./scripts/reload.sh)")


async def test_a_repository_added_to_the_file_is_built_after_every_node_reloads(network, caplog):
    async with aiohttp.ClientSession() as session:
        agreed, replies = await network.submit(session, "master", 1, [0], repository="newrepo")
        assert agreed["status"] == "error" and all(unknown(reply.result) for reply in replies)

        add_repository(network, "newrepo")
        with caplog.at_level(logging.INFO, logger="shared.reload"):
            assert await reload(network, range(4)) == ["applied"] * 4
        assert [f"node={i} reload: repositories added: newrepo" for i in range(4)] == caplog.messages

        agreed, _ = await network.submit(session, "master", 2, [0], repository="newrepo")
        assert agreed == SUCCESS
        node = network.config.node(2)
        async with session.get(f"http://{node.host}:{node.port}/metrics") as response:
            metrics = parse_metrics(await response.text())
        assert metrics[("pbft_node_reloads_total", (("outcome", "applied"),))] == 1


@pytest.mark.parametrize("reloaded, verdict", [
    ([0, 1, 2], "success"),  # 2f+1 build it: certified success; the fourth's error is a dissent
    ([3], "error"),  # 2f+1 lack it: certified `unknown repository`
])
async def test_a_rolling_reload_gives_the_verdict_of_the_nodes_that_agree(network, reloaded, verdict):
    add_repository(network, "newrepo")
    assert await reload(network, reloaded) == ["applied"] * len(reloaded)
    async with aiohttp.ClientSession() as session:
        agreed, replies = await network.submit(session, "master", 1, [0], repository="newrepo")
    assert agreed["status"] == verdict
    assert all(unknown(reply.result) != (reply.sender in reloaded) for reply in replies)
    # Each reply names the network document its node runs: a node that reloaded alone is told apart.
    reloaded_digest = load_config(network.config.path).digest
    assert reloaded_digest != network.config.digest
    assert {reply.sender: reply.network for reply in replies} == {
        reply.sender: reloaded_digest if reply.sender in reloaded else network.config.digest for reply in replies}


async def test_a_node_refuses_a_file_changing_its_membership_and_keeps_building(network, caplog):
    path = network.config.path
    data = yaml.safe_load(path.read_text())
    data["nodes"][2]["port"] = free_port()
    data["repositories"].append({"name": "newrepo", "url": "newrepo-repo"})
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await reload(network, [2]) == ["refused"]
    assert caplog.messages == ["node=2 reload refused: nodes[2].port cannot change without a restart; "
                               "the running configuration stays"]
    async with aiohttp.ClientSession() as session:
        agreed, _ = await network.submit(session, "master", 1, [0])
    assert agreed == SUCCESS


async def test_with_owners_a_reload_takes_the_nodes_own_settings_and_never_the_network_document(tmp_path, caplog):
    path = write_network(tmp_path, protocol={"view_change_timeout_s": 0.5})
    data = yaml.safe_load(path.read_text())
    data["owners"] = {"threshold": 1, "keys": [{"name": "ada", "public_key": data["nodes"][0]["public_key"]}]}
    path.write_text(yaml.safe_dump(data))
    net = Network(load_config(path), set())
    try:
        for node_id in range(4):
            await net.start(node_id)
        add_repository(net, "newrepo")
        with caplog.at_level(logging.INFO, logger="shared.reload"):
            assert await reload(net, [1]) == ["applied"]
        file_digest = load_config(path).digest
        assert caplog.messages == [
            f"node=1 reload: nothing changed; the file's network settings ({file_digest[:16]}) are not the "
            f"network's ({net.config.digest[:16]}), which change through the order only: scripts/network.py"]
        async with aiohttp.ClientSession() as session:
            agreed, replies = await net.submit(session, "master", 1, [0], repository="newrepo")
        assert agreed["status"] == "error" and all(unknown(reply.result) for reply in replies)
        assert {reply.network for reply in replies} == {net.config.digest}
    finally:
        for node_id in list(net.runners):
            await net.stop(node_id)
