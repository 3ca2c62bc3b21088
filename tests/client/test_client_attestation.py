"""The client's attestation routes against the fake nodes of tests/test_client_app.py.

GET /builds/{id}/attestation serves the DSSE envelope of the f+1 agreeing
replies, GET /builds/{id}/in-toto a tar of the owner's layout, their links
and the statement; both behind the reader's token, and both answer a 4xx
with a reason, never a 500, for builds that have none.
"""

import dataclasses
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from client.attestation import check_envelope
from client.intoto import LAYOUT_FILE
from pbft.attestation import STATEMENT_FILE
from tests.client.client_token import BEARER, with_client_settings
from tests.client.fake_nodes import honest_result, post, start_client
from tests.client.signed_network import IN_TOTO_VERIFY
from tests.client.client_token import TOKEN

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def sign_layout(cluster, tmp_path):
    """The owner's ceremony for the fake network; the YAML's in_toto_layout names the result."""
    key, layout = tmp_path / "owner.key", tmp_path / "network.layout"
    for args in (["generate", "--key", key],
                 ["layout", "--config", cluster.config.path, "--key", key, "--out", layout]):
        done = subprocess.run([sys.executable, "scripts/owner.py", *map(str, args)], cwd=REPOSITORY_ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    cluster.config = dataclasses.replace(cluster.config, in_toto_layout=layout)
    return key.with_suffix(".pub")


async def test_an_accepted_verdict_has_an_envelope_that_verifies_at_f_plus_1(cluster, aiohttp_client):
    cluster.behaviour[3] = "liar"
    client = await start_client(aiohttp_client, cluster)
    _, verdict = await post(client, {"branch": "main"})

    response = await client.get(f"/builds/{verdict['build_id']}/attestation")

    assert response.status == 200 and response.content_type == "application/json"
    summary = check_envelope(await response.json(), cluster.config, commit=verdict["commit"], result="pass")
    assert list(summary.signers) == verdict["agreed_by"] and 3 not in summary.signers


async def test_a_failing_build_attests_fail(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    _, verdict = await post(client, {"branch": "fail-fast"})
    envelope = await (await client.get(f"/builds/{verdict['build_id']}/attestation")).json()
    summary = check_envelope(envelope, cluster.config, result="fail")
    assert (summary.status, summary.exit_code) == ("failure", 1)


async def test_the_in_toto_bundle_passes_stock_in_toto_verify(cluster, aiohttp_client, tmp_path):
    owner_public = sign_layout(cluster, tmp_path)
    client = await start_client(aiohttp_client, cluster)
    _, verdict = await post(client, {"branch": "main"})

    response = await client.get(f"/builds/{verdict['build_id']}/in-toto")

    assert response.status == 200 and response.content_type == "application/x-tar"
    folder = tmp_path / "bundle"
    with tarfile.open(fileobj=io.BytesIO(await response.read())) as tar:
        tar.extractall(folder, filter="data")
    assert len(list(folder.glob("build.*.link"))) == 2
    assert {LAYOUT_FILE, STATEMENT_FILE} <= {path.name for path in folder.iterdir()}
    done = subprocess.run([str(IN_TOTO_VERIFY), "--layout", LAYOUT_FILE, "--verification-keys", str(owner_public)],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("branch, route, reason", [
    ("missing", "attestation", "names no commit: there is nothing to attest"),
    ("main", "in-toto", "no in-toto layout: the network YAML sets no in_toto_layout; its owner signs one with"
                        " scripts/owner.py layout (docs/attestations.md)"),
])
async def test_builds_without_one_get_409_with_the_reason(cluster, aiohttp_client, branch, route, reason):
    client = await start_client(aiohttp_client, cluster)
    _, verdict = await post(client, {"branch": branch})
    response = await client.get(f"/builds/{verdict['build_id']}/{route}")
    assert response.status == 409
    assert reason in (await response.json())["error"]


@pytest.mark.parametrize("layout, reason", [
    ("absent", "in-toto layout unreadable: No such file or directory"),
    ("fifo", "in-toto layout unreadable: is a FIFO, not a regular file"),  # never waited on
    ("oversized", "in-toto layout unreadable: is larger than 1 MiB, the most this file may hold"),
])
async def test_an_unreadable_layout_is_a_409_not_a_500(cluster, aiohttp_client, tmp_path, layout, reason):
    path = tmp_path / "network.layout"
    if layout == "fifo":
        os.mkfifo(path)
    elif layout == "oversized":
        path.write_bytes(b"{" + b" " * (1024 * 1024) + b"}")
    cluster.config = dataclasses.replace(cluster.config, in_toto_layout=path)
    client = await start_client(aiohttp_client, cluster)
    _, verdict = await post(client, {"branch": "main"})
    response = await client.get(f"/builds/{verdict['build_id']}/in-toto")
    assert (response.status, (await response.json())["error"]) == (409, reason)


@pytest.mark.parametrize("path, status", [
    ("/builds/12/attestation", 404),
    ("/builds/x/attestation", 400),
    ("/builds/-1/in-toto", 400),
    ("/builds/99999999999999999999999/in-toto", 400),
])
async def test_bad_build_ids_get_a_4xx_with_a_reason(cluster, aiohttp_client, path, status):
    client = await start_client(aiohttp_client, cluster)
    response = await client.get(path)
    assert response.status == status and (await response.json())["error"]


async def test_both_routes_need_the_readers_token(cluster, aiohttp_client, tmp_path):
    sign_layout(cluster, tmp_path)
    client = await start_client(aiohttp_client, with_client_settings(cluster, token=TOKEN))
    response = await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    build_id = (await response.json())["build_id"]
    for route in ("attestation", "in-toto"):
        assert (await client.get(f"/builds/{build_id}/{route}")).status == 401
        assert (await client.get(f"/builds/{build_id}/{route}", headers=BEARER)).status == 200


async def test_a_reply_with_a_bad_attestation_signature_does_not_count(cluster, aiohttp_client):
    cluster.behaviour[0] = "bad-attestation"
    client = await start_client(aiohttp_client, cluster)
    status, verdict = await post(client, {"branch": "main"})
    assert status == 200 and 0 not in verdict["agreed_by"]
    assert verdict["commit"] == honest_result("main").commit
