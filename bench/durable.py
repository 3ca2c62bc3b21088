"""The `durable` scenario: what syncing every replica step to disk costs.

The node's store saves every replica step in one transaction before anything
of that step is sent. This runs the same sequence of saves (each: the
replica's state and a Store of a signed PREPARE) against a fresh database
with synchronous=NORMAL and with synchronous=FULL, alternating which goes
first, and reports saves per second.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from node.storage import NodeStore
from shared.crypto import Ed25519Authenticator, generate_private_key
from pbft.effects import Store
from pbft.build import Operation
from pbft.messages import Prepare, Request, batch_digest, signed
from pbft.replica import Replica, ReplicaSettings
from bench.stats import alternating

MODES = ("NORMAL", "FULL")


def filesystem_of(path: Path) -> str:
    """The type of the file system holding `path` (Linux /proc/mounts), or "unknown"."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind


def replica_steps(count: int) -> tuple[dict, list[list[Store]]]:
    """A backup's durable state and `count` steps' effects: each stores the PREPARE it signed for one sequence number."""
    node_keys = [generate_private_key() for _ in range(4)]
    client_key = generate_private_key()
    node_auth = Ed25519Authenticator(
        node_keys[1], {i: key.public_key() for i, key in enumerate(node_keys)}, {"client": client_key.public_key()}
    )
    client_auth = Ed25519Authenticator(client_key, {}, {})
    replica = Replica(ReplicaSettings(node_id=1, n=4, f=1), node_auth)
    steps = []
    for seq in range(1, count + 1):
        request = signed(Request("client", seq, Operation("example", "master")), client_auth.sign)
        prepare = signed(Prepare(0, seq, batch_digest((request,)), 1), node_auth.sign)
        steps.append([Store(prepare)])
    return replica.durable_state(), steps


def time_saves(directory: Path, synchronous: str, state: dict, steps: list[list[Store]]) -> float:
    """Saves per second of `steps` into a fresh store."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=f"bench-{synchronous.lower()}-") as scratch:
        store = NodeStore(Path(scratch) / "node.sqlite", n=4, f=1, synchronous=synchronous)
        try:
            started_s = time.perf_counter()
            for effects in steps:
                store.save(state, effects)
            elapsed_s = time.perf_counter() - started_s
        finally:
            store.close()
    return len(steps) / elapsed_s


def durable(args) -> dict:
    saves = 50 if args.quick else args.saves
    rounds = 3 if args.quick else args.rounds
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    state, steps = replica_steps(saves)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _, mode in alternating(MODES, rounds):
        rates[mode].append(time_saves(directory, mode, state, steps))
    summary = {
        mode: {
            "saves_per_s": [round(rate, 1) for rate in values],
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
        for mode, values in rates.items()
    }
    return {
        "scenario": "durable",
        "saves_per_round": saves,
        "rounds": rounds,
        "dir": str(directory.resolve()),
        "filesystem": filesystem_of(directory),
        "results": summary,
        "full_slowdown": round(summary["NORMAL"]["median"] / summary["FULL"]["median"], 2),
    }


def durable_table(report: dict) -> str:
    rows = [
        f"durable: {report['saves_per_round']} saves x {report['rounds']} rounds per mode, "
        f"in {report['dir']} ({report['filesystem']})",
        "",
        "| synchronous | median saves/s | min | max | median ms/save |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        result = report["results"][mode]
        rows.append(
            f"| {mode} | {result['median']:.0f} | {result['min']:.0f} | {result['max']:.0f} "
            f"| {1000 / result['median']:.2f} |"
        )
    rows += ["", f"FULL is {report['full_slowdown']:.2f}x slower than NORMAL (ratio of medians)."]
    return "\n".join(rows)
