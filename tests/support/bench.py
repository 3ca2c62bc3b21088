"""Running scripts/bench.py from a test: the node layer runs its network scenarios, the e2e
layer those that build on the Docker engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# bench.py's default scenarios, split by what they need: node processes with instant builds
# (tests/node/test_bench.py), or the Docker engine (tests/e2e/test_bench_builds.py).
NETWORK_SCENARIOS = ["consensus", "relay", "throughput", "idle", "failover", "memory", "durable", "restart"]
BUILD_SCENARIOS = ["build", "concurrent"]


def run_bench(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """scripts/bench.py with `args`, from the repository root; it must succeed."""
    result = subprocess.run([sys.executable, "scripts/bench.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout_s)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def quick_reports(scenarios: list[str], scratch: Path) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """bench.py's --quick run of `scenarios` with its scratch files in `scratch`: the run, and each
    scenario's JSON report by name, in the order asked for."""
    out = scratch / "bench.json"
    result = run_bench(*scenarios, "--quick", "--json", str(out), "--dir", str(scratch))
    reports = {report["scenario"]: report for report in json.loads(out.read_text())["scenarios"]}
    assert list(reports) == scenarios
    return result, reports
