"""End to end: a pipeline whose independent steps run at once, with a step that passes on its
retry and a step that fails on one node only, on four real nodes.

Node 3 is started `--byzantine 3:flaky`: honest, but its builds see `PBFT_CI_FLAKY=1`, as a
machine whose environment differs does. Every node runs the two ten-second steps together
(at most 23 s to the end of the step after both, not 30), logs both attempts of the step
that failed once, and signs one agreed result; the record names the step that failed on
node 3 alone as flaky, with that node.
"""

from __future__ import annotations


import yaml

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, finished_log as node_log, poll, webhook

pytestmark = OWN_NETWORK_MARKS

STAMP = "echo {} $(date +%s)"
SPEC = yaml.safe_dump({"steps": [
    {"name": "a", "commands": [STAMP.format("a-start"), "sleep 10"]},
    {"name": "b", "commands": [STAMP.format("b-start"), "sleep 10"], "depends_on": []},
    {"name": "c", "commands": [STAMP.format("c-end")], "depends_on": ["a", "b"]},
    {"name": "once-failing", "retry": 1, "depends_on": ["c"],
     "commands": ["if [ -f tried ]; then echo passed on retry; else touch tried; exit 5; fi"]},
    {"name": "environment", "depends_on": ["c"], "commands": ['test -z "$PBFT_CI_FLAKY"']},
]}, sort_keys=False)


def stamp(text: str, label: str) -> int:
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(f"{label} ")))


def replied_by_all(base_url: str, build_id: str) -> dict | None:
    _, record = http_json("GET", f"{base_url}/builds/{build_id}")
    return record if len(record.get("replied_by", ())) == 4 else None


def test_steps_run_at_once_a_retry_passes_and_a_step_failing_on_one_node_is_flaky(network, tmp_path):
    slow_repository(tmp_path / "steps", SPEC)
    repositories = [{"name": "steps", "url": str(tmp_path / "steps")}]
    config_path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    network(str(config_path), "--byzantine", "3:flaky")
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        verdict = webhook(base_url, config, "master")
        assert verdict["status"] == "success" and 3 not in verdict["agreed_by"], verdict
        build_id = verdict["build_id"]
        for node in range(4):
            text = node_log(base_url, build_id, node)
            assert abs(stamp(text, "a-start") - stamp(text, "b-start")) <= 2, text
            assert stamp(text, "c-end") - min(stamp(text, "a-start"), stamp(text, "b-start")) <= 23, text
            assert "== step once-failing: attempt 1 of 2 failed with exit code 5; running it again" in text, text
            assert "passed on retry" in text
        record = poll("every node's reply", lambda: replied_by_all(base_url, build_id))
        assert record["flaky"] == [
            {"step": "once-failing", "passed_on": [0, 1, 2, 3], "failed_on": [], "retried_on": [0, 1, 2, 3]},
            {"step": "environment", "passed_on": [0, 1, 2], "failed_on": [3], "retried_on": []},
        ], record
        assert [entry["node"] for entry in record["dissent"]] == [3], record
        said = [(step["name"], step["status"]) for step in record["result"]["steps"]]
        assert said == [("a", "success"), ("b", "success"), ("c", "success"), ("once-failing", "success"),
                        ("environment", "success")]
