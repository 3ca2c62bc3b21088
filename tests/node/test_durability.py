"""What a node's store keeps: fsynced commits by default, everything saved across kill -9; the bench that measures the cost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.storage import NodeStore
from pbft.messages import Prepare

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNCHRONOUS = {1: "NORMAL", 2: "FULL"}  # SQLite's numbers for the levels


def pragmas(store: NodeStore) -> tuple[str, str]:
    # Both are per connection, so they are read on the store's own.
    journal = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = store._db.execute("PRAGMA synchronous").fetchone()[0]
    return journal, SYNCHRONOUS[synchronous]


def test_a_store_fsyncs_every_commit_unless_told_otherwise(tmp_path):
    store = NodeStore(tmp_path / "full.sqlite", n=4, f=1)
    normal = NodeStore(tmp_path / "normal.sqlite", n=4, f=1, synchronous="NORMAL")
    try:
        assert pragmas(store) == ("wal", "FULL")
        assert pragmas(normal) == ("wal", "NORMAL")
    finally:
        store.close()
        normal.close()
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        NodeStore(tmp_path / "off.sqlite", n=4, f=1, synchronous="OFF")


SAVE_THEN_WAIT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from bench.durable import replica_steps
    from node.storage import NodeStore

    store = NodeStore(Path(sys.argv[1]), n=4, f=1)
    state, steps = replica_steps(20)
    for effects in steps:
        store.save(state, effects)
    print("saved", flush=True)
    time.sleep(60)
""")


def test_every_step_saved_before_a_kill_9_is_there_after_it(tmp_path):
    path = tmp_path / "node.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", SAVE_THEN_WAIT, str(path), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "saved\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = NodeStore(path, n=4, f=1)
    try:
        loaded = store.load()
    finally:
        store.close()
    assert loaded is not None
    assert sorted(m.seq for m in loaded.messages if isinstance(m, Prepare)) == list(range(1, 21))


def test_the_durable_bench_compares_normal_and_full(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", "durable", "--quick", "--json", str(out), "--dir", str(tmp_path / "db")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert "| synchronous | median saves/s | min | max | median ms/save |" in lines
    assert any(line.startswith("| NORMAL | ") for line in lines) and any(line.startswith("| FULL | ") for line in lines)
    assert lines[-1].startswith("FULL is ") and lines[-1].endswith("x slower than NORMAL (ratio of medians).")

    (report,) = json.loads(out.read_text())["scenarios"]
    assert report["scenario"] == "durable" and report["rounds"] >= 2 and report["saves_per_round"] >= 1
    for mode in ("NORMAL", "FULL"):
        result = report["results"][mode]
        assert len(result["saves_per_s"]) == report["rounds"]
        assert result["min"] <= result["median"] <= result["max"]
        assert all(rate > 0 for rate in result["saves_per_s"])
    assert report["full_slowdown"] == pytest.approx(
        report["results"]["NORMAL"]["median"] / report["results"]["FULL"]["median"], rel=0.01
    )
    assert not any((tmp_path / "db").iterdir())  # scratch databases removed
