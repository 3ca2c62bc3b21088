#!/usr/bin/env python3
"""Run the seeded fault simulator over many seeds, or replay one.

    python scripts/simulate.py --seeds 300            # seeds 0..299
    python scripts/simulate.py --seeds 10000 --start 5000
    python scripts/simulate.py --seed 1234 --verbose  # replay one seed with its trace

Prints one summary line (seeds run, safety violations, liveness failures,
time, seeds/s and how many seeds ran each fault kind), then one line per
failing seed with its first violation and the command that replays it.
Exits 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.storage import NodeStore  # noqa: E402
from pbft.sim import SimOptions, run_seed  # noqa: E402


def memory_store(n: int, f: int) -> NodeStore:
    """The node's real SQLite store, in memory: what the simulator persists each step into."""
    return NodeStore(Path(":memory:"), n=n, f=f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300, help="how many seeds to run (default: %(default)s)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default: %(default)s)")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--requests", type=int, default=20, help="requests per seed (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="print each seed's trace")
    parser.add_argument("--no-primary-faults", dest="primary_faults", action="store_false",
                        help="never fault the primary, split the network or lose messages network-wide")
    args = parser.parse_args(argv)
    # The replica logs every dropped message at warning; the trace already records them.
    logging.getLogger("pbft").setLevel(logging.ERROR)

    options = SimOptions(store_factory=memory_store, requests=args.requests, primary_faults=args.primary_faults, verbose=args.verbose)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started_s = time.perf_counter()
    safety = liveness = 0
    kinds: Counter = Counter()
    failures = []
    for seed in seeds:
        outcome = run_seed(seed, options)
        kinds.update(outcome.plan.kinds())
        if outcome.trace is not None:
            print("\n".join(outcome.trace))
        safety += bool(outcome.safety_violations)
        liveness += bool(outcome.liveness_failures)
        if outcome.violations:
            failures.append((seed, outcome))
    elapsed_s = time.perf_counter() - started_s
    print(
        f"seeds={len(seeds)} safety_violations={safety} liveness_failures={liveness} elapsed_s={elapsed_s:.1f} "
        f"seeds_per_s={len(seeds) / elapsed_s:.1f} primary_faults={args.primary_faults} "
        "faults=" + ",".join(f"{kind}:{count}" for kind, count in sorted(kinds.items()))
    )
    flag = "" if args.primary_faults else " --no-primary-faults"
    for seed, outcome in failures:
        print(
            f"seed={seed} {outcome.violations[0]} [{outcome.plan.describe()}] "
            f"replay: python scripts/simulate.py --seed {seed} --requests {args.requests}{flag} --verbose"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
