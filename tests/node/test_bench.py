"""scripts/bench.py: the statistics it reports, and its --quick run of every scenario on networks of node
processes with instant builds (no timing asserted)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.stats import alternating, percentile, ratio, summarize
from bench.targets import targets_table
from tests.support.bench import BUILD_SCENARIOS, NETWORK_SCENARIOS, REPO_ROOT, quick_reports, run_bench


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
    assert percentile(values, 0.2) == 1.0
    assert percentile(list(range(1, 101)), 0.99) == 99


def test_alternating_reverses_the_order_every_other_round():
    assert list(alternating(["a", "b", "c"], 3)) == [
        (0, "a"), (0, "b"), (0, "c"), (1, "c"), (1, "b"), (1, "a"), (2, "a"), (2, "b"), (2, "c"),
    ]


def test_summary_keeps_every_value_and_the_range():
    assert summarize([3.0, 1.0, 2.0]) == {"values": [3.0, 1.0, 2.0], "median": 2.0, "min": 1.0, "max": 3.0}
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None


def test_the_cost_bench_charges_what_containers_grew_by_and_nothing_for_those_that_shrank_or_went():
    from bench.cost import grown_mb
    mb = 1024 * 1024
    before = {"another-test": 300 * mb, "idle": 10 * mb}
    # The other test's container went, the idle one grew by 2 MB, a build's started with 40 MB.
    assert grown_mb({"idle": 12 * mb, "build": 40 * mb}, before) == 42
    assert grown_mb({"another-test": 100 * mb}, before) == 0


def test_every_default_scenario_is_run_by_the_node_layer_or_the_e2e_layer():
    default = re.search(r"\(default: ([a-z -]+)\)", " ".join(run_bench("--help", timeout_s=60).stdout.split()))
    assert default, "bench.py --help names no default scenarios"
    assert sorted(NETWORK_SCENARIOS + BUILD_SCENARIOS) == sorted(default[1].split())


def test_the_frames_bench_sizes_view_changes_as_nodes_send_them(tmp_path):
    from bench.frames import largest
    from pbft.messages import MAX_BATCH_BYTES
    small, proven = largest(4, 1, 0, 10), largest(4, 1, 1, 10)
    # A proof adds 2f+1 signed votes to a batch; a NEW-VIEW holds 2f+1 VIEW-CHANGEs, but each batch once.
    assert proven["preprepare"] - small["preprepare"] > 3 * 800
    assert small["new_view"] > 2 * small["view_change"] > 20 * small["preprepare"]
    assert proven["new_view"] - small["new_view"] < 1.2 * (proven["view_change"] - small["view_change"])
    assert largest(4, 1, 0, 20)["view_change"] > 1.9 * small["view_change"]
    result, reports = quick_reports(["frames"], tmp_path)
    rows = reports["frames"]["rows"]
    assert {row["n"] for row in rows} == {4} and len(rows) == 13
    assert "| 4 | 64 | 8 | 256 |" in result.stdout
    # The last row: a window of batches at the bound backups enforce, each one as large as it may be.
    bound = rows[-1]
    assert bound["slots"] == 256 and MAX_BATCH_BYTES * 0.95 < bound["preprepare"] < MAX_BATCH_BYTES * 1.1
    assert bound["view_change"] > 256 * MAX_BATCH_BYTES
    # A verdict's proof at the largest network a configuration takes, with a vote of every node
    # and a second vote of f of them, still fits in one batch, with room for longer reasons.
    from bench.frames import _vote
    from pbft.messages import MAX_NODES, VerdictProof
    f = (MAX_NODES - 1) // 3
    assert VerdictProof(tuple(_vote(1, sender) for sender in range(MAX_NODES + f))).encoded[1] < 0.6 * MAX_BATCH_BYTES
    assert all(row["new_view"] < 8e6 for row in rows if row["slots"] == 136)


@pytest.mark.slow
def test_quick_bench_runs_every_network_scenario(tmp_path):
    result, reports = quick_reports(NETWORK_SCENARIOS, tmp_path)
    assert set(reports["consensus"]["results"]) == {"4", "7"}
    for size in reports["consensus"]["results"].values():
        assert 0 < size["min_ms"] <= size["p50_ms"] <= size["p99_ms"] <= size["max_ms"]
        assert 0 < size["f_plus_1_p50_ms"] <= size["p50_ms"]  # the verdict waits for f+1, then settles
        assert size["node_cpu_ms_per_request"] > 0
        assert size["synced_save_wait_ms_per_request"] > 0
        # Every request needs at least one quorum of COMMITs checked at every node.
        assert size["signature_checks_per_request"] >= 2 * size["f"] * (3 * size["f"] + 1)
        assert size["signature_check_cpu_ms_per_request"] > 0
    relay = reports["relay"]["results"]["7"]
    assert relay["all-to-all"]["p50_ms"] > 0 and relay["relayed"]["p50_ms"] > 0 and relay["relayed_over_all_to_all"] > 0
    assert set(reports["throughput"]["results"]) == {"1", "8", "64", "256"}
    assert all(rate["median"] > 0 for rate in reports["throughput"]["results"].values())
    assert all(cpu["nodes"] > 0 and cpu["client"] > 0 for cpu in reports["throughput"]["cpu_ms_per_request"].values())
    assert reports["idle"]["after_idle_over_warm"] > 0
    failover = reports["failover"]["results"]
    # A client that only retransmits reaches the backups only when it retransmits; the others'
    # requests reach them at once, and their links' hint (pbft.reach) needs no timeout.
    assert failover["retransmits only"]["min"] >= reports["failover"]["client_retransmit_s"] * 1000
    assert all(failover[name]["min"] > 0 for name in ("follows links", "knew view 1", "restarted, view 1"))
    assert reports["failover"]["restarted_over_knew_the_view"] > 0
    assert len(reports["memory"]["results"]) == 4
    assert all(node["rss_mib"][0] > 0 for node in reports["memory"]["results"].values())
    assert set(reports["durable"]["results"]) == {"NORMAL", "FULL"}
    restart = reports["restart"]["results"]
    assert list(restart) == ["2000", "8000"] and all(size["restart_s"]["median"] > 0 for size in restart.values())
    # Only the newest max_requests_per_client builds of the client are live after a restart.
    assert restart["8000"]["builds_kept"] == reports["restart"]["max_requests_per_client"]
    # The tables went to stdout, one per scenario.
    for heading in [f"{name}:" for name in NETWORK_SCENARIOS] + ["targets"]:
        assert heading in result.stdout


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is on every machine of this project's kind")
def test_the_codec_bench_reports_cpu_and_instructions_per_request(tmp_path):
    out = tmp_path / "codec.json"
    result = run_bench("codec", "--quick", "--instructions", "--json", str(out))
    [report] = json.loads(out.read_text())["scenarios"]
    assert list(report["results"]) == [str(REPO_ROOT)]
    measured = report["results"][str(REPO_ROOT)]
    assert measured["cpu_us_per_request"] > 0 and measured["instructions_per_request"] > 100_000
    assert "instructions per request" in result.stdout
    refused = subprocess.run([sys.executable, "scripts/bench.py", "codec", "--tree", str(tmp_path)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "no pbft/messages.py there" in refused.stderr


def test_targets_table_says_which_targets_a_run_met():
    reports = [
        {"scenario": "consensus", "results": {"4": {"p50_ms": 8.5}, "16": {"p50_ms": 55.0}}},
        {"scenario": "memory", "max_growth": 0.068},
        {"scenario": "build", "over_plain_x4": 1.3, "node_overhead_ms": None, "dockerfile": {"over_plain_x4": 0.9, "over_plain": 1.8},
         "dockerfile_f1": {"over_plain": 1.05}},
    ]
    rows = {row.split(" | ")[0].lstrip("| "): row for row in targets_table(reports, quick=False).splitlines()}
    assert rows["consensus overhead p50, n = 4"].endswith("| 8.5 | yes |")
    assert rows["consensus overhead p50, n = 16"].endswith("| 55 | no |")
    assert rows["node RSS growth, 1,000 -> 10,000 requests"].endswith("| 6.8 | yes |")
    assert rows["webhook -> verdict / four plain runs at once"].endswith("| 1.3 | no |")
    assert rows["node overhead per build, p50"].endswith("| n/a | n/a |")
    assert rows["Dockerfile: webhook -> verdict / four plain builds and runs at once"].endswith("| 0.9 | yes |")
    assert rows["Dockerfile: webhook -> verdict / one plain build and run"].endswith("| 1.8 | no |")
    assert rows["Dockerfile, builders: f+1: webhook -> verdict / one plain build and run"].endswith("| 1.05 | yes |")
    assert not any(row.startswith(("| ordered requests/s", "| first request after idle")) for row in rows.values()), (
        "scenarios not run are left out"
    )
    assert "say nothing" in targets_table(reports, quick=True).splitlines()[0]
    assert targets_table([{"scenario": "durable"}], quick=False) == ""


def node_children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", "node/index.py"], capture_output=True, text=True)
    return [int(child) for child in found.stdout.split()]


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_terminated_bench_stops_the_nodes_it_started():
    bench = subprocess.Popen(
        [sys.executable, "scripts/bench.py", "consensus", "--quick"], cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    nodes: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(nodes) < 4 and time.monotonic() < deadline and bench.poll() is None:
            nodes = node_children(bench.pid)
            time.sleep(0.05)
        assert len(nodes) == 4, "the bench's first network did not start"
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        # NodeProcesses.stop waited for each node before the bench exited.
        assert not [pid for pid in nodes if running(pid)]
    finally:
        bench.kill()
        bench.wait()
        for pid in nodes:  # only if the bench left them, which the assertion above reports
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_large_repository_is_one_commit_of_the_files_asked_for_in_one_pack(tmp_path):
    from bench.largerepo import make_large_repository

    repository = make_large_repository(tmp_path / "large", files=300, total_mb=2)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True,
                              check=True).stdout

    assert git("rev-list", "--count", "master").strip() == "1"
    listed = [line.split() for line in git("ls-tree", "-r", "-l", "master").splitlines()]
    sources = [fields for fields in listed if fields[4].startswith("src/")]
    assert len(sources) == 300 and {fields[4] for fields in listed} >= {".pbft-ci.yml", "test.sh"}
    assert 2 * 1024 * 1024 - 300 <= sum(int(fields[3]) for fields in sources) <= 2 * 1024 * 1024 + 300 * 16
    assert len({fields[2] for fields in sources}) == 300  # no two files are one object
    assert "count: 0" in git("count-objects", "-v")  # no loose objects: one pack, as a forge keeps it


def test_the_reconfigure_bench_times_a_change_until_every_node_runs_it(tmp_path):
    out = tmp_path / "reconfigure.json"
    result = run_bench("reconfigure", "--quick", "--json", str(out))
    [report] = json.loads(out.read_text())["scenarios"]
    results = report["results"]
    for kind in ("limits", "membership"):
        # Every node runs the change after it was ordered: after its f+1 replies reached the client, or about then.
        assert 0 < results[f"{kind}_change_verdict_ms"]["median"] <= results[f"{kind}_applied_everywhere_ms"]["median"] + 50
        assert report[f"{kind}_builds_during"] >= 1 and results[f"{kind}_build_before_ms"]["median"] > 0
    assert "every node runs it" in result.stdout and "node 1's key replaced" in result.stdout


def test_the_log_proofs_bench_grows_every_perfect_subtree_and_both_ways_agree(tmp_path):
    from argparse import Namespace
    from bench.logproofs import log_proofs
    report = log_proofs(Namespace(quick=True, rounds=3, dir=str(tmp_path), leaves=0))
    # Perfect subtrees of 16 leaves and more over 20,000 leaves: 1,250 of 16, 625 of 32, ... 1 of 16,384.
    assert report["leaves"] == 20_000
    assert report["tree_rows"] == sum(20_000 >> level for level in range(4, 15)) == 2_495
    assert len(report["proof_cpu_ms"]["kept subtrees"]["values"]) == 3  # and it raised had any proof differed
    assert list(tmp_path.iterdir()) == []  # its scratch store is gone
