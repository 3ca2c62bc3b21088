"""The client's artifact routes, against fake nodes that check its signatures for real.

The fake nodes are test_client_app's FakeCluster plus the two artifact
routes of a node (node/artifactroute.py): each verifies the client's signed
request with `shared.logrequest` over the raw path, as a node does, and then
serves what the test gave that node: a manifest, files, or one of the ways
a node can fail (no answer in time, a 401, a stream without end). Build
records are written straight into the client's store, so each test picks a
build's state, its agreed artifact digest and the nodes that agreed.
"""

import asyncio
import json
import time

import aiohttp
import pytest
from yarl import URL

from client import artifacts
from client.keys import RECORDS_KEY
from client.transfers import TRANSFERS
from pbft.attestation import manifest_digest
from pbft.build import Operation, Result
from pbft.messages import Request
from tests.client.artifact_nodes import (
    AGREED, ARTIFACTS_MB, DIGESTS, FILES, MIB, FakeArtifactNodes, manifest_body, sha256,
)
from tests.client.fake_nodes import CLIENT, FakeCluster, N, serve_fake_nodes, start_client

@pytest.fixture
async def network(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    nodes = FakeArtifactNodes(cluster)
    nodes.servers = await serve_fake_nodes(
        aiohttp_server, cluster, nodes.add_routes, tmp_path, build={"artifacts_mb": ARTIFACTS_MB}
    )
    return nodes


@pytest.fixture
async def client(network, aiohttp_client):
    return await start_client(aiohttp_client, network.cluster)


def add_build(client, state: str, result: Result | None = None, agreed_by: tuple[int, ...] = ()) -> str:
    """A build record in the client's store, as the service leaves one in `state`; its id."""
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), time.time())
    if state == "accepted":
        records.verdicts.accept(timestamp, result, list(agreed_by), 12, [])
    elif state == "timeout":
        records.verdicts.time_out(timestamp, 10_000, [])
    records.store.commit()
    return str(timestamp)


def with_artifacts(digest: str = AGREED) -> Result:
    return Result("success", 0, "a" * 40, artifacts=digest)


def manifest_path(build_id: str) -> str:
    return f"/artifacts/{CLIENT}/{build_id}"


async def test_manifest_comes_from_the_first_agreeing_node(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(2, 0))

    response = await client.get(f"/builds/{build_id}/artifacts")

    assert response.status == 200
    assert await response.json() == {
        "build_id": build_id, "manifest_digest": AGREED, "artifacts": DIGESTS, "from_node": 2,
    }
    # Node 2 checked the client's signature before answering; nobody else was asked.
    assert network.asked == [(2, manifest_path(build_id))]


async def test_file_is_served_with_its_agreed_digest(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(1, 3))
    path = "dist/app-1.0-py3-none-any.whl"

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == 200
    assert await response.read() == FILES[path]
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="app-1.0-py3-none-any.whl"'
    assert response.headers["X-Pbft-Artifact-Digest"] == DIGESTS[path]
    assert response.headers["X-Pbft-Node"] == "1"
    assert network.asked == [(1, manifest_path(build_id)), (1, f"{manifest_path(build_id)}/{path}")]


async def test_tampered_bytes_are_refused_and_the_next_node_serves_the_agreed_ones(network, client, caplog):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(3, 1))
    path = "reports/junit.xml"
    network.files[3][path] = b"<testsuite tests='3' failures='0'/>"  # node 3 lies about the file, not the manifest

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == 200
    assert await response.read() == FILES[path]
    assert response.headers["X-Pbft-Node"] == "1"
    assert [node for node, asked in network.asked if asked.endswith(path)] == [3, 1]
    assert f"node 3 skipped: served {len(network.files[3][path])} bytes whose digest" in caplog.text


