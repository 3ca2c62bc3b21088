"""A node's build artifacts over HTTP: signed requests of configured clients only, recorded paths only,
and bytes only while they still have their recorded digest.

Integration layer: the node's artifact routes on a real aiohttp server, real
Ed25519 signatures from a real client key; the artifacts are stored the way
the executor stores them (builder/workspace/artifactstore.py).
"""

import asyncio
import base64
import hashlib
import os
import time

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from builder.workspace.artifactstore import ArtifactStore
from builder.workspace.testreports import ReportStore
from harness.network import write_network
from node.artifactroute import ARTIFACT_SETTINGS, DIGEST_HEADER, add_artifact_routes
from node.server import make_app
from shared.config import load_config
from shared.crypto import Ed25519Authenticator, generate_private_key, load_private_key, parse_public_key, sign_bytes
from shared.logrequest import NodeRequest, signed_log_headers
from shared.testrecord import verify_statement
from shared.transfergate import CHUNK_BYTES

NODE_ID = 1
CLIENT = "client"  # the one client tests.network.write_network configures
REPOSITORY = "example"  # and its one repository
BUILD = f"{CLIENT}-42"
FILES = {"dist/app-1.0.whl": b"wheel bytes", "report.txt": b"all good\n"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def config(tmp_path):
    return load_config(write_network(tmp_path))


@pytest.fixture
def client_auth(config):
    return Ed25519Authenticator(load_private_key(config.client_key_path(CLIENT)), {}, {})


@pytest.fixture
def build_dir(config):
    """The artifacts of build client-42, stored on node 1 as its executor stores them."""
    store = ArtifactStore(config.data_dir / f"node-{NODE_ID}", keep=5)
    incoming = store.incoming(BUILD)
    for path, data in FILES.items():
        (incoming / path).parent.mkdir(parents=True, exist_ok=True)
        (incoming / path).write_bytes(data)
    store.store(
        repository=REPOSITORY, build_id=BUILD, commit="c0ffee" * 6 + "abcd", incoming=incoming,
        digests={path: sha(data) for path, data in FILES.items()},
    )
    return config.data_dir / f"node-{NODE_ID}" / "artifacts" / REPOSITORY / BUILD


@pytest.fixture
async def node(aiohttp_client, config):
    app = web.Application()
    node_key = load_private_key(config.node_key_path(NODE_ID))
    add_artifact_routes(app, config, NODE_ID, lambda data: sign_bytes(node_key, data))
    return await aiohttp_client(app)


def headers(auth, path: str, *, client: str = CLIENT, for_node: int = NODE_ID, now_s: float | None = None) -> dict:
    return signed_log_headers(auth.sign, client, NodeRequest(path, for_node), time.time() if now_s is None else now_s)


async def get(node, auth, path: str, **kwargs):
    return await node.get(path, headers=headers(auth, path, **kwargs))


async def get_raw(node, auth, raw_path: str):
    """GET `raw_path` exactly as written, signed as written: no dot segment or escape is resolved on the way."""
    url = URL(f"http://{node.host}:{node.port}{raw_path}", encoded=True)
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers(auth, raw_path)) as response:
            return response.status, await response.read()


async def test_a_signed_request_gets_the_bytes_with_their_digest(node, build_dir, client_auth):
    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/dist/app-1.0.whl")

    assert response.status == 200
    assert await response.read() == b"wheel bytes"
    assert response.headers[DIGEST_HEADER] == sha(b"wheel bytes")
    raw = hashlib.sha256(b"wheel bytes").digest()
    assert response.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(raw).decode()}:"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="app-1.0.whl"'
    assert response.headers["X-Pbft-Node"] == str(NODE_ID)


async def test_a_captured_download_cannot_be_replayed(node, build_dir, client_auth):
    path = f"/artifacts/{CLIENT}/42/dist/app-1.0.whl"
    sent = headers(client_auth, path)

    assert (await node.get(path, headers=sent)).status == 200
    replayed = await node.get(path, headers=sent)

    assert replayed.status == 401 and "already used" in (await replayed.json())["error"]


async def test_the_manifest_lists_every_artifact_with_its_digest_and_size(node, build_dir, client_auth):
    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42")

    assert response.status == 200
    manifest = await response.json()
    assert manifest["node"] == NODE_ID
    assert (manifest["build"], manifest["repository"]) == (BUILD, REPOSITORY)
    assert manifest["artifacts"] == {path: sha(data) for path, data in sorted(FILES.items())}
    assert manifest["sizes"] == {path: len(data) for path, data in sorted(FILES.items())}


@pytest.mark.parametrize(
    "path",
    [
        "dist/other.whl",
        "dist",
        "manifest.json",
        "files/report.txt",
        "dist/%2E%2E/report.txt",
        "dist/../report.txt",
        "../../../keys/node-1.key",
        "%2E%2E/%2E%2E/%2E%2E/keys/node-1.key",
        "dist%2F..%2F..%2Fmanifest.json",
        "./report.txt",
        "report.txt/",
    ],
)
async def test_only_a_path_the_manifest_lists_is_served(node, build_dir, client_auth, path):
    status, body = await get_raw(node, client_auth, f"/artifacts/{CLIENT}/42/{path}")

    assert status == 404, body


async def test_a_file_beside_the_artifacts_is_not_served(node, build_dir, client_auth):
    (build_dir / "files" / "planted.txt").write_bytes(b"not an artifact")

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/planted.txt")

    assert response.status == 404


