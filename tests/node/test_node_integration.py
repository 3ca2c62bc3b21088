"""Four real nodes on loopback (aiohttp, WebSockets, Ed25519), builds faked."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os

import aiohttp
import pytest
import yaml

from harness.network import parse_metrics, write_network
from node import server
from node.server import DRIVER, MAX_FRAME_BYTES, FrameBudget
from shared.config import load_config
from tests.support.node_network import Network


@pytest.fixture
async def network(tmp_path):
    networks = []

    async def start(tampered=frozenset(), nodes=range(4), protocol=None):
        protocol = {"view_change_timeout_s": 0.5, **(protocol or {})}
        config = load_config(write_network(tmp_path, allow_byzantine=bool(tampered), protocol=protocol))
        net = Network(config, set(tampered))
        for node_id in nodes:
            await net.start(node_id)
        networks.append(net)
        return net

    yield start
    for net in networks:
        for node_id in list(net.runners):
            await net.stop(node_id)


async def status_of(session, net, node_id):
    async with session.get(f"http://127.0.0.1:{net.config.node(node_id).port}/status") as response:
        return await response.json()


async def idle_statuses(session, net, nodes, timeout_s=30.0):
    """Statuses of `nodes` once all executed alike and none executed more for two seconds: the
    batch that logs the last verdicts (pbft/ci/verdictlog.py) is in too."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        first = [(await status_of(session, net, i))["last_executed"] for i in nodes]
        await asyncio.sleep(2.0)
        statuses = [await status_of(session, net, i) for i in nodes]
        if [status["last_executed"] for status in statuses] == first and len(set(first)) == 1:
            return statuses
        assert asyncio.get_running_loop().time() < deadline, statuses


async def settled_statuses(session, net, nodes, done, timeout_s=5.0):
    """Statuses of `nodes` once `done` holds for all of them (nodes finish a step at slightly different times)."""
    for _ in range(int(timeout_s / 0.05)):
        statuses = [await status_of(session, net, i) for i in nodes]
        if all(done(status) for status in statuses):
            break
        await asyncio.sleep(0.05)
    return statuses


async def test_a_request_is_ordered_built_and_answered_by_a_quorum(network):
    net = await network()
    async with aiohttp.ClientSession() as session:
        agreed, replies = await net.submit(session, "master", 1, [0])
        assert agreed == {"status": "success", "exit_code": 0, "commit": "a" * 40}
        agreed, _ = await net.submit(session, "feature", 2, [0])
        assert agreed["status"] == "failure" and agreed["exit_code"] == 3
        statuses = await idle_statuses(session, net, range(4))
        # The two builds, and the batch that logged their verdicts: a checkpoint, as a batch of verdicts alone is.
        last = statuses[0]["last_executed"]
        assert last in (3, 4)
        assert len({status.pop("state_digest") for status in statuses}) == 1
        # Nothing dropped but a peer's checkpoint that came after this node's was stable already.
        assert set(statuses[1].pop("dropped")) <= {"ignore_checkpoint_stale"}, statuses[1]
        assert statuses[1] == {
            "id": 1, "view": 0, "epoch": 0, "members": [0, 1, 2, 3], "f": 1, "view_confirmed": True, "primary": 0,
            "last_executed": last,
            "low_watermark": last, "high_watermark": last + 256, "builds_running": 0, "builds_queued": 0, "unreachable": [],
            "network": {"digest": net.config.digest, "foreign": {}},
            "build": {"network": net.config.digest, "image": net.config.build.image,
                      "timeout_s": net.config.build.timeout_s, "memory_mb": net.config.build.memory_mb,
                      "cpus": net.config.build.cpus, "pids_limit": net.config.build.pids_limit},
            "pid": os.getpid(),  # the test's own: its nodes run in this process
            "links": {peer: {"connected": True, "reconnects": 0, "dropped": 0, "expired": 0} for peer in ("0", "2", "3")},
        }