async def test_a_manifest_without_the_agreed_digest_is_skipped(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(0, 2))
    network.manifests[0] = manifest_body(0, {**DIGESTS, "dist/extra.bin": sha256(b"planted")})

    response = await client.get(f"/builds/{build_id}/artifacts")

    assert response.status == 200
    answer = await response.json()
    assert answer["from_node"] == 2 and answer["artifacts"] == DIGESTS
    assert [node for node, _ in network.asked] == [0, 2]


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"{not json", "not JSON"),
        (json.dumps({"artifacts": list(DIGESTS)}).encode(), "without an `artifacts` mapping"),
        (json.dumps({"artifacts": {"../etc/passwd": sha256(b"x")}}).encode(), "malformed path or digest"),
        (json.dumps({"artifacts": {"/etc/passwd": sha256(b"x")}}).encode(), "malformed path or digest"),
        (json.dumps({"artifacts": {"a": sha256(b"x").upper()}}).encode(), "malformed path or digest"),
        (json.dumps({"artifacts": {"a": 7}}).encode(), "malformed path or digest"),
        (json.dumps({"artifacts": DIGESTS, "padding": "x" * (2 * MIB)}).encode(), "sent more than"),
    ],
)
async def test_a_malformed_manifest_is_skipped(network, client, caplog, body, problem):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(0, 1))
    network.manifests[0] = body

    response = await client.get(f"/builds/{build_id}/artifacts")

    assert response.status == 200 and (await response.json())["from_node"] == 1
    assert "node 0 skipped: " in caplog.text and problem in caplog.text


async def test_no_node_with_the_agreed_manifest_is_502_with_what_each_did(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(1, 2))
    network.manifests[0] = None
    network.manifests[1] = manifest_body(1, {"dist/other.whl": sha256(b"other")})
    network.behaviour[2] = "refusing"
    await network.servers[3].close()

    response = await client.get(f"/builds/{build_id}/artifacts")

    assert response.status == 502
    error = (await response.json())["error"]
    assert error.startswith(f"no node served build {build_id}'s manifest with the agreed {AGREED[:19]}")
    # In the order the nodes were asked: the agreeing ones first.
    assert error.index("node 1 served a manifest whose digest") < error.index("node 2 refused") \
        < error.index("node 0 does not have it (404)") < error.index("node 3 unreachable")


async def test_no_node_with_the_agreed_bytes_is_502_with_what_each_did(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(0, 1))
    path = "dist/app-1.0-py3-none-any.whl"
    for node_id in range(N):
        network.files[node_id][path] = b"evil %d" % node_id
    del network.files[3][path]

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == 502
    error = (await response.json())["error"]
    assert f"build {build_id}'s '{path}' with the agreed {DIGESTS[path][:19]}" in error
    for node_id in range(3):
        assert f"node {node_id} served 6 bytes whose digest is {sha256(b'evil %d' % node_id)[:19]}" in error
    assert "node 3 does not have it (404)" in error


async def test_a_slow_node_is_skipped(network, client, monkeypatch):
    monkeypatch.setattr(artifacts, "MANIFEST_TIMEOUT", aiohttp.ClientTimeout(total=0.3))
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(2, 3))
    network.behaviour[2] = "slow"

    response = await client.get(f"/builds/{build_id}/artifacts")

    assert response.status == 200 and (await response.json())["from_node"] == 3


async def test_a_node_sending_more_than_the_cap_is_cut_off(network, client, caplog):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(1, 0))
    path = "reports/junit.xml"
    network.behaviour[1] = "endless"

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == 200 and response.headers["X-Pbft-Node"] == "0"
    assert await response.read() == FILES[path]
    cap = ARTIFACTS_MB * MIB + artifacts.FILE_SLACK_BYTES
    assert f"node 1 skipped: sent more than {cap} bytes" in caplog.text
    async with asyncio.timeout(5):
        await network.endless_closed[1].wait()
    # What the node got written before it noticed: the cap and what the sockets buffered, not more.
    assert network.endless_sent[1] < cap + 16 * MIB


@pytest.mark.parametrize("state", ["pending", "timeout"])
async def test_a_build_without_a_verdict_is_409(network, client, state):
    build_id = add_build(client, state)

    for url in (f"/builds/{build_id}/artifacts", f"/builds/{build_id}/artifacts/reports/junit.xml"):
        response = await client.get(url)
        assert response.status == 409
        assert (await response.json())["error"].startswith(f"build {build_id} is {state}, not accepted")
    assert network.asked == []


@pytest.mark.parametrize(
    "result, reason",
    [
        (Result("success", 0, "a" * 40), "build {id} declared no artifacts"),
        (Result("failure", 2, "a" * 40), "build {id} ended failure: only a success has artifacts"),
    ],
)
async def test_a_verdict_without_artifacts_is_404(network, client, result, reason):
    build_id = add_build(client, "accepted", result, agreed_by=(0, 1))

    for url in (f"/builds/{build_id}/artifacts", f"/builds/{build_id}/artifacts/reports/junit.xml"):
        response = await client.get(url)
        assert response.status == 404
        assert (await response.json())["error"] == reason.format(id=build_id)
    assert network.asked == []


