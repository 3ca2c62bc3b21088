"""End to end: a real network builds the example project, and its verdicts check out as in-toto.

The README's commands start the example network (with the owner's layout
named in its YAML) and the client; a webhook builds master and feature in
Docker. The client's DSSE envelope is checked with securesystemslib at
threshold f+1 (and refused with f signatures), with `client/index.py verify`,
and from a node's own ledger; its in-toto bundle with the stock
`in-toto-verify`, which refuses it after one byte of a link or of the layout
changes, or with only f links left.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import yaml
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError

from client.attestation import sslib_keys
from client.intoto import LAYOUT_FILE
from harness.scripts import client
from pbft.attestation import PREDICATE_TYPE, STATEMENT_FILE
from shared.config import load_config
from tests.e2e.example_network import E2E_MARKS, EXAMPLE_CONFIG, REPO_ROOT, branch_commit, webhook

pytestmark = E2E_MARKS
IN_TOTO_VERIFY = Path(sys.executable).parent / "in-toto-verify"


def attested_config(tmp_path: Path) -> Path:
    """The example network's YAML, every path absolute, naming the owner's layout; and the ceremony."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    here = EXAMPLE_CONFIG.parent
    for key in ("keys_dir", "data_dir", "log_dir"):
        data[key] = str((here / data[key]).resolve())
    runners = [runner for client in data["clients"] for runner in client.get("runners", [])]
    owners = data.get("owners", {}).get("keys", [])
    for entry in data["nodes"] + data["clients"] + runners + owners:
        if "public_key_file" in entry:
            entry["public_key_file"] = str((here / entry["public_key_file"]).resolve())
    for repository in data["repositories"]:
        repository["url"] = str((here / repository["url"]).resolve())
    data["in_toto_layout"] = str(tmp_path / "network.layout")
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def owner(*args) -> None:
    done = subprocess.run([sys.executable, "scripts/owner.py", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return response.read()


def in_toto_verify(folder: Path, owner_public: Path) -> int:
    done = subprocess.run([str(IN_TOTO_VERIFY), "--layout", LAYOUT_FILE, "--verification-keys", str(owner_public)],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    return done.returncode


def flipped(path: Path, before: bytes):
    """A context: `path` with the byte after `before` changed (its lowest bit), restored afterwards."""
    class Flip:
        def __enter__(self):
            self.original = path.read_bytes()
            changed = bytearray(self.original)
            changed[self.original.index(before) + len(before)] ^= 1
            path.write_bytes(bytes(changed))

        def __exit__(self, *exc):
            path.write_bytes(self.original)

    return Flip()


def test_a_real_build_has_an_envelope_and_links_that_stock_tools_accept(network, tmp_path):
    config_path = attested_config(tmp_path)
    owner("generate", "--key", tmp_path / "owner.key")
    owner("layout", "--config", config_path, "--key", tmp_path / "owner.key", "--out", tmp_path / "network.layout")
    network(str(config_path))
    config = load_config(config_path)
    needed = config.f + 1
    keys = [key for _, key in sslib_keys(config).values()]

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        master = webhook(base_url, config, "master")
        feature = webhook(base_url, config, "feature")

        # The DSSE envelope, with securesystemslib: f+1 node signatures verify, f do not.
        raw = get(f"{base_url}/builds/{master['build_id']}/attestation")
        envelope = json.loads(raw)
        Envelope.from_dict(json.loads(raw)).verify(keys, needed)
        thin = {**envelope, "signatures": envelope["signatures"][: needed - 1]}
        try:
            Envelope.from_dict(thin).verify(keys, needed)
            raise AssertionError("f signatures verified")
        except VerificationError:
            pass
        statement = json.loads(base64.b64decode(envelope["payload"]))
        assert statement["predicateType"] == PREDICATE_TYPE
        assert statement["subject"][0]["digest"] == {"gitCommit": branch_commit("master")}
        assert statement["predicate"]["result"] == "pass"
        names = [item["name"] for item in statement["predicate"]["configuration"]]
        assert names == ["repository", ".pbft-ci.yml", "image"], statement

        # The README's verify command, with public keys only.
        (tmp_path / "master.dsse.json").write_bytes(raw)
        (tmp_path / "feature.dsse.json").write_bytes(get(f"{base_url}/builds/{feature['build_id']}/attestation"))
        for name, result, commit in (("master", "pass", master["commit"]), ("feature", "fail", feature["commit"])):
            done = subprocess.run(
                [sys.executable, "client/index.py", "verify", str(tmp_path / f"{name}.dsse.json"), "--config",
                 str(config_path), "--commit", commit, "--result", result],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0 and done.stdout.startswith("valid: attestation"), done.stdout + done.stderr

        # Any node, from its own ledger (it holds every node's vote, each with its signature).
        for node in config.nodes:
            from_ledger = json.loads(get(
                f"http://{node.host}:{node.port}/requests/{config.clients[0].name}/{master['build_id']}/attestation"
            ))
            assert from_ledger["payload"] == envelope["payload"]
            assert len(Envelope.from_dict(from_ledger).verify(keys, needed)) >= needed

        # The in-toto bundle, with the stock in-toto-verify.
        folder = tmp_path / "bundle"
        with tarfile.open(fileobj=io.BytesIO(get(f"{base_url}/builds/{master['build_id']}/in-toto"))) as tar:
            tar.extractall(folder, filter="data")
    owner_public = tmp_path / "owner.pub"
    links = sorted(folder.glob("build.*.link"))
    assert len(links) == needed and (folder / STATEMENT_FILE).read_bytes() == base64.b64decode(envelope["payload"])
    assert in_toto_verify(folder, owner_public) == 0
    with flipped(links[0], b'"gitCommit":"'):
        assert in_toto_verify(folder, owner_public) == 1
    with flipped(folder / LAYOUT_FILE, b'"threshold":'):
        assert in_toto_verify(folder, owner_public) == 1
    assert in_toto_verify(folder, owner_public) == 0
    links[0].unlink()
    assert in_toto_verify(folder, owner_public) == 1
