"""The client over real loopback sockets, against fake nodes with real signatures.

The fake nodes stand in for a PBFT network: each serves `/client` over a
WebSocket, checks the client's signatures, and once the "primary" has the
request, every non-silent node sends its signed reply on the connections
on which the client said HELLO over that connection's challenge (the wire
protocol's rule). A backup that receives a request while the primary is
silent stands for a completed view change: the next non-silent node becomes
primary and the replies carry the new view. Nodes can be honest, lying, forging or silent.
"""

import asyncio
import dataclasses
import json

import pytest

from client.keys import SERVICE_KEY
from client.records import BuildRecords, records_path
from harness.network import parse_metrics
from pbft.messages import CurrentView, decode, encode, signed
from tests.client.fake_nodes import CLIENT, F, N, RETRANSMIT_S, honest_result, post, start_client


async def test_verdict_agreed_despite_a_lying_node(cluster, client):
    cluster.behaviour[3] = "liar"
    cluster.delay_s.update({0: 0.05, 1: 0.05, 2: 0.05})  # the lie arrives first

    status, verdict = await post(client, {"branch": "main"})

    assert status == 200
    assert verdict["status"] == "success" and verdict["exit_code"] == 0
    assert verdict["commit"] == honest_result("main").commit
    assert len(verdict["agreed_by"]) == F + 1 and 3 not in verdict["agreed_by"]
    assert "reason" not in verdict
    assert int(verdict["build_id"]) in cluster.committed


async def test_builds_keep_the_signed_request_and_the_certificate(cluster, client):
    _, verdict = await post(client, {"branch": "release/1.0", "repository": "other"})

    listing = await (await client.get("/builds")).json()
    assert [build["build_id"] for build in listing["builds"]] == [verdict["build_id"]]
    summary = listing["builds"][0]
    assert summary["state"] == "accepted" and summary["branch"] == "release/1.0" and summary["repository"] == "other"
    assert summary["agreed_by"] == verdict["agreed_by"]

    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    request = decode(record["request"])
    assert cluster.verifier.verify_client(CLIENT, request.payload(), request.sig)
    assert str(request.timestamp) == verdict["build_id"]
    replies = [decode(reply) for reply in record["replies"]]
    certificate = [reply for reply in replies if reply.sender in verdict["agreed_by"]]
    assert len(certificate) == F + 1
    for reply in certificate:
        assert cluster.verifier.verify_node(reply.sender, reply.payload(), reply.sig)
        assert reply.result.commit == verdict["commit"]


async def test_error_verdict_carries_a_reason(client):
    status, verdict = await post(client, {"branch": "missing"})
    assert status == 200
    assert verdict["status"] == "error" and verdict["exit_code"] is None
    assert verdict["reason"] == "branch missing not found"


async def test_a_failing_pipelines_answer_names_the_step_that_failed(client):
    status, verdict = await post(client, {"branch": "fail-pipeline"})
    assert status == 200
    assert (verdict["status"], verdict["exit_code"]) == ("failure", 3)
    # From the agreed steps, not from the reason text of whichever node replied first.
    assert verdict["reason"] == "step 'test' failed with exit code 3"


async def test_forged_replies_are_dropped(cluster, client, caplog):
    cluster.behaviour[3] = "forger"
    cluster.delay_s.update({0: 0.05, 1: 0.05, 2: 0.05})

    status, verdict = await post(client, {"branch": "main"})

    assert status == 200 and verdict["commit"] == honest_result("main").commit
    assert "ignore_reply_bad_signature" in caplog.text


async def test_504_when_only_f_nodes_answer(cluster, aiohttp_client):
    for node_id in (1, 2, 3):
        cluster.behaviour[node_id] = "silent"
    client = await start_client(aiohttp_client, cluster, deadline_s=1.0)

    response = await client.post("/webHook", json={"branch": "main"})

    assert response.status == 504
    answer = await response.json()
    assert answer["error"] == "no quorum before the deadline"
    assert [reply["sender"] for reply in answer["replies"]] == [0]
    record = await (await client.get(f"/builds/{answer['build_id']}")).json()
    assert record["state"] == "timeout" and record["result"] is None and record["elapsed_ms"] >= 1000
    # Silent nodes were sent the request again every retransmission interval.
    assert cluster.received[1].count(int(answer["build_id"])) >= 2


async def test_one_liar_and_one_honest_node_never_make_a_verdict(cluster, aiohttp_client):
    cluster.behaviour.update({1: "silent", 2: "silent", 3: "liar"})
    client = await start_client(aiohttp_client, cluster, deadline_s=0.8)

    response = await client.post("/webHook", json={"branch": "main"})

    assert response.status == 504
    assert sorted(reply["sender"] for reply in (await response.json())["replies"]) == [0, 3]


