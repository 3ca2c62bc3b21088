"""The first-verdict scenario: a newcomer's first hour, timed. From `git clone` of this
checkout to the first verdict, with the README's commands and nothing else run by hand:
`./startNetwork.sh` (which sets the clone up: .venv, keys, the example repository),
`./scripts/startClient.sh --background`, and the README's first webhook.

The machine is taken as it is after one set-up: the Docker engine and the build image
present, pip's cache warm. What a fresh clone pays is what remains: its own .venv, keys,
example repository, the nodes' first fetch and the first build. The clone's example
configuration gets ports of its own, so it never meets a network already running here;
everything else in it is as the README leaves it. The clone's network is stopped with
`./stopNetwork.sh` and the clone removed, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from bench.stats import load_average, summarize
from harness.network import free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
PHASES = ("clone", "startNetwork.sh", "startClient.sh", "first webhook")
# A fresh .venv installs every package of requirements.txt (from pip's cache after the first time).
PHASE_TIMEOUT_S = 900


# The clone's scripts keep their pid files in its own run/, as a newcomer's would.
CLONE_ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PBFT_CI_RUN_DIR"}


def _run(command: list[str], cwd: Path) -> float:
    started_s = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=PHASE_TIMEOUT_S,
                          env=CLONE_ENVIRONMENT)
    if done.returncode != 0:
        raise SystemExit(f"first-verdict: {' '.join(command)} exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started_s


def _own_ports(config_path: Path) -> int:
    """Free ports for the clone's nodes and client; returns the client's."""
    data = yaml.safe_load(config_path.read_text())
    *node_ports, client_port = free_ports(len(data["nodes"]) + 1)
    for node, port in zip(data["nodes"], node_ports):
        node["port"] = port
    data["clients"][0]["port"] = client_port
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return client_port


def _first_webhook(port: int) -> tuple[float, dict]:
    started_s = time.perf_counter()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webHook", data=b'{"branch":"master"}', method="POST")
    with urllib.request.urlopen(request, timeout=PHASE_TIMEOUT_S) as answer:
        verdict = json.loads(answer.read())
    return time.perf_counter() - started_s, verdict


def one_round(root: Path) -> dict:
    """Each phase's seconds and the first verdict, for one fresh clone under `root`."""
    checkout = root / "pbft-ci"
    seconds = {"clone": _run(["git", "clone", "--quiet", str(REPO_ROOT), str(checkout)], root)}
    port = _own_ports(checkout / "example-config" / "network.yaml")
    try:
        seconds["startNetwork.sh"] = _run(["./startNetwork.sh"], checkout)
        seconds["startClient.sh"] = _run(["./scripts/startClient.sh", "--background"], checkout)
        seconds["first webhook"], verdict = _first_webhook(port)
    finally:
        subprocess.run(["./stopNetwork.sh"], cwd=checkout, capture_output=True, timeout=PHASE_TIMEOUT_S,
                       env=CLONE_ENVIRONMENT)
    if verdict.get("status") != "success":
        raise SystemExit(f"first-verdict: the first webhook's verdict is not success: {verdict}")
    return {"seconds": seconds, "verdict": verdict["status"], "commit": verdict["commit"]}


def first_verdict(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    load = load_average()
    results = []
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="pbft-ci-bench-first-"))
        try:
            results.append(one_round(root))
        finally:
            # The build containers ran as the build user; their files are gone with the containers.
            shutil.rmtree(root, ignore_errors=True)
    phases = {phase: summarize([result["seconds"][phase] for result in results], 2) for phase in PHASES}
    total = summarize([sum(result["seconds"].values()) for result in results], 2)
    return {"scenario": "first-verdict", "rounds": rounds, "load_average_at_start": load, "phases": phases,
            "clone_to_first_verdict_s": total, "verdicts": [result["verdict"] for result in results]}


def first_verdict_table(report: dict) -> str:
    rows = [f"first verdict: git clone to the README's first webhook answered ({report['rounds']} rounds, "
            f"load average at start {report['load_average_at_start']})",
            f"  {'phase':<18} {'median s':>9} {'min':>7} {'max':>7}"]
    for phase, summary in {**report["phases"], "clone to verdict": report["clone_to_first_verdict_s"]}.items():
        rows.append(f"  {phase:<18} {summary['median']:>9.2f} {summary['min']:>7.2f} {summary['max']:>7.2f}")
    return "\n".join(rows)
