"""A client restarted after a clean stop or a kill follows the builds its records hold without a
verdict (client.verbs.resume): the same signed requests go to every node again, and their
verdicts and final statuses land as a webhook's would. Against fake nodes, on which a build of
a branch "hold…" runs until the test releases it (tests/client/fake_nodes.py); the real nodes
and `kill -9` are in tests/e2e/test_end_to_end_client_restart.py."""

import asyncio
import time

import client.verbs.resume
from client.records import BuildRecords, records_path
from pbft.build import Operation
from pbft.messages import Request, signed
from shared.crypto import Ed25519Authenticator
from tests.client.fake_nodes import CLIENT, MATRIX, N, honest_result, post, start_client
from tests.client.forge_deliveries import settled
from tests.client.status_api import with_statuses

SHA = "4" * 40


def left_pending(cluster, branches: list[str], submitted_s_ago: float = 0.0) -> list[int]:
    """Records as a client killed right after sending these builds leaves them: signed, recorded,
    committed, and never followed to a verdict. Returns their build ids."""
    records = BuildRecords(records_path(cluster.config.data_dir, CLIENT))
    sign = Ed25519Authenticator(cluster.client_key, {}, {}).sign
    build_ids = []
    for branch in branches:
        timestamp = records.store.next_timestamp(time.time_ns() // 1000)
        request = signed(Request(CLIENT, timestamp, Operation("example", branch)), sign)
        records.builds.add_pending(request, submitted_at=time.time() - submitted_s_ago)
        build_ids.append(timestamp)
    records.store.commit()  # and no close: a kill ends the process here
    return build_ids


async def test_builds_left_by_a_killed_client_get_their_verdicts_from_every_node(cluster, aiohttp_client):
    build_ids = left_pending(cluster, ["main", "fail/x"], submitted_s_ago=60)
    assert not any(cluster.received.values())  # sent by the client that died, and lost with it

    http = await start_client(aiohttp_client, cluster)
    first, second = [await settled(http, str(build_id)) for build_id in build_ids]
    assert (first["state"], first["result"]["status"]) == ("accepted", "success"), first
    assert (second["state"], second["result"]["status"]) == ("accepted", "failure"), second
    # Sent to every node at once, not to a primary the restarted client cannot know yet.
    assert all(set(build_ids) <= set(cluster.received[node]) for node in range(N)), cluster.received
    assert first["elapsed_ms"] >= 60_000  # counted from the submission, not from the restart


async def test_a_build_pending_at_a_clean_stop_ends_with_its_verdict_and_final_status_after_a_restart(
    cluster, status_server, aiohttp_client
):
    with_statuses(cluster, status_server)
    http = await start_client(aiohttp_client, cluster)
    waiting = asyncio.create_task(post(http, {"branch": "hold/x", "commit": SHA}))
    async with asyncio.timeout(5):
        while not (listed := (await (await http.get("/builds")).json())["builds"]) or listed[0]["progress"] != "queued":
            await asyncio.sleep(0.02)
    build_id = listed[0]["build_id"]
    await status_server.wait_for_calls(1)
    await http.close()  # the client stops; its build still runs on the nodes
    await asyncio.gather(waiting, return_exceptions=True)  # its caller is let go
    assert [call.body["state"] for call in status_server.calls_for(SHA)] == ["pending"]

    again = await start_client(aiohttp_client, cluster)
    # Resumed and asked again, every node says where the build is: the client waits on.
    async with asyncio.timeout(5):
        while (await (await again.get(f"/builds/{build_id}")).json())["progress"] != "queued":
            await asyncio.sleep(0.02)
    cluster.release(int(build_id))
    record = await settled(again, build_id)
    assert (record["state"], record["result"]["status"]) == ("accepted", "success"), record
    await status_server.wait_for_calls(2)
    assert [call.body["state"] for call in status_server.calls_for(SHA)] == ["pending", "success"]

    assert len(cluster.committed) == 1  # built once


async def test_past_the_bound_the_oldest_builds_without_a_verdict_end_timeout(cluster, aiohttp_client, monkeypatch):
    monkeypatch.setattr(client.verbs.resume, "MAX_RESUMED", 2)
    oldest, *newest = left_pending(cluster, ["main", "main", "main"])

    http = await start_client(aiohttp_client, cluster)
    assert [(await settled(http, str(build_id)))["state"] for build_id in newest] == ["accepted"] * 2
    record = await (await http.get(f"/builds/{oldest}")).json()
    assert record["state"] == "timeout", record
    assert all(oldest not in cluster.received[node] for node in range(N))


async def test_a_matrix_whose_combinations_were_pending_gets_its_own_status_once_they_end(
    cluster, status_server, aiohttp_client
):
    with_statuses(cluster, status_server)
    commit = honest_result("matrix/ci").commit
    records = BuildRecords(records_path(cluster.config.data_dir, CLIENT))
    sign = Ed25519Authenticator(cluster.client_key, {}, {}).sign
    parent = signed(Request(CLIENT, records.store.next_timestamp(time.time_ns() // 1000),
                            Operation("example", "matrix/ci")), sign)
    records.builds.add_pending(parent, submitted_at=time.time())
    records.verdicts.accept(parent.timestamp, honest_result("matrix/ci"), [0, 1], 5, [])
    combinations = []
    for combination in MATRIX:
        request = signed(Request(CLIENT, records.store.next_timestamp(time.time_ns() // 1000),
                                 Operation("example", "matrix/ci", commit, combination=combination)), sign)
        records.builds.add_pending(request, submitted_at=time.time())
        records.builds.link_matrix(request.timestamp, matrix_of=parent.timestamp)
        combinations.append(request.timestamp)
    # The first combination had its verdict before the client was killed; two had not.
    records.verdicts.accept(combinations[0], honest_result("matrix/ci", combination=MATRIX[0]), [0, 1], 5, [])
    records.store.commit()

    http = await start_client(aiohttp_client, cluster)
    assert [(await settled(http, str(build_id)))["result"]["status"] for build_id in combinations[1:]] == [
        "success", "failure"]
    async with asyncio.timeout(5):
        while not (expansion := [call.body for call in status_server.calls if call.body["context"] == "pbft-ci"]):
            await asyncio.sleep(0.02)
    assert [(body["state"], body["description"]) for body in expansion] == [
        ("failure", "matrix of 3 builds: 1 failure, 2 success")]
    assert expansion[0]["target_url"].endswith(f"/builds/{parent.timestamp}")