async def test_shutdown_answers_waiting_webhooks_at_once(cluster, client):
    for node_id in range(N):
        cluster.behaviour[node_id] = "silent"
    waiting = asyncio.create_task(client.post("/webHook", json={"branch": "main"}))
    async with asyncio.timeout(5):
        while not cluster.received[0]:
            await asyncio.sleep(0.01)
    build_id = cluster.received[0][0]

    async with asyncio.timeout(2):
        await client.server.close()
        response = await waiting

    assert response.status == 503
    answer = await response.json()
    assert answer["build_id"] == str(build_id)
    assert answer["error"] == "client shutting down: the build is followed again when the client restarts"
    records = BuildRecords(records_path(cluster.config.data_dir, CLIENT))
    assert records.builds.get(build_id)["state"] == "pending"  # for the restarted client to resume
    records.close()


async def test_retransmits_to_all_nodes_when_the_primary_is_silent(cluster, client):
    # A first build makes every connection one the nodes can reply on.
    status, _ = await post(client, {"branch": "warm-up"})
    assert status == 200
    cluster.behaviour[0] = "silent"

    status, verdict = await post(client, {"branch": "main"})

    assert status == 200 and set(verdict["agreed_by"]) <= {1, 2, 3}
    assert verdict["elapsed_ms"] >= RETRANSMIT_S * 1000
    build_id = int(verdict["build_id"])
    # Backups got the request only when it was retransmitted to all nodes, the primary among them:
    # once each, after the primary's first copy (in order, not timed, so that load cannot fail it).
    to_primary_s = cluster.first_arrival_s[(0, build_id)]
    assert cluster.received[0].count(build_id) >= 2
    for backup in (1, 2, 3):
        assert cluster.received[backup].count(build_id) == 1
        assert cluster.first_arrival_s[(backup, build_id)] > to_primary_s
    assert cluster.view == 1

    # The replies carried view 1, so the next request goes straight to node 1.
    status, verdict = await post(client, {"branch": "next"})
    assert status == 200
    # Sent once, to node 1 alone: no retransmission to all nodes was needed (counted, not timed,
    # so that a loaded machine cannot fail it).
    build_id = int(verdict["build_id"])
    assert [cluster.received[node].count(build_id) for node in range(4)] == [0, 1, 0, 0]


async def test_links_reconnect_and_say_hello_again(cluster, client):
    for sockets in cluster.registered.values():
        for ws in list(sockets):
            await ws.close()
    async with asyncio.timeout(5):
        while not all(cluster.registered.values()):
            await asyncio.sleep(0.01)

    status, verdict = await post(client, {"branch": "main"})

    # The reconnected links carried the request and the replies: the primary got it once, no
    # retransmission was needed.
    assert status == 200
    build_id = int(verdict["build_id"])
    assert [cluster.received[node].count(build_id) for node in range(4)] == [1, 0, 0, 0]


@pytest.fixture
def patient_cluster(cluster):
    """The fake network with a client that retransmits only after 30 s: a request sent to all
    nodes then says the client chose to, never that a loaded machine made it wait 0.3 s."""
    protocol = dataclasses.replace(cluster.config.protocol, client_retransmit_s=30.0)
    cluster.config = dataclasses.replace(cluster.config, protocol=protocol)
    return cluster


async def test_concurrent_webhooks_each_get_their_own_verdict(patient_cluster, client):
    cluster = patient_cluster
    branches = [f"feature/{i}" for i in range(6)] + ["fail/one", "missing"]

    answers = await asyncio.gather(*(post(client, {"branch": branch}) for branch in branches))

    assert all(status == 200 for status, _ in answers)
    for branch, (_, verdict) in zip(branches, answers):
        expected = honest_result(branch)
        assert (verdict["status"], verdict["exit_code"], verdict["commit"]) == (
            expected.status, expected.exit_code, expected.commit,
        )
    build_ids = [int(verdict["build_id"]) for _, verdict in answers]
    assert len(set(build_ids)) == len(branches)
    # Each request went to the primary only, and none needed retransmitting.
    assert sorted(cluster.received[0]) == sorted(build_ids)
    assert cluster.received[1] == cluster.received[2] == cluster.received[3] == []

    listing = await (await client.get("/builds", params={"limit": "3"})).json()
    assert [int(build["build_id"]) for build in listing["builds"]] == sorted(build_ids, reverse=True)[:3]