async def test_a_node_that_runs_another_network_document_is_named_by_the_others(network, tmp_path):
    # Node 3's operator changed a build limit in their copy alone.
    net = await network(nodes=[0, 1, 2], protocol={"checkpoint_interval": 2})
    document = yaml.safe_load(net.config.path.read_text())
    document["build"] = {**document.get("build", {}), "timeout_s": 5}
    other_path = net.config.path.with_name("network-3.yaml")
    other_path.write_text(yaml.safe_dump(document))
    other = load_config(other_path)
    assert other.digest != net.config.digest
    await net.start(3, config=other)
    async with aiohttp.ClientSession() as session:
        for timestamp in (1, 2):  # the checkpoint interval: each node signs a CHECKPOINT at 2
            agreed, replies = await net.submit(session, "master", timestamp, [0])
        assert {reply.network for reply in replies if reply.sender != 3} == {net.config.digest}
        named = lambda s: len(s["network"]["foreign"]) == (3 if s["id"] == 3 else 1)  # noqa: E731
        statuses = await settled_statuses(session, net, range(4), named)
        async with session.get(f"http://127.0.0.1:{net.config.node(0).port}/metrics") as response:
            metrics = parse_metrics(await response.text())
    for node_id in (0, 1, 2):
        assert statuses[node_id]["network"] == {"digest": net.config.digest, "foreign": {"3": other.digest}}
        # Three matching checkpoints, 2f+1: at 2, or at the batch of those builds' verdicts if it came by now.
        assert statuses[node_id]["low_watermark"] >= 2
    assert statuses[3]["network"] == {"digest": other.digest, "foreign": {str(i): net.config.digest for i in range(3)}}
    assert statuses[3]["low_watermark"] == 0  # its checkpoint matches nobody's
    assert metrics[("pbft_peer_foreign_network", (("peer", "3"),))] == 1.0
    assert ("pbft_peer_foreign_network", (("peer", "1"),)) not in metrics


async def test_a_lying_node_does_not_change_the_verdict(network):
    net = await network(tampered={3})
    async with aiohttp.ClientSession() as session:
        agreed, replies = await net.submit(session, "master", 1, range(4))
    assert agreed["status"] == "success"
    lies = [reply for reply in replies if reply.sender == 3]
    assert all(reply.result.status == "failure" for reply in lies)


async def test_one_backup_down_still_commits(network):
    net = await network(nodes=[0, 1, 2])
    async with aiohttp.ClientSession() as session:
        agreed, replies = await net.submit(session, "feature", 7, [0])
    assert agreed == {"status": "failure", "exit_code": 3, "commit": "b" * 40}
    assert {reply.sender for reply in replies} <= {0, 1, 2}


async def test_malformed_frames_are_dropped_and_the_node_keeps_working(network):
    net = await network()
    port = net.config.node(1).port
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/peer") as ws:
            for junk in ("not json", "[]", json.dumps({"type": "prepare"}), json.dumps({"type": "nope"})):
                await ws.send_str(junk)
            await ws.send_bytes(b"binary")
        agreed, _ = await net.submit(session, "master", 3, [0])
        assert agreed["status"] == "success"
        dropped = (await status_of(session, net, 1))["dropped"]
    assert dropped["malformed_frame"] == 4 and dropped["peer_frame_binary"] == 1


async def test_each_line_of_a_peers_message_is_a_frame_of_its_own_charged_to_its_budget(network, monkeypatch):
    # No refill: how many lines a loaded machine refuses before the bucket fills again would
    # otherwise decide how many go over the budget (none, once, on two busy cores).
    monkeypatch.setattr(server, "PEER_FRAMES_PER_S", 0)
    net = await network()
    port = net.config.node(1).port
    junk = json.dumps({"type": "prepare", "view": 0, "seq": 2, "digest": "a" * 64, "sender": 2, "sig": "b" * 128})
    lines = 2 * server.PEER_FRAME_BURST
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/peer") as ws:
            await ws.send_str("\n".join(["not json", junk, "[]", junk]))
            await ws.send_str("\n".join(["x"] * lines))
            done = lambda s: sum(s["dropped"].values()) >= 4 + lines  # noqa: E731
            statuses = await settled_statuses(session, net, [1], done, timeout_s=30)
        agreed, _ = await net.submit(session, "master", 5, [0])
        assert agreed["status"] == "success"
    dropped = statuses[0]["dropped"]
    assert dropped["ignore_prepare_bad_signature"] == 2
    # Each line took a token, not each message: the burst's tokens went to the first lines.
    assert dropped["malformed_frame"] == 2 + server.PEER_FRAME_BURST - 4
    assert dropped["peer_over_budget"] == 4 + lines - server.PEER_FRAME_BURST


