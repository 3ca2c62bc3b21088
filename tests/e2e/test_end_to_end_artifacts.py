"""End to end: four real nodes agree on the bytes a build makes, or say that they differ.

The README's commands start the network and the client; the one repository
is a git repository of the test's own with two branches. `reproducible`
writes the same archive on every node (its time from SOURCE_DATE_EPOCH);
`random` writes 32 random bytes. The first gets one agreed digest from 2f+1
nodes, its archive comes back through the client with that digest, and its
SLSA provenance verifies with securesystemslib at f+1 (not f) and with
`client/index.py verify`, which refuses a changed byte of the archive. The
second ends `divergent`, with every node's digest in the verdict, the build
record and the nodes' own ledgers, none of them as the build's, and nothing
to download or attest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError

from client.attestation import sslib_keys
from harness.scripts import client
from harness.verdicts import http_json
from pbft.provenance import PROVENANCE_TYPE
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, REPO_ROOT, example_copy

pytestmark = OWN_NETWORK_MARKS

DIGEST_CHARS = len("sha256:") + 64

REPRODUCIBLE_SPEC = """\
commands:
  - mkdir -p dist && echo "built at $SOURCE_DATE_EPOCH" > dist/stamp.txt
  - touch -d "@$SOURCE_DATE_EPOCH" dist/stamp.txt
  - tar -cf dist/app.tar dist/stamp.txt
