"""The `log-proofs` scenario: what a verdict log proof costs a node whose log is long.

A store of --leaves verdicts (realistic leaf bytes, written in one go) is grown as a node grows
it in the background (node/logtree.py), then each round times, in CPU, one inclusion proof and
one consistency proof two ways, alternating: from the kept subtrees, as GET /log/inclusion and
/log/consistency make them; and from every leaf, read and hashed (what a node without the kept
subtrees has to do, on its event loop, for each caller).
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.stats import alternating
from node.logtree import GROW_LEAVES
from node.storage import NodeStore
from pbft.ci.verdictlog import leaf_data
from pbft.merkle import consistency_proof, inclusion_proof, leaf_hash

WAYS = ("kept subtrees", "every leaf")


def _write(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    agreed = {"status": "success", "exit_code": 0, "commit": "0" * 40, "artifacts": {}}
    with db:
        db.executemany("INSERT INTO verdict_log (position, client, timestamp, seq, leaf) VALUES (?, ?, ?, ?, ?)",
                       ((position, "client", 1_796_108_247_000_000 + position, position + 1,
                         leaf_data(position + 1, "client", 1_796_108_247_000_000 + position, agreed))
                        for position in range(count)))
    db.close()


def _every_leaf(store: NodeStore, size: int, index: int) -> tuple[list[bytes], list[bytes]]:
    db = sqlite3.connect(store.path)
    try:
        hashes = [leaf_hash(bytes(leaf)) for (leaf,) in
                  db.execute("SELECT leaf FROM verdict_log WHERE position < ? ORDER BY position", (size,))]
    finally:
        db.close()
    return inclusion_proof(hashes, index), consistency_proof(hashes, size // 2)


def _kept(store: NodeStore, size: int, index: int) -> tuple[list[bytes], list[bytes]]:
    return store.verdict_log.inclusion(size, index), store.verdict_log.consistency(size, size // 2)


def log_proofs(args) -> dict:
    count = 20_000 if args.quick else args.leaves
    rounds = 3 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-log-") as scratch:
        store = NodeStore(Path(scratch) / "node.sqlite", n=4, f=1)
        try:
            _write(store.path, count)
            started_s = time.process_time()
            while store.verdict_log.grow() < count - count % 16:
                pass
            grow_s = time.process_time() - started_s
            (rows,) = sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM verdict_log_tree").fetchone()
            times: dict[str, list[float]] = {way: [] for way in WAYS}
            proofs: dict[tuple[int, str], tuple] = {}
            for round_number, way in alternating(WAYS, rounds):
                index = (round_number * 7919) % count
                started_s = time.process_time()
                proofs[round_number, way] = (_kept if way == WAYS[0] else _every_leaf)(store, count, index)
                times[way].append((time.process_time() - started_s) * 1000)
            if any(proofs[number, WAYS[0]] != proofs[number, WAYS[1]] for number in range(rounds)):
                raise RuntimeError(f"the two ways disagree on a proof in a tree of {count}")
        finally:
            store.close()
    medians = {way: statistics.median(values) for way, values in times.items()}
    return {
        "scenario": "log-proofs",
        "leaves": count,
        "rounds": rounds,
        "grow_cpu_s": round(grow_s, 3),
        "grow_leaves_per_s": round(count / grow_s) if grow_s else None,
        "grow_slice_ms": round(grow_s * 1000 * GROW_LEAVES / count, 2),
        "tree_rows": rows,
        "proof_cpu_ms": {way: {"values": [round(value, 3) for value in values], "median": round(medians[way], 3),
                               "min": round(min(values), 3), "max": round(max(values), 3)}
                         for way, values in times.items()},
        "every_leaf_over_kept": round(medians[WAYS[1]] / medians[WAYS[0]], 1) if medians[WAYS[0]] else None,
    }


def log_proofs_table(report: dict) -> str:
    rows = [
        f"log-proofs: a verdict log of {report['leaves']:,} leaves; growing its kept subtrees took "
        f"{report['grow_cpu_s']} s of CPU ({report['grow_leaves_per_s']:,} leaves/s, "
        f"{report['grow_slice_ms']} ms per slice of {GROW_LEAVES}), {report['tree_rows']:,} rows",
        "",
        "| one inclusion and one consistency proof, from | median CPU ms | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for way in WAYS:
        cpu = report["proof_cpu_ms"][way]
        rows.append(f"| {way} | {cpu['median']:.3f} | {cpu['min']:.3f} | {cpu['max']:.3f} |")
    rows += ["", f"Every leaf costs {report['every_leaf_over_kept']}x the kept subtrees (ratio of medians)."]
    return "\n".join(rows)
