"""What a node's store keeps: fsynced commits by default, everything saved across kill -9; the bench that measures the cost."""

from __future__ import annotations

import json
import sqlite3
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from bench.durable import replica_steps
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
        store.save(state, effects, sync=sys.argv[3] == "synced")
    print("saved", flush=True)
    time.sleep(60)
""")


# Written unsynced is how PRE-PREPAREs, PREPAREs and executions leave (`pbft.horizon`): a kill keeps them.
@pytest.mark.parametrize("sync", ["synced", "written"])
def test_every_step_saved_before_a_kill_9_is_there_after_it(tmp_path, sync):
    path = tmp_path / "node.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", SAVE_THEN_WAIT, str(path), str(REPO_ROOT), sync], stdout=subprocess.PIPE, text=True,
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
    assert not store.rebooted  # the same boot: nothing written was lost


def test_a_store_tells_a_start_after_a_reboot_by_the_boot_it_recorded_with_its_state(tmp_path):
    path = tmp_path / "node.sqlite"
    state, steps = replica_steps(2)
    store = NodeStore(path, n=4, f=1)
    assert not store.rebooted  # nothing saved, nothing to lose
    store.save(state, steps[0], sync=False)
    store.close()
    store = NodeStore(path, n=4, f=1)
    assert not store.rebooted and store.load().state == state
    store.close()
    # Linux gives each boot another id: a store that recorded another one outlived its machine's
    # memory, and what it wrote unsynced may be gone.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'an-earlier-boot' WHERE key = 'boot'")
    db.close()
    store = NodeStore(path, n=4, f=1)
    assert store.rebooted
    store.close()
    store = NodeStore(path, n=4, f=1)
    assert store.rebooted  # until the state is written again under this boot
    store.save(replace(state, view=state.view + 1), [], sync=False)
    store.close()
    store = NodeStore(path, n=4, f=1)
    assert not store.rebooted
    store.close()


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
