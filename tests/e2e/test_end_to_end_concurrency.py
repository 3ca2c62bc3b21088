"""End to end: a spec's `concurrency: {group}` on four real nodes. Two builds of the group asked
for at once never run at the same time on any node: on each node the one ordered second waits,
its log says for which, and the two builds' commands ran one after the other (their times read
from the host's /proc/uptime, which every container shares)."""

from __future__ import annotations

import threading
import time

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, finished_log
from tests.e2e.runner_helpers import build, forge_commit, forge_network

pytestmark = OWN_NETWORK_MARKS

SPEC = """concurrency:
  group: lab
commands:
  - echo "began $(cut -d ' ' -f 1 /proc/uptime)"
  - sleep 3
  - echo "ended $(cut -d ' ' -f 1 /proc/uptime)"
"""


def span(log: str) -> tuple[float, float]:
    """When the build's commands began and ended on the node, as its output says."""
    said = dict(line.split(" ", 1) for line in log.splitlines() if line.startswith(("began ", "ended ")))
    return float(said["began"]), float(said["ended"])


def test_two_builds_of_one_group_never_run_at_once_on_any_node(scratch, network):
    head = forge_commit(scratch / "forge", {".pbft-ci.yml": SPEC}, "one group")
    config_path = forge_network(scratch, scratch / "forge")
    network(str(config_path))
    config = load_config(config_path)

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        verdicts: list[dict] = []
        asked = [threading.Thread(target=lambda: verdicts.append(build(base_url, "master", head))) for _ in range(2)]
        for thread in asked:
            thread.start()
        for thread in asked:
            thread.join(300)
        assert [verdict["status"] for verdict in verdicts] == ["success", "success"], verdicts
        first, second = sorted(verdict["build_id"] for verdict in verdicts)  # ids are request timestamps
        waited = 0
        for node in config.nodes:
            logs = {build_id: finished_log(base_url, build_id, node.id) for build_id in (first, second)}
            spans = sorted(span(log) for log in logs.values())
            assert spans[0][1] <= spans[1][0], (node.id, spans, logs)  # one after the other
            waited += sum("of concurrency group lab to end on this node" in log for log in logs.values())
        assert waited == len(config.nodes), "on each node, one of the two waited for the other"


def test_cancel_in_progress_cancels_the_older_build_on_every_node(scratch, network):
    forge = scratch / "forge"
    spec = ("concurrency: {group: lab, cancel_in_progress: true}\n"
            "commands:\n  - echo commands began\n  - if [ -f slow ]; then sleep 120; fi\n")
    quick = forge_commit(forge, {".pbft-ci.yml": spec}, "quick")
    slow = forge_commit(forge, {"slow": "its build sleeps\n"}, "slow", branch="slow")
    config_path = forge_network(scratch, forge)
    network(str(config_path))
    config = load_config(config_path)

    with client(config, scratch / "client.out", str(config_path)) as base_url:
        verdicts: dict[str, dict] = {}
        older = threading.Thread(target=lambda: verdicts.update(slow=build(base_url, "slow", slow)))
        older.start()
        deadline = time.monotonic() + 120
        while not (running := [b for b in http_json("GET", f"{base_url}/builds")[1]["builds"]
                               if b["progress"] == "running"]):
            assert time.monotonic() < deadline, "the slow build never ran"
            time.sleep(0.2)
        verdicts["quick"] = build(base_url, "master", quick)
        older.join(120)
        assert verdicts["quick"]["status"] == "success", verdicts
        assert verdicts["slow"]["status"] == "cancelled", verdicts
        slow_id = running[0]["build_id"]
        record = http_json("GET", f"{base_url}/builds/{slow_id}")[1]
        assert record["state"] == "accepted" and record["verdict"] == "cancelled", record
        audit = http_json("GET", f"{base_url}/audit?action=cancel")[1]["actions"]
        assert [entry["target"] for entry in audit] == [slow_id], audit  # one ordered cancel, of the older
        # Every node waited for the older build before it ran the newer, unless the older was
        # cancelled there before its commands began: a node slower than f+1 others to fetch
        # learns of the cancel first, and then has nothing to wait for.
        waited = "of concurrency group lab to end on this node"
        waiters = 0
        for node in config.nodes:
            newer = finished_log(base_url, verdicts["quick"]["build_id"], node.id)
            older = finished_log(base_url, slow_id, node.id)
            assert waited in newer or ("commands began" not in older and "== status cancelled" in older), (
                node.id, newer, older)
            waiters += waited in newer
        assert waiters >= config.f + 1, "the cancel was asked for on f+1 nodes' word that the newer build waited"