artifacts:
  - dist/*.tar
"""
RANDOM_SPEC = """\
commands:
  - mkdir -p dist && head -c 32 /dev/urandom > dist/noise.bin
artifacts:
  - dist/noise.bin
"""


def artifact_repository(path) -> None:
    """A git repository with a branch `reproducible` and a branch `random`."""
    path.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)

    git("init", "-q", "-b", "reproducible")
    (path / ".pbft-ci.yml").write_text(REPRODUCIBLE_SPEC)
    git("add", ".")
    git("commit", "-q", "-m", "a reproducible artifact")
    git("checkout", "-q", "-b", "random")
    (path / ".pbft-ci.yml").write_text(RANDOM_SPEC)
    git("commit", "-q", "-am", "a random artifact")


def settled_votes(base_url: str, build_id: str, config) -> dict:
    """GET /builds/{id}/nodes once every node voted and every ledger decided the build."""
    deadline = time.monotonic() + 60
    while True:
        code, view = http_json("GET", f"{base_url}/builds/{build_id}/nodes")
        assert code == 200, view
        voted = {vote["node"] for vote in view["votes"]}
        decided = all(node["verdict"] and node["verdict"]["state"] != "pending" for node in view["nodes"])
        if voted == {node.id for node in config.nodes} and decided:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def verify(config_path, envelope_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "client/index.py", "verify", str(envelope_path), "--config", str(config_path), *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )


def check_the_agreed_archive_and_its_provenance(base_url, build, config, config_path, tmp_path) -> None:
    code, body, _ = get(f"{base_url}/builds/{build['build_id']}/artifacts")
    assert code == 200, body
    manifest = json.loads(body)
    assert manifest["manifest_digest"] == build["artifacts"] and list(manifest["artifacts"]) == ["dist/app.tar"]
    code, archive, headers = get(f"{base_url}/builds/{build['build_id']}/artifacts/dist/app.tar")
    assert code == 200 and b"built at " in archive
    assert "sha256:" + hashlib.sha256(archive).hexdigest() == manifest["artifacts"]["dist/app.tar"]
    assert int(headers["X-Pbft-Node"]) in {node.id for node in config.nodes}

    code, body, _ = get(f"{base_url}/builds/{build['build_id']}/provenance")
    assert code == 200, body
    envelope = Envelope.from_dict(json.loads(body))
    keys = [key for _, key in sslib_keys(config).values()]
    assert len(envelope.verify(keys, config.f + 1)) == config.f + 1
    statement = json.loads(envelope.payload)
    assert statement["predicateType"] == PROVENANCE_TYPE
    assert statement["subject"] == [{"name": "dist/app.tar", "digest": {"sha256": hashlib.sha256(archive).hexdigest()}}]
    assert statement["predicate"]["runDetails"]["builder"]["id"] == config.builder_id
    fewer = json.loads(body)
    fewer["signatures"] = fewer["signatures"][: config.f]
    with pytest.raises(VerificationError):
        Envelope.from_dict(fewer).verify(keys, config.f + 1)

    (tmp_path / "provenance.json").write_bytes(body)
    (tmp_path / "app.tar").write_bytes(archive)
    done = verify(config_path, tmp_path / "provenance.json", "--artifact", tmp_path / "app.tar", "--commit", build["commit"])
    assert done.returncode == 0 and done.stdout.startswith("valid: provenance of 1 artifacts"), done
    changed = bytearray(archive)
    changed[archive.index(b"built at ")] ^= 1
    (tmp_path / "changed.tar").write_bytes(bytes(changed))
    done = verify(config_path, tmp_path / "provenance.json", "--artifact", tmp_path / "changed.tar")
    assert done.returncode == 1 and "none of the provenance's artifacts" in done.stderr, done
    # A signature in the envelope no longer over its payload: the envelope is refused.
    data = json.loads(body)
    payload = bytearray(base64.b64decode(data["payload"]))
    payload[payload.index(b"dist/app.tar")] = ord("D")
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    (tmp_path / "changed.provenance.json").write_text(json.dumps(data))
    assert verify(config_path, tmp_path / "changed.provenance.json").returncode == 1


def test_a_reproducible_artifact_is_agreed_and_a_random_one_is_divergent(network, tmp_path):
    artifact_repository(tmp_path / "artifacts")
    repositories = [{"name": "artifacts", "url": str(tmp_path / "artifacts")}]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(config_path))
    config = load_config(config_path)
    quorum = 2 * config.f + 1

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        code, agreed = http_json("POST", f"{base_url}/webHook", {"branch": "reproducible"})
        assert code == 200 and (agreed["status"], agreed["exit_code"]) == ("success", 0), agreed
        assert len(agreed["artifacts"]) == DIGEST_CHARS and len(agreed["agreed_by"]) >= quorum, agreed
        view = settled_votes(base_url, agreed["build_id"], config)
        assert {result["artifacts"] for vote in view["votes"] for result in vote["results"]} == {agreed["artifacts"]}
        assert all(node["verdict"]["state"] == "certified" for node in view["nodes"]), view
        check_the_agreed_archive_and_its_provenance(base_url, agreed, config, config_path, tmp_path)

        code, divergent = http_json("POST", f"{base_url}/webHook", {"branch": "random"})
        assert code == 200 and divergent["status"] == "divergent", divergent
        assert divergent["agreed_by"] == [] and "artifacts" not in divergent, divergent
        by_node = divergent["artifacts_by_node"]
        assert set(by_node) == {str(node.id) for node in config.nodes}, "every node's digest is in the verdict"
        assert len(set(by_node.values())) == config.n, by_node
        code, record = http_json("GET", f"{base_url}/builds/{divergent['build_id']}")
        assert code == 200 and record["state"] == "divergent", record
        assert record["result"]["artifacts_by_node"] == by_node, record
        # Each node's own ledger holds every node's signed vote, and no verdict.
        view = settled_votes(base_url, divergent["build_id"], config)
        assert {str(vote["node"]): vote["results"][0]["artifacts"] for vote in view["votes"]} == by_node
        assert all(node["verdict"]["state"] == "disputed" for node in view["nodes"]), view
        for route in ("artifacts", "artifacts/dist/noise.bin", "provenance"):
            code, body, _ = get(f"{base_url}/builds/{divergent['build_id']}/{route}")
            assert code == 409, (route, code, body)