FLOOD_FRAMES = 12_000  # more than a peer's burst allowance


async def test_a_flooding_peer_loses_its_excess_and_cannot_stall_the_node(network):
    net = await network()
    port = net.config.node(1).port
    # For a slot this test never orders (the build is at 1, the batch that logs its verdict at 2):
    # one that prepared would skip such votes unchecked.
    junk = json.dumps({"type": "prepare", "view": 0, "seq": 5, "digest": "a" * 64, "sender": 2, "sig": "b" * 128})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/peer") as flood:
            for _ in range(FLOOD_FRAMES):
                await flood.send_str(junk)
            agreed, _ = await net.submit(session, "master", 4, [0])
            assert agreed["status"] == "success"
        done = lambda s: sum(s["dropped"].values()) >= FLOOD_FRAMES  # noqa: E731
        statuses = await settled_statuses(session, net, [1], done, timeout_s=30)
    dropped = statuses[0]["dropped"]
    # Every junk frame was refused, by signature or by budget, however fast this machine is.
    assert dropped["ignore_prepare_bad_signature"] + dropped.get("peer_over_budget", 0) == FLOOD_FRAMES


def test_the_frame_budget_refills_at_its_rate():
    now = [0.0]
    budget = FrameBudget(rate_per_s=10, burst=5, clock=lambda: now[0])
    assert [budget.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] = 0.25  # 2.5 frames' worth
    assert [budget.take() for _ in range(3)] == [True, True, False]
    now[0] = 100.0  # never more than the burst
    assert sum(budget.take() for _ in range(10)) == 5


async def test_an_oversized_frame_closes_that_connection_only(network):
    net = await network()
    port = net.config.node(1).port
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/peer") as ws:
            with contextlib.suppress(ConnectionError):  # the node hangs up before it has read it all
                await ws.send_str("x" * (MAX_FRAME_BYTES + 1))
                await ws.receive()
        agreed, _ = await net.submit(session, "master", 5, [0])
        assert agreed["status"] == "success"
        dropped = (await status_of(session, net, 1))["dropped"]
    assert dropped == {"peer_frame_too_big": 1}


async def test_when_the_primary_is_down_the_backups_change_view_and_answer(network):
    net = await network(nodes=[1, 2, 3])
    async with aiohttp.ClientSession() as session:
        # The client's retransmission to all nodes starts the backups' timers.
        agreed, replies = await net.submit(session, "master", 11, [1, 2, 3])
        assert agreed["status"] == "success"
        assert {reply.view for reply in replies} == {1}
        statuses = await settled_statuses(session, net, (1, 2, 3), lambda s: s["view"] == 1)
    assert [(s["view"], s["primary"]) for s in statuses] == [(1, 1)] * 3


async def test_a_restarted_node_resumes_from_disk_and_catches_up(network):
    net = await network()
    async with aiohttp.ClientSession() as session:
        await net.submit(session, "master", 21, [0])
        await settled_statuses(session, net, [2], lambda s: s["last_executed"] >= 1)
        await net.stop(2)
        for timestamp in (22, 23, 24):
            await net.submit(session, "feature", timestamp, [0])
        await net.start(2)
        restored = await status_of(session, net, 2)
        assert restored["last_executed"] >= 1  # what it executed before the stop survived
        statuses = await idle_statuses(session, net, range(4))
    assert statuses[0]["last_executed"] >= 4  # four builds, and the batches that logged their verdicts
    ledgers = {i: net.runners[i].app[DRIVER].store.ledger() for i in range(4)}
    assert all(ledger == ledgers[0] for ledger in ledgers.values())


