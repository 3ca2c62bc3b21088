"""End to end, as a forge would use pbft-ci: a signed GitHub push, its certified
verdict at the status URL, the certificate checked offline, and every node's
ledger agreeing on the verdict. Runs the README's scripts on a copy of the
example network whose repository has a webhook secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import (
    OWN_NETWORK_MARKS, EXAMPLE_REPO, REPO_ROOT, branch_commit, node_status, record_on, settled, wait_logged,
)
from tests.e2e.github_deliveries import forge_config, pull_request, push

pytestmark = OWN_NETWORK_MARKS


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

        record = settled(answer["status_url"])
        assert record["state"] == "accepted", record
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

    verdicts = {}
    for node in config.nodes:
        deadline = time.monotonic() + 30
        while (build := record_on(config, node.id, answer["build_id"]))["verdict"]["state"] != "certified":
            assert time.monotonic() < deadline, build
            time.sleep(0.3)
        verdicts[node.id] = build["verdict"]
    assert len({json.dumps(v, sort_keys=True) for v in verdicts.values()}) == 1, verdicts
    agreed = verdicts[0]["result"]
    assert (agreed["status"], agreed["exit_code"], agreed["commit"]) == ("success", 0, commit), agreed
    assert agreed["spec"]["path"] == ".pbft-ci.yml", agreed  # what ran, which every node agreed on too


def git(repository: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repository), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_pull_requests_build_the_forges_ref_and_a_fork_waits_for_its_approval(network, tmp_path):
    # A forge's repository: pull requests' heads live only under refs/pull/<n>/head.
    forge = tmp_path / "forge.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(EXAMPLE_REPO), str(forge)], check=True)
    heads = {
        number: git(forge, "commit-tree", "master^{tree}", "-p", "master", "-m", f"pull request {number}")
        for number in (5, 6)
    }
    for number, head in heads.items():
        git(forge, "update-ref", f"refs/pull/{number}/head", head)
    assert all(not git(forge, "branch", "--contains", head) for head in heads.values())
    config_path = forge_config(tmp_path)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"][0]["url"] = str(forge)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        code, answer = pull_request(base_url, 5, heads[5])
        assert code == 202 and "build_id" in answer, answer
        record = settled(answer["status_url"])
        assert (record["state"], record["result"]["status"], record["result"]["commit"]) == (
            "accepted", "success", heads[5]), record
        assert record["pull_request"] == 5, record

        wait_logged(config, 1)  # the batch that logs its verdict is in: the network is idle
        executed = [node_status(config, node.id)["last_executed"] for node in config.nodes]
        code, held = pull_request(base_url, 6, heads[6], source="someone/example-fork")
        assert code == 202 and held["awaiting_approval"] is True, held
        code, waiting = http_json("GET", f"{base_url}/approvals")
        assert [(a["approval_id"], a["pull_request"], a["commit"]) for a in waiting["approvals"]] == [
            (held["approval_id"], 6, heads[6])], waiting
        # Held means held: after the first build, nothing more reached a node's ledger.
        assert [node_status(config, node.id)["last_executed"] for node in config.nodes] == executed

        code, approved = http_json("POST", f"{base_url}/approvals/{held['approval_id']}/approve")
        assert code == 202, approved
        record = settled(approved["status_url"])
        assert (record["state"], record["result"]["status"], record["result"]["commit"]) == (
            "accepted", "success", heads[6]), record

        # A pin the pull request has moved past (its ref now names another head) is refused on every node.
        code, stale = pull_request(base_url, 5, heads[6])
        record = settled(stale["status_url"])
        assert (record["state"], record["result"]["status"]) == ("accepted", "error"), record
        assert "is not the head of refs/pull/5/head" in record["result"]["reason"], record

    # Every node's ledger holds the pull request's ref in the signed request it ordered.
    for node in config.nodes:
        ordered = record_on(config, node.id, stale["build_id"])
        assert ordered["operation"]["pull_ref"] == "refs/pull/5/head", ordered
