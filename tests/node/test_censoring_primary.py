"""A primary that orders everybody's requests but one client's loses its view (OSDI'99 §4.4).

The replica runs a backup's view-change timer for one waited-for request until
that request executes, not until any batch does. Four real node processes on
loopback with the test-only instant builds; node 0, the primary of view 0,
runs `--byzantine censor censored`: its replica never sees a REQUEST of the
client `censored`, whether the client sent it or a backup forwarded it. A busy
client keeps the network ordering a request every half second throughout. The
censored client's request, sent to the primary alone, waits while the busy
client's keep executing in view 0; once it is sent to every node, as the
client's retransmission does, the honest nodes move to view 1 and it executes
within two view-change timeouts.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from harness.network import write_network
from node.byzantine import Censor, make_behaviour, parse_mode
from pbft.build import Operation
from pbft.messages import Commit, Request
from shared.crypto import generate_private_key
from tests.support.node_processes import Client, RealNodes, add_client

CENSOR, HONEST = 0, (1, 2, 3)
CENSORED, BUSY = "censored", "client"
VIEW_CHANGE_TIMEOUT_S = 1.0
BUSY_INTERVAL_S = 0.5
SLACK_S = 1.0  # an instant build, the replies' way back, and a loaded machine's scheduling


@pytest.mark.parametrize("words, expected", [
    (["censor", "censored"], ("censor", "censored")),
    (["censor", "forge-1.example_B"], ("censor", "forge-1.example_B")),
])
def test_censor_takes_a_client_name(words, expected):
    assert parse_mode(words) == expected
    assert str(make_behaviour(*expected, private_key=generate_private_key(), node_id=0, n=4)) == " ".join(words)


@pytest.mark.parametrize("words", [
    ["censor"], ["censor", "a", "b"], ["censor", "-x"], ["censor", "a/b"], ["censor", ""], ["censor", "x" * 65],
])
def test_censor_refuses_anything_but_one_client_name(words):
    with pytest.raises(ValueError, match="censor needs one client name argument CLIENT"):
        parse_mode(words)


def test_censor_keeps_only_that_clients_requests_from_the_replica():
    censor = Censor(CENSORED)
    assert not censor.admits(Request(CENSORED, 1, Operation("example", "master")))
    assert censor.admits(Request(BUSY, 1, Operation("example", "master")))
    assert censor.admits(Commit(0, 1, "c" * 64, 2))


def views_of(client: Client, timestamp: int) -> list[int]:
    return [reply.view for reply, _ in client.replies[timestamp].values()]


@pytest.fixture
def nodes(tmp_path):
    config_path = write_network(tmp_path, allow_byzantine=True,
                                protocol={"view_change_timeout_s": VIEW_CHANGE_TIMEOUT_S})
    add_client(config_path, CENSORED)
    started = RealNodes(config_path)
    try:
        yield started
    finally:
        started.close()


async def test_a_primary_that_censors_one_client_loses_its_view_and_the_request_executes(nodes):
    nodes.start(CENSOR, "--byzantine", "censor", CENSORED)
    for node_id in HONEST:
        nodes.start(node_id)
    config = nodes.config
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        busy, censored = Client(config, BUSY), Client(config, CENSORED)
        await busy.connect(session, range(config.n))
        await censored.connect(session, range(config.n))
        sent: dict[int, float] = {}

        async def keep_busy() -> None:
            """A request to the primary every BUSY_INTERVAL_S (node 0 forwards them once it is a backup)."""
            for timestamp in range(1, 1_000):
                sent[timestamp] = loop.time()
                await busy.send(timestamp, [CENSOR])
                await asyncio.sleep(BUSY_INTERVAL_S)

        busy_task = asyncio.create_task(keep_busy())
        try:
            await busy.wait_verdict(1, timeout_s=10)
            await censored.send(1, [CENSOR])  # a client sends to the primary it knows first
            first_sent_s = loop.time()
            await asyncio.sleep(2 * VIEW_CHANGE_TIMEOUT_S)
            assert censored.verdict(1) is None, "the censoring primary ordered the censored request"
            assert await asyncio.to_thread(lambda: [nodes.status(i)["view"] for i in range(config.n)]) == [0] * 4

            retransmitted_s = loop.time()  # the client's retransmission: to every node
            await censored.send(1, range(config.n))
            result, executed_s = await censored.wait_verdict(1, timeout_s=30)
            took_s = executed_s - retransmitted_s
            statuses = await asyncio.to_thread(lambda: {i: nodes.status(i) for i in range(config.n)})
            after_view_change = max(sent) + 1
            await busy.wait_verdict(after_view_change, timeout_s=10)  # the busy client is still served
        finally:
            busy_task.cancel()
            await asyncio.gather(busy_task, return_exceptions=True)
            await busy.close()
            await censored.close()

    print(f"censored request executed {took_s:.2f} s after its retransmission to every node "
          f"(bound {2 * VIEW_CHANGE_TIMEOUT_S + SLACK_S:.1f} s)")
    assert result["status"] == "success", result
    assert took_s <= 2 * VIEW_CHANGE_TIMEOUT_S + SLACK_S, took_s
    for node_id in HONEST:
        assert (statuses[node_id]["view"], statuses[node_id]["primary"]) == (1, 1), statuses[node_id]
    # The censored request executed in view 1, at every honest node.
    replies = censored.replies[1]
    assert all(replies[node_id][0].view == 1 for node_id in HONEST if node_id in replies), replies
    # Meanwhile the network looked healthy: the busy client's requests kept executing in view 0.
    # Those sent half a busy interval or more before the retransmission: one sent just before
    # it may be answered just after it (in view 0 still), which says nothing either way.
    while_waiting = [
        timestamp for timestamp, at_s in sent.items() if first_sent_s <= at_s < retransmitted_s - BUSY_INTERVAL_S / 2
    ]
    assert len(while_waiting) >= 3, while_waiting
    # A reply names the view its node is in when it executes, so a node that lagged on a
    # loaded machine may answer a request ordered in view 0 from view 1: the verdict's f+1
    # replies are what say where it was ordered.
    for timestamp in while_waiting:
        found = busy.verdict(timestamp)
        assert found is not None and found[1] < retransmitted_s, (timestamp, busy.replies.get(timestamp))
        assert views_of(busy, timestamp).count(0) >= config.f + 1, busy.replies[timestamp]
    assert views_of(busy, after_view_change).count(1) >= config.f + 1, busy.replies[after_view_change]

    # The censor kept the client's request from its replica each time: sent by the client
    # (twice) or forwarded by a backup, counted as a drop and logged.
    assert statuses[CENSOR]["dropped"].get("byzantine_censor_request", 0) >= 3, statuses[CENSOR]["dropped"]
    log = nodes.log(CENSOR)
    assert f"node={CENSOR} started as byzantine: censor {CENSORED}" in log
    assert f"byzantine censor: kept a request of client {CENSORED} (timestamp 1) from the replica" in log
    # A backup's timer for the censored request expired; one whose timer had not yet joined
    # f+1 others' view changes (§4.5.2).
    logs = {node_id: nodes.log(node_id) for node_id in HONEST}
    assert any(f"node={node_id} view=0 timer expired" in logs[node_id] for node_id in HONEST), logs
    assert all(f"node={node_id} view=1 phase=view-change" in logs[node_id] for node_id in HONEST), logs
