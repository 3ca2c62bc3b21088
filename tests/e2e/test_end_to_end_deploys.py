"""End to end: an `after:` deploy to an environment that requires approval, on four real nodes, the
client and the action runner (runner/index.py). It waits; a person without the environment's role
is refused, naming the role; once someone with it approves, the approval is ordered like a cancel,
the runner checks its certificate and runs the deploy once, with who approved in its environment,
its signed report and the audit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.actionreport import ActionReport
from shared.config import load_config
from shared.crypto import parse_public_key
from tests.e2e.example_network import OWN_NETWORK_MARKS, REPO_ROOT
from tests.e2e.runner_helpers import build, forge_commit, forge_network, run_runner

pytestmark = OWN_NETWORK_MARKS

SPEC = """commands:
  - echo built
after:
  - name: deploy
    environment: production
    commands:
      - echo "deploying to $CI_PIPELINE_DEPLOY_TARGET, approved by $PBFT_CI_APPROVED_BY"
  - name: notify
    commands: [echo notified]
"""


def token(config_path: Path, owner: str, role: str) -> dict:
    """A personal token of `owner` with `role`, made with the client's own command; its header."""
    made = subprocess.run([sys.executable, "client/index.py", "token", "create", "--config", str(config_path),
                           "--owner", owner, "--role", role], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (secret,) = [word for word in made.stdout.split() if word.startswith("pbft_")]
    return {"Authorization": f"Bearer {secret}"}


def settled(base_url: str, build_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = http_json("GET", f"{base_url}/builds/{build_id}")[1]
        if record["state"] != "pending":
            return record
        time.sleep(0.2)
    raise AssertionError(f"build {build_id} has no verdict after 120 s")


def test_a_deploy_waits_for_an_approval_by_the_environments_role_and_runs_once(scratch, network):
    head = forge_commit(scratch / "forge", {".pbft-ci.yml": SPEC}, "deploys")
    config_path = forge_network(scratch, scratch / "forge",
                                environments=[{"name": "production", "approvers": "approve"}])
    network(str(config_path))
    config = load_config(config_path)

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        runner_path = scratch / "runner.yaml"
        runner_path.write_text(yaml.safe_dump({
            "network": str(config_path), "name": "runner", "client_url": base_url,
            "data_dir": str(scratch / "runner"), "network_mode": "none",
        }))
        run_runner(runner_path)  # its first start: what came before is history
        passed = build(base_url, "master", head)
        assert passed["status"] == "success", passed
        build_id = passed["build_id"]

        first = run_runner(runner_path)
        assert f"build {build_id}: ran notify success; deploy waits for an approval to deploy to production" in first
        (deploy,) = [action for action in http_json("GET", f"{base_url}/builds/{build_id}")[1]["actions"]
                     if action["name"] == "deploy"]
        assert (deploy["state"], deploy["environment"], deploy["approvals"]) == ("waiting", "production", [])
        assert "deploys to production" not in run_runner(runner_path)  # it waits, unapproved

        url = f"{base_url}/builds/{build_id}/actions/deploy/approve"
        code, refused = http_json("POST", url, b"", token(config_path, "bob", "operate"))
        assert (code, refused["error"]) == (403, "approving a deploy to production: this needs the role approve on "
                                                 "repository deployed: token bob has operate there")
        code, started = http_json("POST", url, b"", token(config_path, "alice", "approve"))
        assert code == 202, started
        approval = settled(base_url, started["approval_id"])
        assert (approval["state"], approval["verdict"]) == ("accepted", "success"), approval

        second = run_runner(runner_path)
        assert f"build {build_id}: action deploy deploys to production, approved by token alice" in second, second
        third = run_runner(runner_path)
        assert "deploys to production" not in third, third  # once

        log = (scratch / "runner" / "logs" / f"{build_id}-deploy.log").read_text()
        assert "deploying to production, approved by token alice" in log, log
        record = http_json("GET", f"{base_url}/builds/{build_id}")[1]
        (deploy,) = [action for action in record["actions"] if action["name"] == "deploy"]
        assert (deploy["state"], deploy["environment"], deploy["approver"]) == (
            "success", "production", "token alice"), deploy
        assert [each["approval_id"] for each in deploy["approvals"]] == [started["approval_id"]]
        report = ActionReport(int(build_id), "deploy", "success", 0, deploy["reason"], "runner", deploy["stamp_us"],
                              "production", "token alice")
        runner_key = config.client("client").runner("runner").public_key
        assert report.verifies(parse_public_key(runner_key), deploy["sig"])  # who approved, signed by the runner
        (entry,) = http_json("GET", f"{base_url}/audit?action=approve")[1]["actions"]
        assert (entry["actor"], entry["target"], entry["deploy"]) == (
            {"kind": "token", "name": "alice"}, build_id, {"action": "deploy", "environment": "production"})
