"""End to end: a burst of webhooks for a repository bound to one build at a time, on the README's
network with a client deadline shorter than the burst takes. Every build waits its turn on
the nodes and ends `success`, none `timeout`: f+1 nodes' signed BUILD-STATEs keep the
client waiting past its deadline, and `GET /builds` shows the waiting ones `queued`.

(`scripts/bench.py burst` runs the issue's full size, 30 webhooks of 20 s builds two at a
time, and compares it with the same builds one after another.)
"""

from __future__ import annotations

import threading
import time

import yaml

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, webhook

pytestmark = OWN_NETWORK_MARKS

BUILDS = 8
BUILD_S = 3
DEADLINE_S = 6.0  # two builds' time: without the nodes' word, the fourth build on would time out


def test_a_burst_waits_its_turn_on_the_nodes_and_none_times_out_at_the_client(network, tmp_path):
    slow_repository(tmp_path / "burst", f"commands:\n  - sleep {BUILD_S}\n  - echo done\ntimeout_s: 5\n")
    config_path = example_copy(tmp_path, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "burst", "url": str(tmp_path / "burst"), "max_concurrent": 1}]
    data["build"] = {**data.get("build", {}), "timeout_s": 5}
    data.setdefault("protocol", {})["client_deadline_s"] = DEADLINE_S
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    network(str(config_path))
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        verdicts: list[dict] = []
        started_s = time.monotonic()
        senders = [threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "master")))
                   for _ in range(BUILDS)]
        for sender in senders:
            sender.start()
        seen_queued = set()
        while any(sender.is_alive() for sender in senders):
            builds = http_json("GET", f"{base_url}/builds?limit={BUILDS}")[1]["builds"]
            seen_queued |= {build["build_id"] for build in builds if build["progress"] == "queued"}
            time.sleep(0.2)
        elapsed_s = time.monotonic() - started_s

    assert sorted(verdict["status"] for verdict in verdicts) == ["success"] * BUILDS, verdicts
    assert elapsed_s > BUILDS * BUILD_S > DEADLINE_S  # they ran one at a time, past the deadline
    assert len(seen_queued) >= BUILDS - 2, seen_queued  # all but the first (and a racing second) waited
