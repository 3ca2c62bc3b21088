"""A build runs with the network document in force at the sequence number it was ordered at,
whenever and however the node starts it: four real nodes on loopback (aiohttp, WebSockets,
Ed25519; builds faked, each recording the order it was given) change `build:` through the
order while a build ordered before the change still runs.

A node restarted then builds that build again, after its replay has applied the change; a
node that starts a build once the order has moved past a change (the build's batch and the
change's executed in one turn) starts it after the change too. Both must build with the
settings the build was ordered with, as every other node did, or honest nodes build one
request differently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import aiohttp
import pytest

from builder import BuildOrder, BuildResult
from harness.network import write_network
from node.server import DRIVER
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation
from pbft.effects import NetworkChanged
from pbft.encoding import canonical
from pbft.ci.ordered import OrderedBuild
from pbft.messages import decode
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from shared.config import load_config
from shared.crypto import generate_private_key, sign_bytes
from shared.networkdoc import agreed
from tests.shared.config_files import edit
from tests.support.file_settings import with_owner
from tests.support.node_network import Network

OWNER = generate_private_key()
MEMORY_BEFORE, MEMORY_AFTER = 300, 700


class Builds:
    """Every build order any node was given, in order; builds of branch `slow` end only when
    released."""

    def __init__(self) -> None:
        self.orders: list[BuildOrder] = []
        self.released = asyncio.Event()

    async def build(self, order: BuildOrder) -> BuildResult:
        self.orders.append(order)
        if order.branch == "slow":
            await self.released.wait()
        return BuildResult("success", 0, "a" * 40)

    def memory_of(self, build_id: str) -> list[int]:
        return [order.limits.memory_mb for order in self.orders if order.build_id == build_id]

    async def until(self, build_id: str, count: int, timeout_s: float = 10.0) -> list[int]:
        async with asyncio.timeout(timeout_s):
            while len(self.memory_of(build_id)) < count:
                await asyncio.sleep(0.02)
        return self.memory_of(build_id)


@pytest.fixture
async def net(tmp_path):
    def owned(data: dict) -> None:
        with_owner(data, "ada", OWNER)
        data.setdefault("build", {})["memory_mb"] = MEMORY_BEFORE

    path = edit(write_network(tmp_path, protocol={"view_change_timeout_s": 0.5}), owned)
    builds = Builds()
    network = Network(load_config(path), set(), build=builds.build)
    for node_id in range(4):
        await network.start(node_id)
    yield network, builds
    builds.released.set()
    for node_id in list(network.runners):
        await network.stop(node_id)


async def change_memory(net: Network, session, timestamp: int, memory_mb: int = MEMORY_AFTER,
                        base: dict | None = None) -> dict:
    """Order an owner-signed change of build.memory_mb from `base` (the network's first document)
    to `memory_mb`; the document it makes."""
    base = base or agreed(net.config)
    document = {**base, "build": {**base["build"], "memory_mb": memory_mb}}
    unsigned = NetworkChange(document_digest(base), canonical(document).decode())
    change = replace(unsigned, signatures=(OwnerSignature("ada", sign_bytes(OWNER, canonical(unsigned.signed_payload()))),))
    result, replies = await net.order(session, Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=change), timestamp, [0])
    assert result["status"] == "success", [reply.result.reason for reply in replies]
    return document


async def test_a_build_ordered_before_a_change_is_built_with_the_settings_it_was_ordered_with(net):
    net, builds = net
    async with aiohttp.ClientSession() as session:
        # Sent, and not waited for here: the restart below closes one of the sockets it waits on.
        sent = asyncio.create_task(net.submit(session, "slow", 1, [0]))
        assert await builds.until("client-1", 4) == [MEMORY_BEFORE] * 4  # every node builds it
        await change_memory(net, session, 2)

        # Node 3 restarts while the build runs: its replay applies the change, then it builds
        # the build again, as one it had not finished.
        await net.stop(3)
        await net.start(3)
        assert (await builds.until("client-1", 5))[4] == MEMORY_BEFORE

        # A node that starts the build only now, past the change in the order (its batch and the
        # change's carried out in one turn), starts it with the settings of its own sequence
        # number, which travel with it as the replica gives it (`pbft.ci.ordered`).
        driver = net.runners[0].app[DRIVER]
        [record] = driver.store.build_records(1)
        driver.start_build(OrderedBuild.at(1, decode(record["request"]), driver.replica.network.document_at(1)))
        assert (await builds.until("client-1", 6))[5] == MEMORY_BEFORE

        builds.released.set()
        await asyncio.gather(sent, return_exceptions=True)
        result, replies = await net.submit(session, "slow", 1, range(4))  # the client asks every node again
        assert result["status"] == "success" and len(replies) >= 2
        # A build ordered after the change is built with the new settings on every node.
        await net.submit(session, "master", 3, [0])
        assert await builds.until("client-3", 4) == [MEMORY_AFTER] * 4
    # Each order names the hosts of its document's nodes and clients, which a networked build
    # must not reach however the node's own file stood when it started.
    hosts = tuple(node.host for node in net.config.nodes) + tuple(client.host for client in net.config.clients)
    assert hosts and {order.peer_hosts for order in builds.orders} == {hosts}


async def test_a_node_that_missed_two_changes_builds_with_the_settings_the_others_build_with(net, caplog):
    net, builds = net
    async with aiohttp.ClientSession() as session:
        await net.stop(3)
        # Owners raise the limit and set it back while node 3 is down: the document comes back,
        # at a new digest of no change but the same settings.
        raised = await change_memory(net, session, 1)
        lowered = await change_memory(net, session, 2, MEMORY_BEFORE, base=raised)
        await net.start(3)
        # Held until node 3 built it too: a verdict certified before node 3 catches up is logged in
        # a batch of its own, whose checkpoint would bring node 3 the build as one it learnt, not one to build.
        held = asyncio.create_task(net.submit(session, "slow", 3, range(4)))
        # Node 3 carries both changes out in one turn, as a state transfer that brings both
        # batches does: the first change's effect comes when its replica runs the second's document.
        driver = net.runners[3].app[DRIVER]
        async with asyncio.timeout(10):
            while driver.replica.last_executed < 3:
                await asyncio.sleep(0.02)
        assert driver.replica.network.changed_at == 2 and driver.replica.network.digest == document_digest(lowered)
        assert await builds.until("client-3", 4) == [MEMORY_BEFORE] * 4  # node 3's among them
        builds.released.set()
        await held
        for seq, document in ((1, raised), (2, lowered)):
            driver.network_changed(NetworkChanged(seq, document, document_digest(document)))
        caplog.set_level(logging.INFO, logger="node.driver")
        await net.submit(session, "master", 4, range(4))
        assert await builds.until("client-4", 4) == [MEMORY_BEFORE] * 4
        # Every node's log says what it builds with: the same document, the same limits.
        started = [record.getMessage() for record in caplog.records if "build=client-4 start" in record.getMessage()]
        assert len(started) == 4 and {line.split(" ", 3)[3] for line in started} == {
            f"start repository=example branch=master network={document_digest(lowered)[:16]} image=pbft-ci/busybox:latest "
            f"timeout_s=300 memory_mb={MEMORY_BEFORE} cpus=1 pids_limit=128"}, started
        statuses = {node_id: net.runners[node_id].app[DRIVER].status() for node_id in range(4)}
        assert {status["network"]["digest"] for status in statuses.values()} == {document_digest(lowered)}
        # Its status says the same settings as its peers', those its next build is made with.
        assert [status["build"] for status in statuses.values()] == [{
            "network": document_digest(lowered), "image": "pbft-ci/busybox:latest", "timeout_s": 300,
            "memory_mb": MEMORY_BEFORE, "cpus": 1, "pids_limit": 128}] * 4
        assert not net.runners[3].app[DRIVER].stopped