async def test_a_client_that_just_started_sends_to_the_primary_of_the_view_f_plus_1_nodes_say(
    cluster, aiohttp_client
):
    """The network moved to view 2 before this client ever had a reply: the nodes say their
    view on its HELLO (CURRENT-VIEW), so its first request goes to node 2, the primary, and a
    dropped link of node 2 is the one it reacts to."""
    cluster.view = 2
    client = await start_client(aiohttp_client, cluster)
    service = client.server.app[SERVICE_KEY]
    async with asyncio.timeout(5):
        while service.core.view != 2:
            await asyncio.sleep(0.01)
    assert service.core.primary == 2
    status, verdict = await post(client, {"branch": "main"})
    assert status == 200
    assert cluster.received[2] == [int(verdict["build_id"])]
    assert cluster.received[0] == cluster.received[1] == cluster.received[3] == []


async def test_one_node_alone_cannot_steer_a_new_client_to_a_primary_of_its_choosing(cluster, aiohttp_client):
    cluster.behaviour[3] = "liar"
    client = await start_client(aiohttp_client, cluster)
    service = client.server.app[SERVICE_KEY]
    forged = signed(CurrentView(7, CLIENT, 3), cluster.auths[3].sign)
    service.core.on_frame(3, json.dumps(encode(forged)))
    assert service.core.view == 0 and service.core.primary == 0  # f+1 must say a view; one said 7


@pytest.mark.parametrize(
    "method, path, kwargs, status",
    [
        ("POST", "/webHook", {"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", "/webHook", {"json": {"branch": "--upload-pack=evil"}}, 400),
        ("POST", "/webHook", {"json": {"branch": "main", "repository": "https://x/y.git"}}, 400),
        ("POST", "/webHook", {"data": b" " * 70_000}, 413),
        ("POST", "/webHook", {"data": '{"branch": "main"}', "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", "/webHook", {}, 405),
        ("GET", "/builds", {"params": {"limit": "0"}}, 400),
        ("GET", "/builds", {"params": {"limit": "many"}}, 400),
        ("GET", "/builds", {"params": {"limit": "9" * 5000}}, 400),
        ("GET", "/builds/abc", {}, 400),
        ("GET", "/builds/99999999999999999999", {}, 400),
        ("GET", "/builds/123", {}, 404),
        ("GET", "/nowhere", {}, 404),
    ],
)
async def test_bad_input_gets_a_4xx_with_a_reason(cluster, client, method, path, kwargs, status):
    response = await client.request(method, path, **kwargs)
    assert response.status == status
    assert (await response.json())["error"]
    assert all(not received for received in cluster.received.values())


async def test_oversized_chunked_body_is_refused_without_a_length(client):
    async def chunks():
        for _ in range(20):
            yield b" " * 4096

    response = await client.post("/webHook", data=chunks())
    assert response.status == 413


async def test_curl_style_form_content_type_is_accepted(client):
    # What `curl -d '{"branch":"main"}' URL` sends.
    response = await client.post(
        "/webHook", data='{"branch":"main"}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200


async def client_metrics(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(await response.text())


async def test_artifacts_are_agreed_by_2f_plus_1_nodes_or_the_build_is_divergent(cluster, client):
    cluster.behaviour[3] = "liar"
    status, verdict = await post(client, {"branch": "artifacts"})
    assert status == 200 and verdict["status"] == "success"
    assert verdict["artifacts"] == honest_result("artifacts").artifacts
    assert verdict["agreed_by"] == [0, 1, 2], "a result with artifacts takes 2f+1 nodes"

    cluster.behaviour[3] = "honest"
    status, verdict = await post(client, {"branch": "artifacts-random"})
    assert status == 200 and verdict["status"] == "divergent" and verdict["agreed_by"] == []
    assert "artifacts" not in verdict, "no node's digest is given as the build's"
    digests = {str(node): honest_result("artifacts-random", node).artifacts for node in range(N)}
    assert verdict["artifacts_by_node"] == digests and len(set(digests.values())) == N
    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert record["state"] == "divergent" and record["result"]["artifacts_by_node"] == digests
    certificate = await client.get(f"/builds/{verdict['build_id']}/certificate")
    assert certificate.status == 409
    metrics = await client_metrics(client)
    assert metrics[("pbft_client_verdicts_total", (("status", "divergent"),))] == 1


async def test_metrics_parse_and_count_webhooks_and_verdicts(cluster, client):
    before = await client_metrics(client)
    assert before[("pbft_client_builds_submitted_total", ())] == 0

    assert (await post(client, {"branch": "main"}))[0] == 200
    assert (await post(client, {"branch": "-x"}))[0] == 400

    after = await client_metrics(client)
    assert after[("pbft_client_builds_submitted_total", ())] == 1
    assert after[("pbft_client_webhooks_total", (("code", "200"),))] == 1
    assert after[("pbft_client_webhooks_total", (("code", "400"),))] == 1
    assert after[("pbft_client_verdicts_total", (("status", "success"),))] == 1
    assert after[("pbft_client_verdict_seconds_count", ())] == 1
    assert after[("pbft_client_builds_waiting", ())] == 0