async def test_a_path_outside_the_agreed_files_is_404_and_no_file_is_asked_for(network, client):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(0, 1))
    network.files[0]["dist/planted.sh"] = b"#!/bin/sh"

    response = await client.get(f"/builds/{build_id}/artifacts/dist/planted.sh")

    assert response.status == 404
    assert (await response.json())["error"] == f"build {build_id} has no artifact 'dist/planted.sh'"
    assert network.asked == [(0, manifest_path(build_id))]


@pytest.mark.parametrize(
    "raw_path",
    ["dist/%2E%2E/reports/junit.xml", "%2E%2E", "/etc/passwd", "dist//app.whl", "%2E/reports/junit.xml",
     "dist/app%20name.whl", "a" * 1025],
)
async def test_an_invalid_path_is_400_before_any_node_is_asked(network, client, raw_path):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(0, 1))

    response = await client.get(URL(f"/builds/{build_id}/artifacts/{raw_path}", encoded=True))

    assert response.status == 400
    assert (await response.json())["error"].startswith("an artifact path is relative")
    assert network.asked == []


@pytest.mark.parametrize(
    "url, status",
    [("/builds/123/artifacts", 404), ("/builds/123/artifacts/a.txt", 404), ("/builds/abc/artifacts", 400)],
)
async def test_an_unknown_build_is_refused_as_other_build_routes_refuse_it(network, client, url, status):
    response = await client.get(url)

    assert response.status == status
    assert (await response.json())["error"]
    assert network.asked == []


async def test_a_busy_node_is_skipped_and_the_next_one_serves_the_file(network, client, caplog):
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(2, 0))
    network.behaviour[2] = "busy"
    path = "reports/junit.xml"

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == 200 and await response.read() == FILES[path]
    assert response.headers["X-Pbft-Node"] == "0"
    assert "node 2 skipped: is busy (503)" in caplog.text


async def file_requests(network, count: int) -> None:
    """Until `count` requests for files reached the nodes."""
    async with asyncio.timeout(5):
        while len([asked for _, asked in network.asked if asked.count("/") > 3]) < count:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("per_caller, total, refused, words", [
    (2, 10, 429, "2 artifact downloads at once per caller"),
    (10, 2, 503, "2 artifact downloads at once on this client"),
])
async def test_downloads_beyond_the_bounds_are_refused_with_retry_after(network, client, per_caller, total,
                                                                       refused, words):
    gate = client.app[TRANSFERS].downloads
    gate.per_caller, gate.total = per_caller, total
    build_id = add_build(client, "accepted", with_artifacts(), agreed_by=(1, 2))
    network.behaviour[1] = "held"
    path = "dist/app-1.0-py3-none-any.whl"
    held = [asyncio.create_task(client.get(f"/builds/{build_id}/artifacts/{path}")) for _ in range(2)]
    await file_requests(network, 2)

    response = await client.get(f"/builds/{build_id}/artifacts/{path}")

    assert response.status == refused and response.headers["Retry-After"] == "5"
    assert words in (await response.json())["error"]
    network.release.set()
    for answer in await asyncio.gather(*held):
        assert answer.status == 200 and await answer.read() == FILES[path]
    async with asyncio.timeout(5):  # the handlers return just after the last byte went out
        while gate.running:
            await asyncio.sleep(0.01)
    assert not gate.open
    response = await client.get(f"/builds/{build_id}/artifacts/{path}")
    assert response.status == 200, "the places are free again"
    spool = network.cluster.config.data_dir / f"client-{CLIENT}" / "spool"
    assert list(spool.iterdir()) == [], "a checked download leaves nothing on disk"


async def test_a_file_is_checked_and_served_in_chunks_larger_than_one(network, client):
    """More than one spool chunk: what is hashed, spooled and read back is the whole file, in order."""
    data = bytes(range(256)) * (3 * artifacts.CHUNK_BYTES // 256 + 7)
    files = {"dist/big.bin": sha256(data)}
    for node in range(N):
        network.manifests[node] = manifest_body(node, files)
        network.files[node]["dist/big.bin"] = data
    build_id = add_build(client, "accepted", with_artifacts(manifest_digest(files)), agreed_by=(0, 1))

    response = await client.get(f"/builds/{build_id}/artifacts/dist/big.bin")

    assert response.status == 200 and response.content_length == len(data)
    assert await response.read() == data