async def test_unknown_builds_are_404(node, build_dir, client_auth):
    for path in (f"/artifacts/{CLIENT}/43", f"/artifacts/{CLIENT}/43/report.txt"):
        response = await get(node, client_auth, path)
        assert response.status == 404, path
        assert "no artifacts of build client-43" in (await response.json())["error"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"client": "stranger"}, "unknown client"),
        ({"skew_s": -120}, "time"),
        ({"for_node": NODE_ID + 1}, "signature"),  # signed for another node: cannot be replayed here
    ],
)
async def test_refused_with_401_and_a_reason(node, build_dir, client_auth, change, reason):
    if "skew_s" in change:
        change = {"now_s": time.time() + change["skew_s"]}

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt", **change)

    assert response.status == 401
    assert reason in (await response.json())["error"]


async def test_an_unsigned_request_is_refused(node, build_dir):
    for path in (f"/artifacts/{CLIENT}/42/report.txt", f"/artifacts/{CLIENT}/42"):
        response = await node.get(path)
        assert response.status == 401, path
        assert "X-Pbft-Signature" in (await response.json())["error"]


async def test_a_signature_for_one_artifact_opens_no_other(node, build_dir, client_auth):
    signed_for = headers(client_auth, f"/artifacts/{CLIENT}/42/report.txt")

    response = await node.get(f"/artifacts/{CLIENT}/42/dist/app-1.0.whl", headers=signed_for)

    assert response.status == 401 and "signature" in (await response.json())["error"]


async def test_a_key_that_is_not_the_clients_is_refused(node, build_dir):
    impostor = Ed25519Authenticator(generate_private_key(), {}, {})

    response = await get(node, impostor, f"/artifacts/{CLIENT}/42/report.txt")

    assert response.status == 401


async def test_bytes_changed_on_the_nodes_disk_are_never_served(node, build_dir, client_auth):
    (build_dir / "files" / "report.txt").write_bytes(b"all bad\n")

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")

    assert response.status == 500
    assert "no longer has its recorded digest" in (await response.json())["error"]
    assert b"all bad" not in await response.read()


async def test_an_artifact_replaced_by_a_link_is_not_followed(node, build_dir, client_auth, config):
    target = build_dir / "files" / "report.txt"
    target.unlink()
    os.symlink(config.node_key_path(NODE_ID), target)

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")

    assert response.status == 410


async def test_the_node_application_serves_artifacts(aiohttp_client, config, build_dir, client_auth):
    async def no_build(order):
        raise AssertionError("no build is ordered in this test")

    node = await aiohttp_client(make_app(config, NODE_ID, build=no_build))

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")

    assert response.status == 200 and await response.read() == b"all good\n"


async def test_a_file_of_many_chunks_is_served_whole_with_its_length(node, build_dir, client_auth):
    data = os.urandom(3 * CHUNK_BYTES + 11)
    store = ArtifactStore(build_dir.parents[2], keep=5)
    incoming = store.incoming("client-43")
    (incoming / "big.bin").write_bytes(data)
    store.store(repository=REPOSITORY, build_id="client-43", commit="c0ffee" * 6 + "abcd", incoming=incoming,
                digests={"big.bin": sha(data)})

    response = await get(node, client_auth, f"/artifacts/{CLIENT}/43/big.bin")

    assert response.status == 200 and response.content_length == len(data)
    assert await response.read() == data


async def test_downloads_beyond_a_clients_share_are_refused_with_retry_after(node, build_dir, client_auth):
    gate = node.app[ARTIFACT_SETTINGS].downloads
    with gate.admit(CLIENT), gate.admit(CLIENT):
        gate.per_caller = 2
        response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")
        assert response.status == 429 and response.headers["Retry-After"] == "5"
        assert "2 artifact downloads at once per caller" in (await response.json())["error"]
        gate.per_caller, gate.total = 10, 2
        response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")
        assert response.status == 503 and f"on node {NODE_ID}" in (await response.json())["error"]
    response = await get(node, client_auth, f"/artifacts/{CLIENT}/42/report.txt")
    assert response.status == 200 and await response.read() == b"all good\n"
    async with asyncio.timeout(5):  # the handler returns just after the last byte went out
        while gate.running:
            await asyncio.sleep(0.01)


async def test_a_builds_test_outcomes_are_served_to_a_signed_request_only_signed_by_the_node(
        node, config, client_auth):
    ReportStore(config.data_dir / f"node-{NODE_ID}", keep=5).store({
        "build": BUILD, "repository": REPOSITORY, "commit": "c" * 40, "tests": {"a::b": "failed"},
        "summary": {"passed": 0, "failed": 1, "error": 0, "skipped": 0}, "digest": "sha256:00", "problems": [],
    })
    response = await get(node, client_auth, "/tests/client/42")
    assert response.status == 200
    served = await response.json()
    signature = served.pop("signature")
    said = {"node": NODE_ID, "build": BUILD, "repository": REPOSITORY, "commit": "c" * 40, "digest": "sha256:00"}
    assert served == {
        "node": NODE_ID, "build": BUILD, "repository": REPOSITORY, "commit": "c" * 40, "tests": {"a::b": "failed"},
        "summary": {"passed": 0, "failed": 1, "error": 0, "skipped": 0}, "digest": "sha256:00", "problems": [],
        "statement": said}
    node_key = parse_public_key(config.node(NODE_ID).public_key)
    assert verify_statement(node_key, said, signature)
    # The signature holds the node to this build's digest and to nothing else.
    assert not verify_statement(node_key, {**said, "digest": "sha256:01"}, signature)
    assert not verify_statement(node_key, {**said, "build": f"{CLIENT}-43"}, signature)
    other = parse_public_key(config.node(0).public_key)
    assert not verify_statement(other, said, signature)
    unsigned = await node.get("/tests/client/42")
    assert unsigned.status == 401
    missing = await get(node, client_auth, "/tests/client/43")
    assert (missing.status, (await missing.json())["error"]) == (404, "no test outcomes of build client-43 on node 1")
