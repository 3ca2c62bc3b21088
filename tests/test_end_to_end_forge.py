"""End to end, as a forge would use pbft-ci: a signed GitHub push, its certified
verdict at the status URL, the certificate checked offline, and every node's
ledger agreeing on the verdict. Runs the README's scripts on a copy of the
example network whose repository has a webhook secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml

from shared.config import load_config
from tests.test_end_to_end import (
    E2E_MARKS,
    REPO_ROOT,
    branch_commit,
    client,
    http_json,
    network,  # noqa: F401 (a fixture: pytest passes it by name)
    node_status,
)
from tests.test_end_to_end_faults import example_copy

pytestmark = E2E_MARKS

SECRET = "e2e webhook secret"
FULL_NAME = "octo/example"


def forge_config(tmp_path: Path) -> Path:
    path = example_copy(tmp_path, allow_byzantine=False)
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    data = yaml.safe_load(path.read_text())
    data["repositories"][0].update(full_name=FULL_NAME, secret_file=str(tmp_path / "hook.secret"))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def push(base_url: str, commit: str, *, delivery: str, secret: str = SECRET) -> tuple[int, dict]:
    body = json.dumps({
        "ref": "refs/heads/master",
        "before": "0" * 40,
        "after": commit,
        "deleted": False,
        "repository": {"full_name": FULL_NAME, "clone_url": f"https://github.com/{FULL_NAME}.git"},
        "head_commit": {"id": commit, "message": "test"},
    }).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{base_url}/webHook", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_signed_github_push_gets_a_certified_verdict_every_node_agrees_on(network, tmp_path):
    config_path = forge_config(tmp_path)
    network(str(config_path))
    config = load_config(config_path)
    commit = branch_commit("master")

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        assert push(base_url, commit, delivery=str(uuid.uuid4()), secret="wrong")[0] == 401
        delivery = str(uuid.uuid4())
        code, answer = push(base_url, commit, delivery=delivery)
        assert code == 202, answer
        assert answer["status_url"].endswith(f"/builds/{answer['build_id']}")

        deadline = time.monotonic() + 60
        while True:
            code, record = http_json("GET", answer["status_url"])
            if code == 200 and record.get("state") == "accepted":
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.5)
        assert (record["result"]["status"], record["result"]["commit"]) == ("success", commit), record

        again = push(base_url, commit, delivery=delivery)[1]
        assert again["build_id"] == answer["build_id"], again  # a redelivery builds nothing new

        code, certificate = http_json("GET", f"{answer['status_url']}/certificate")
        assert code == 200, certificate

    cert_path = tmp_path / "cert.json"
    cert_path.write_text(json.dumps(certificate))
    verify = [sys.executable, "client/index.py", "verify", str(cert_path), "--config", str(config_path)]
    checked = subprocess.run(verify, cwd=REPO_ROOT, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.startswith("valid:"), checked
    tampered = cert_path.read_text().replace(commit, commit[:-1] + ("0" if commit[-1] != "0" else "1"), 1)
    cert_path.write_text(tampered)
    refused = subprocess.run(verify, cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode == 1 and "invalid" in refused.stderr, refused

    last = max(node_status(config, node.id)["last_executed"] for node in config.nodes)
    verdicts = {}
    for node in config.nodes:
        deadline = time.monotonic() + 30
        while True:
            code, ledger = http_json("GET", f"http://{node.host}:{node.port}/builds/{last}")
            build = ledger["builds"][0] if code == 200 else None
            if build and build["verdict"]["state"] == "certified":
                break
            assert time.monotonic() < deadline, ledger
            time.sleep(0.3)
        verdicts[node.id] = build["verdict"]
    assert len({json.dumps(v, sort_keys=True) for v in verdicts.values()}) == 1, verdicts
    agreed = verdicts[0]["result"]
    assert (agreed["status"], agreed["exit_code"], agreed["commit"]) == ("success", 0, commit), agreed
    assert agreed["spec"]["path"] == ".pbft-ci.yml", agreed  # what ran, which every node agreed on too