async def test_every_node_certifies_the_verdict_and_shows_the_liars_vote(network):
    net = await network(tampered={3})
    async with aiohttp.ClientSession() as session:
        await net.submit(session, "master", 31, range(4))

        async def records(node_id):
            """Node's record of seq 1, or None while it has not executed it yet (404)."""
            async with session.get(f"http://127.0.0.1:{net.config.node(node_id).port}/builds/1") as response:
                if response.status == 404:
                    return None
                assert response.status == 200
                return (await response.json())["builds"][0]

        for _ in range(200):
            views = [await records(i) for i in range(4)]
            if all(view is not None and len(view["votes"]) == 4 for view in views):
                break
            await asyncio.sleep(0.05)
        assert all(view is not None for view in views), views
        for view in views:
            assert view["verdict"] == {"state": "certified", "result": {"status": "success", "exit_code": 0, "commit": "a" * 40}}
            liar = next(vote["vote"] for vote in view["votes"] if vote["node"] == 3)
            assert liar["result"]["status"] == "failure"  # visible, and outvoted
        assert views[0]["own_result"]["status"] == "success"
        assert views[3]["own_result"]["status"] == "failure"
        async with session.get(f"http://127.0.0.1:{net.config.node(0).port}/builds/99") as response:
            assert response.status == 404
        for bad in ("-1", "%C2%B2", "1" * 19):  # "²" is a digit to str.isdigit, and no number to int
            async with session.get(f"http://127.0.0.1:{net.config.node(0).port}/builds/{bad}") as response:
                assert response.status == 400, bad
        # A client finds the same record by its request's timestamp (it never learns the sequence number).
        node_0 = f"http://127.0.0.1:{net.config.node(0).port}"
        async with session.get(f"{node_0}/requests/client/31") as response:
            # ... and where this node's build is while it has none: done here, so nowhere.
            assert response.status == 200 and await response.json() == {**views[0], "build": None}
        for path, status in (("/requests/client/32", 404), ("/requests/other/31", 404), ("/requests/client/x", 400),
                             ("/requests/client/9223372036854775808", 400)):
            async with session.get(node_0 + path) as response:
                assert response.status == status, path
                assert (await response.json())["error"]


async def metrics_of(session, net, node_id) -> dict[tuple[str, tuple], float]:
    async with session.get(f"http://127.0.0.1:{net.config.node(node_id).port}/metrics") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        return parse_metrics(await response.text())


async def test_every_nodes_metrics_parse_and_count_the_builds_it_ordered(network):
    net = await network()
    async with aiohttp.ClientSession() as session:
        before = [await metrics_of(session, net, i) for i in range(4)]
        assert all(m[("pbft_requests_ordered_total", ())] == 0 for m in before)
        await net.submit(session, "master", 1, targets=[0])
        await net.submit(session, "feature", 2, targets=[0])
        await idle_statuses(session, net, range(4))
        after = []
        for i in range(4):
            for _ in range(100):  # the last peers' RESULT votes may still be on their way
                metrics = await metrics_of(session, net, i)
                if metrics.get(("pbft_verdicts_total", (("state", "certified"),))) == 2:
                    break
                await asyncio.sleep(0.05)
            after.append(metrics)
    assert after[0][("pbft_requests_received_total", ())] == 2  # the primary; backups saw PRE-PREPAREs
    # The two builds' batches, and the verdict log's: one or two (pbft/ci/verdictlog.py), each to the three backups.
    batches = after[0][("pbft_last_executed", ())]
    assert batches in (3, 4) and after[0][("pbft_messages_sent_total", (("type", "preprepare"),))] == batches * 3
    assert all(("pbft_messages_sent_total", (("type", "preprepare"),)) not in metrics for metrics in after[1:])
    for metrics in after:
        assert metrics[("pbft_requests_ordered_total", ())] == 2
        assert metrics[("pbft_last_executed", ())] == batches and metrics[("pbft_view", ())] == 0
        assert metrics[("pbft_builds_finished_total", (("status", "success"),))] == 1
        assert metrics[("pbft_builds_finished_total", (("status", "failure"),))] == 1
        assert metrics[("pbft_verdicts_total", (("state", "certified"),))] == 2
        assert metrics[("pbft_consensus_seconds_count", ())] == 2
        assert metrics[("pbft_build_seconds_count", ())] == 2
        # A save covers a turn's steps, and a slow node takes both requests' votes in fewer turns (in a CI
        # run, 4 saves for 2 builds). Causality still gives two: one before its first vote left, and one
        # before a reply, whose build ran only after that save.
        assert metrics[("pbft_store_save_seconds_count", (("synced", "true"),))] >= 2
        assert metrics[("pbft_store_save_seconds_sum", (("synced", "true"),))] > 0
        # Per build at least two other nodes' COMMITs and RESULTs, and two PREPAREs or the PRE-PREPARE and its request.
        assert metrics[("pbft_signatures_checked_total", ())] >= 3 * 2 * 2
        assert metrics[("pbft_builds_running", ())] == metrics[("pbft_builds_queued", ())] == 0
        # Each node sent its COMMIT of each batch to its three peers; its RESULTs went out in relays
        # (`pbft.relay`), at least one to each peer.
        assert metrics[("pbft_messages_sent_total", (("type", "commit"),))] >= 2 * 3
        assert metrics[("pbft_messages_sent_total", (("type", "relay"),))] >= 3
        connected = [value for (name, _), value in metrics.items() if name == "pbft_peer_connected"]
        assert connected == [1, 1, 1]


