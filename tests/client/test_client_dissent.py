"""Dissent: the nodes whose signed reply differs from the verdict, and those that sent none in time.

The client keeps the replies that arrive after a verdict, while the build takes replies
(client_deadline_s after the request, or client_settle_s after the verdict), so that a node
that only answered late is not called silent; the verdict itself never changes.
"""

import asyncio
import dataclasses
import time

import pytest

from client.keys import RECORDS_KEY
from client.records import BuildRecords
from client.tables.verdicts import replies_until
from pbft.build import Operation, Result
from pbft.messages import Reply, Request, signed
from tests.client.fake_nodes import CLIENT, F, N, honest_result, post, start_client

SETTLE_S = 0.2


@pytest.fixture
def quick_cluster(cluster):
    """The fake network with a short client_settle_s: a build takes late replies for a short while."""
    protocol = dataclasses.replace(cluster.config.protocol, client_settle_s=SETTLE_S)
    cluster.config = dataclasses.replace(cluster.config, protocol=protocol)
    return cluster


async def build_when(client, build_id: str, ready, timeout_s: float = 5.0) -> dict:
    """The build as GET /builds/<id> answers once `ready(build)` holds, checked against GET /builds."""
    async with asyncio.timeout(timeout_s):
        while True:
            build = await (await client.get(f"/builds/{build_id}")).json()
            if ready(build):
                break
            await asyncio.sleep(0.02)
    listed = next(item for item in (await (await client.get("/builds")).json())["builds"]
                  if item["build_id"] == build_id)
    assert (listed["dissent"], listed["dissent_final"]) == (build["dissent"], build["dissent_final"])
    return build


async def test_a_healthy_build_has_no_dissent_once_every_node_replied(client):
    _, verdict = await post(client, {"branch": "main"})
    build = await build_when(client, verdict["build_id"], lambda build: build["dissent_final"])
    assert build["dissent"] == [] and build["replied_by"] == list(range(N))


async def test_a_lying_node_is_named_with_what_it_said(cluster, client):
    cluster.behaviour[3] = "liar"
    _, verdict = await post(client, {"branch": "main"})
    build = await build_when(client, verdict["build_id"], lambda build: 3 in build["replied_by"])
    assert build["dissent"] == [{"node": 3, "kind": "dissented",
                                 "said": Result("success", 0, "f" * 40).to_dict()}]
    assert build["dissent_final"] is True  # every node replied: nothing more can change it
    assert build["result"]["commit"] == honest_result("main").commit


async def test_a_silent_node_is_named_once_its_time_to_reply_is_over(quick_cluster, aiohttp_client):
    quick_cluster.behaviour[3] = "silent"
    client = await start_client(aiohttp_client, quick_cluster, deadline_s=1.0)
    _, verdict = await post(client, {"branch": "main"})
    assert verdict["status"] == "success"

    so_far = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert so_far["dissent"] == [] and so_far["dissent_final"] is False  # node 3 may still answer

    build = await build_when(client, verdict["build_id"], lambda build: build["dissent_final"])
    assert build["dissent"] == [{"node": 3, "kind": "silent", "said": None}]
    assert time.time() >= int(verdict["build_id"]) / 1e6 + 1.0


async def test_a_late_reply_is_kept_and_a_late_flaky_node_dissents_without_changing_the_verdict(
        quick_cluster, aiohttp_client):
    quick_cluster.behaviour[3] = "flaky"
    quick_cluster.delay_s[3] = 0.5  # after the verdict (nodes 0, 1, 2 settle it), within the deadline
    client = await start_client(aiohttp_client, quick_cluster, deadline_s=2.0)
    _, verdict = await post(client, {"branch": "main"})
    assert verdict["status"] == "success" and 3 not in verdict["agreed_by"]

    build = await build_when(client, verdict["build_id"], lambda build: 3 in build["replied_by"])
    assert build["dissent"] == [{"node": 3, "kind": "dissented",
                                 "said": Result("failure", 1, honest_result("main").commit).to_dict()}]
    assert build["dissent_final"] is True
    assert (build["state"], build["result"]["status"], build["agreed_by"]) == \
        ("accepted", "success", verdict["agreed_by"])
    # The certificate is made of the agreeing replies only.
    certificate = await (await client.get(f"/builds/{verdict['build_id']}/certificate")).json()
    assert 3 not in [reply["sender"] for reply in certificate["replies"]]


async def test_a_reply_after_the_build_stopped_taking_replies_leaves_the_node_silent(quick_cluster, aiohttp_client):
    quick_cluster.delay_s[3] = 1.2
    client = await start_client(aiohttp_client, quick_cluster, deadline_s=0.6)
    _, verdict = await post(client, {"branch": "main"})
    build = await build_when(client, verdict["build_id"], lambda build: build["dissent_final"])
    assert build["dissent"] == [{"node": 3, "kind": "silent", "said": None}]
    await asyncio.sleep(0.9)  # node 3's reply has come by now, too late
    build = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert 3 not in build["replied_by"] and build["dissent"] == [{"node": 3, "kind": "silent", "said": None}]


async def test_a_build_without_a_verdict_has_no_dissent(client):
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), submitted_at=time.time())
    build = await (await client.get(f"/builds/{timestamp}")).json()
    assert (build["dissent"], build["dissent_final"], build["replied_by"]) == ([], False, [])


# --- The records alone ---------------------------------------------------------------------------


def reply(cluster, sender: int, timestamp: int, result: Result) -> Reply:
    return signed(Reply(0, timestamp, CLIENT, sender, result), cluster.auths[sender].sign)


def test_a_late_reply_is_kept_once_per_node_only_after_the_verdict_and_within_its_time(cluster, tmp_path):
    records = BuildRecords(tmp_path / "builds.sqlite")
    sent_s = time.time()
    timestamp = records.store.next_timestamp(int(sent_s * 1e6))
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), submitted_at=sent_s)
    good = Result("success", 0, "a" * 40)
    first = [reply(cluster, node, timestamp, good) for node in range(F + 1)]
    late, bad = reply(cluster, 2, timestamp, good), reply(cluster, 3, timestamp, Result("failure", 1, "a" * 40))

    assert not records.verdicts.add_late_reply(late, sent_s, 10.0, 1.0)  # pending: the collector takes it
    records.verdicts.accept(timestamp, good, [0, 1], 500, first)
    until = replies_until(timestamp, 500, 10.0, 1.0)
    assert until == pytest.approx(timestamp / 1e6 + 10.0)
    assert replies_until(timestamp, 30_000, 10.0, 1.0) == pytest.approx(timestamp / 1e6 + 31.0)
    assert records.verdicts.add_late_reply(late, sent_s + 1, 10.0, 1.0)
    assert not records.verdicts.add_late_reply(late, sent_s + 1, 10.0, 1.0)  # its first reply is its word
    assert not records.verdicts.add_late_reply(bad, until + 0.01, 10.0, 1.0)  # too late
    no_such_build = reply(cluster, 3, timestamp + 1, good)
    assert not records.verdicts.add_late_reply(no_such_build, sent_s, 10.0, 1.0)
    build = records.builds.get(timestamp)
    assert build["replied_by"] == [0, 1, 2] and build["dissent"] == []
    assert (build["state"], build["agreed_by"], build["result"]) == ("accepted", [0, 1], good.to_dict())

    assert records.verdicts.add_late_reply(bad, until - 1, 10.0, 1.0)
    assert records.builds.get(timestamp)["dissent"] == [{"node": 3, "kind": "dissented", "said": bad.result.to_dict()}]
    records.close()
