"""End to end: the client stopped in the middle of three builds, by `kill -9` and by a clean
stop, and started again. Each time the three records end with the verdicts the nodes agreed
on, and the forge gets each commit's final status; nothing stays `pending`."""

from __future__ import annotations

import os
import signal
import time


from harness.real_project import branches_repository
from harness.scripts import client, client_process
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.forge_deliveries import GITHUB_SECRET
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, github_push, log_offsets, new_log_text
from tests.support.status_server import StatusServer

pytestmark = OWN_NETWORK_MARKS

STATUS_TOKEN = "forge-status-token"
FULL_NAME = "Codertocat/Hello-World"
# Long enough that the client is stopped while every build still runs or waits.
SPEC = "commands:\n  - echo build started\n  - sleep 5\n  - test ! -f fail\n"


def records(base_url: str, build_ids: list[str], timeout_s: float = 180) -> dict[str, dict]:
    """The records of `build_ids` once none is pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {build_id: http_json("GET", f"{base_url}/builds/{build_id}")[1] for build_id in build_ids}
        if all(record.get("state") not in (None, "pending") for record in found.values()):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.5)


def test_a_client_stopped_mid_build_finishes_its_builds_after_a_restart(scratch, network):
    rounds = {"kill": {"k-pass": False, "k-fail": True, "k-pass-2": False},
              "stop": {"s-pass": False, "s-fail": True, "s-pass-2": False}}
    heads = branches_repository(scratch / "forge", SPEC, {branch: fails for branches in rounds.values()
                                                          for branch, fails in branches.items()})
    statuses = StatusServer(STATUS_TOKEN).start()
    repositories = [{"name": "hello", "full_name": FULL_NAME, "secret": GITHUB_SECRET,
                     "url": str(scratch / "forge"), "status_api": statuses.url,
                     "status_token": STATUS_TOKEN}]
    config_path = example_copy(scratch, allow_byzantine=False, repositories=repositories)
    network(str(config_path))
    config = load_config(config_path)

    try:
        for how, branches in rounds.items():
            with client_process(config, scratch / f"client-{how}.out", str(config_path)) as (base_url, process):
                build_ids = [github_push(base_url, branch, heads[branch], f"delivery-{branch}") for branch in branches]
                # Every build is on its way to the nodes, none has a verdict yet.
                listed = {build["build_id"]: build["state"]
                          for build in http_json("GET", f"{base_url}/builds")[1]["builds"]}
                assert [listed[build_id] for build_id in build_ids] == ["pending"] * 3, listed
                time.sleep(1.5)
                os.killpg(process.pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)
                process.wait(timeout=15)

            offsets = log_offsets(config.log_dir)
            with client(config, scratch / f"client-{how}-again.out", str(config_path)) as base_url:
                found = records(base_url, build_ids)
            for branch, build_id in zip(branches, build_ids):
                record = found[build_id]
                expected = "failure" if branches[branch] else "success"
                assert (record["state"], record["result"]["status"], record["result"]["commit"]) == (
                    "accepted", expected, heads[branch]), (how, record)
                assert len(record["agreed_by"]) >= config.f + 1, record
                posted = statuses.final(f"/repos/{FULL_NAME}/statuses/{heads[branch]}", "pbft-ci")
                assert (posted.state, posted.authorized) == (expected, True), (how, posted)
            assert "resumed 3 builds without a verdict" in new_log_text("client.log", offsets, config.log_dir)
    finally:
        statuses.stop()