async def test_the_ledger_is_served_in_pages_that_end_before_their_byte_bound_and_skip_nothing(network, monkeypatch):
    net = await network()
    async with aiohttp.ClientSession() as session:
        for timestamp in range(41, 47):
            await net.submit(session, "master", timestamp, [0])
        last = (await idle_statuses(session, net, range(4)))[1]["last_executed"]  # and the verdict log's batches

        async def page(after):
            async with session.get(f"http://127.0.0.1:{net.config.node(1).port}/ledger?after={after}") as response:
                assert response.status == 200
                return await response.json()

        # The three other nodes' RESULTs of every build recorded: a record grows as votes come, and the
        # bounds below are measured from the records as they stay.
        async with asyncio.timeout(30):
            while True:
                whole = await page(0)
                if all(build["own_result"] is not None and len(build["votes"]) == 3 for build in whole["builds"]):
                    break
                await asyncio.sleep(0.05)
        built_at = [build["seq"] for build in whole["builds"]]  # one build a sequence number, the log's batches between
        assert whole["through"] == last and len(built_at) == 6 and built_at == sorted(set(built_at)), whole
        one_build = len(json.dumps(whole["builds"][:1]))
        # A bound that two sequence numbers' builds fit, and not three.
        monkeypatch.setattr(server, "LEDGER_PAGE_BYTES", 2 * one_build + one_build // 2)
        seen, after = [], 0
        while after < last:
            answer = await page(after)
            assert answer["through"] > after and len(answer["builds"]) <= 2, answer
            seen += [build["seq"] for build in answer["builds"]]
            after = answer["through"]
        assert seen == built_at
        # A bound smaller than one sequence number's builds still serves that one whole.
        monkeypatch.setattr(server, "LEDGER_PAGE_BYTES", 10)
        answer = await page(built_at[1])
        assert (answer["through"], [build["seq"] for build in answer["builds"]]) == (built_at[2], [built_at[2]])


async def test_a_node_checks_its_replicas_invariants_only_where_its_environment_asks(network, monkeypatch):
    """Checking every step costs a node CPU it needs for requests: off unless
    PBFT_CI_CHECK_INVARIANTS=1, which the suite sets for every node it starts (tests/conftest.py)."""
    assert os.environ["PBFT_CI_CHECK_INVARIANTS"] == "1"
    net = await network(nodes=[0])
    assert net.runners[0].app[DRIVER].replica.settings.check_invariants
    await net.stop(0)
    monkeypatch.delenv("PBFT_CI_CHECK_INVARIANTS")
    await net.start(0)
    replica = net.runners[0].app[DRIVER].replica
    assert not replica.settings.check_invariants
    # Unchecked, a broken invariant goes unnoticed by the step; checked, the step trips it.
    replica.last_executed = replica.high_watermark + 1
    replica.tick(replica.now)
    replica.settings = dataclasses.replace(replica.settings, check_invariants=True)
    with pytest.raises(AssertionError):
        replica.tick(replica.now)
