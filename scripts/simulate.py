#!/usr/bin/env python3
"""Run the seeded fault simulator over many seeds, or replay one.

    python scripts/simulate.py --seeds 300            # seeds 0..299
    python scripts/simulate.py --seeds 10000 --start 5000
    python scripts/simulate.py --seed 1234 --verbose  # replay one seed with its trace
    python scripts/simulate.py --long --seeds 3       # long runs: 10,000 batches, one node down for most of it
    python scripts/simulate.py --unsynced-stores      # power loss also drops each node's last saved step

Prints one summary line (seeds run, how many failed each check, time,
seeds/s and how many seeds ran each fault kind), then how many seeds of
each kind failed, then one line per failing seed with its gravest first
violation, the other checks it failed, and the command that replays it.
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
from pbft.sim.checkers import CHECKS  # noqa: E402


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
                        help="never fault the primary, split the network, lose messages network-wide or black it out")
    parser.add_argument("--long", action="store_true",
                        help="every seed is a long run (see --long-requests); slow, not for CI")
    parser.add_argument("--long-fraction", type=float, default=0.0,
                        help="share of seeds that are long runs, drawn per seed (default: %(default)s)")
    parser.add_argument("--long-requests", type=int, default=10_000,
                        help="requests, one batch each, in a long run (default: %(default)s)")
    parser.add_argument("--unsynced-stores", action="store_true",
                        help="power loss drops the last saved step, as SQLite synchronous=NORMAL can; "
                             "its seeds fail by design, showing why every step must be synced")
    args = parser.parse_args(argv)
    # The replica logs every dropped message at warning; the trace already records them.
    logging.getLogger("pbft").setLevel(logging.ERROR)

    options = SimOptions(
        store_factory=memory_store,
        requests=args.requests,
        primary_faults=args.primary_faults,
        long_fraction=1.0 if args.long else args.long_fraction,
        long_requests=args.long_requests,
        unsynced_stores=args.unsynced_stores,
        verbose=args.verbose,
    )
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started_s = time.perf_counter()
    kinds: Counter = Counter()
    failing_kinds: Counter = Counter()
    failed_checks: Counter = Counter()
    failures = []
    for seed in seeds:
        outcome = run_seed(seed, options)
        kinds.update(outcome.kinds)
        if outcome.trace is not None:
            print("\n".join(outcome.trace))
        failed_checks.update(outcome.failed_checks)
        if outcome.violations:
            failing_kinds.update(outcome.kinds)
            failures.append((seed, outcome))
    elapsed_s = time.perf_counter() - started_s
    checks = " ".join(f"{check}={failed_checks[check]}" for check in CHECKS)
    print(
        f"seeds={len(seeds)} failed={len(failures)} {checks} elapsed_s={elapsed_s:.1f} "
        f"seeds_per_s={len(seeds) / elapsed_s:.2f} primary_faults={args.primary_faults} "
        "faults=" + ",".join(f"{kind}:{count}" for kind, count in sorted(kinds.items()))
    )
    if failures:
        print("failing seeds per kind: " + ",".join(
            f"{kind}:{failing_kinds[kind]}/{count}" for kind, count in sorted(kinds.items()) if failing_kinds[kind]
        ))
    flags = f" --requests {args.requests}"
    flags += "" if args.primary_faults else " --no-primary-faults"
    flags += f" --long --long-requests {args.long_requests}" if args.long else ""
    flags += f" --long-fraction {args.long_fraction} --long-requests {args.long_requests}" if args.long_fraction and not args.long else ""
    flags += " --unsynced-stores" if args.unsynced_stores else ""
    for seed, outcome in failures:
        others = [check for check in outcome.failed_checks if check != outcome.first_violation.kind]
        print(
            f"seed={seed} {outcome.first_violation}" + (f" (also: {','.join(others)})" if others else "")
            + f" [{outcome.plan.describe()}] replay: python scripts/simulate.py --seed {seed}{flags} --verbose"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
