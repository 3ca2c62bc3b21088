"""scripts/bench.py's scenarios that build on the Docker engine, in their --quick form (no timing
asserted): a build beside plain docker runs, webhooks at once, and a fresh clone to its first verdict.
The others are in tests/node/test_bench.py."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.e2e.example_network import OWN_NETWORK
from tests.support.bench import BUILD_SCENARIOS, quick_reports, run_bench

# Each scenario starts networks of its own (bench/builds.py keeps their pid files apart), and the
# first-verdict bench a fresh clone with its own run/ and ports.
pytestmark = OWN_NETWORK


@pytest.mark.slow
@pytest.mark.docker
def test_quick_bench_runs_the_build_scenarios(tmp_path):
    result, reports = quick_reports(BUILD_SCENARIOS, tmp_path)
    build = reports["build"]
    assert set(build["results"]) == {"pbft-ci", "plain", "plain x4"}
    # Each node's `build end` line gives the measured build's overhead (its duration less commands_ms).
    assert len(build["node_overhead_ms"]["values"]) == 4
    dockerfile = build["dockerfile"]
    assert set(dockerfile["results"]) == {"pbft-ci", "plain", "plain x4"} and dockerfile["over_plain_x4"] > 0
    assert len(dockerfile["node_overhead_ms"]["values"]) == 4
    # With `builders: f+1` the two nodes the order picked built it, and no other.
    f1 = build["dockerfile_f1"]
    assert set(f1["results"]) == {"pbft-ci", "plain", "plain x4"} and f1["over_plain"] > 0
    assert len(f1["node_overhead_ms"]["values"]) == 2
    assert reports["concurrent"]["webhooks"] == 4
    for heading in ("build:", "concurrent:", "targets", "Dockerfile, builders: f+1"):
        assert heading in result.stdout


@pytest.mark.slow
@pytest.mark.docker
def test_the_first_verdict_bench_times_a_fresh_clone_to_its_first_verdict(tmp_path):
    out = tmp_path / "first.json"
    result = run_bench("first-verdict", "--quick", "--json", str(out), timeout_s=1200)
    [report] = json.loads(out.read_text())["scenarios"]
    assert report["verdicts"] == ["success"]
    phases = report["phases"]
    assert list(phases) == ["clone", "startNetwork.sh", "startClient.sh", "first webhook"]
    assert all(phase["median"] > 0 for phase in phases.values())
    total = report["clone_to_first_verdict_s"]["median"]
    assert abs(total - sum(phase["median"] for phase in phases.values())) < 0.05
    assert "clone to verdict" in result.stdout
    # The clone's network was stopped and the clone removed.
    assert not list(Path(tempfile.gettempdir()).glob("pbft-ci-bench-first-*"))


@pytest.mark.slow
@pytest.mark.docker
def test_the_cost_bench_charges_a_verdict_for_every_nodes_build(tmp_path):
    result, reports = quick_reports(["cost"], tmp_path)
    every, f_plus_1 = reports["cost"]["projects"]
    assert (every["builders"], f_plus_1["builders"]) == ("all", "f+1")
    # Four builds per verdict, or the two the order picked, which agreed: nobody else built.
    assert every["builds_per_verdict"] == [4] and f_plus_1["builds_per_verdict"] == [2], reports
    for busy in (every, f_plus_1):
        pbft_ci, plain = busy["results"]["pbft-ci"], busy["results"]["plain"]
        # The engine's own counters were read around both. Their ratio (about four and two, on
        # a quiet machine) is not asserted: the tests beside this one run containers under
        # the same group.
        assert pbft_ci["cpu_s"]["median"] > 0 and plain["cpu_s"]["median"] > 0, busy
        assert pbft_ci["peak_mb"]["median"] > 0 and plain["elapsed_s"]["median"] > 0, busy
        assert busy["cpu_over_plain"] == round(pbft_ci["cpu_s"]["median"] / plain["cpu_s"]["median"], 2)
    assert "A verdict with 4 nodes and builders: f+1 (2 builds per verdict) costs" in result.stdout
