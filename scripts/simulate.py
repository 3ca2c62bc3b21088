#!/usr/bin/env python3
"""Run the seeded fault simulator over many seeds, or replay one.

    .venv/bin/python scripts/simulate.py --seeds 300            # seeds 0..299
    .venv/bin/python scripts/simulate.py --seeds 20000 --jobs 2 # every core; the summary does not depend on --jobs
    .venv/bin/python scripts/simulate.py --seed 1234 --verbose  # replay one seed with its trace
    .venv/bin/python scripts/simulate.py --long --seeds 3       # only long runs: 10,000 batches, one node down for most of it
    .venv/bin/python scripts/simulate.py --long-every 0         # no long runs (they take ~25 s each)
    .venv/bin/python scripts/simulate.py --unsynced-stores      # no step synced: power loss drops the last saved one
    .venv/bin/python scripts/simulate.py --no-pin               # clients do not pin branch heads: fails by design

Every 40th seed (39, 79, ...) is a long run, so 20,000 seeds hold 500.
Prints one summary line (seeds run, how many failed each check, time,
seeds/s and how many seeds ran each fault kind), then how many seeds of
each kind failed, then one line per failing seed with its gravest first
violation, the other checks it failed, and the command that replays it.
Exits 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from node.storage import NodeStore  # noqa: E402
from pbft.sim import SeedOutcome, SimOptions, run_seed  # noqa: E402
from pbft.sim.checkers import CHECKS  # noqa: E402


def memory_store(n: int, f: int) -> NodeStore:
    """The node's real SQLite store, in memory: what the simulator persists each step into."""
    return NodeStore(Path(":memory:"), n=n, f=f)


def _quiet_logs() -> None:
    # The replica logs every dropped message at warning; the trace already records them. A
    # node its interpreter stops is reported by the run: a broken invariant as a violation,
    # a full disk (the `disk-full` fault) in the trace.
    logging.getLogger("pbft").setLevel(logging.ERROR)
    logging.getLogger("pbft.interpreter").setLevel(logging.CRITICAL + 1)


def _run_in_worker(job: tuple[int, SimOptions]) -> SeedOutcome:
    seed, options = job
    _quiet_logs()
    return run_seed(seed, options)


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
    parser.add_argument("--long-every", type=int, default=40,
                        help="seed k is a long run when k %% LONG_EVERY == LONG_EVERY - 1; 0: none "
                             "(default: %(default)s)")
    parser.add_argument("--long-requests", type=int, default=10_000,
                        help="requests, one batch each, in a long run (default: %(default)s)")
    parser.add_argument("--unsynced-stores", action="store_true",
                        help="no step is synced and power loss drops the last saved one, sent messages "
                             "included, as SQLite synchronous=NORMAL throughout can; its seeds fail by design, "
                             "showing why a step that sends must be synced")
    parser.add_argument("--relay", choices=("alternate", "always", "never"), default="alternate",
                        help="which seeds relay votes through the primary: the odd ones, all or none "
                             "(default: %(default)s)")
    parser.add_argument("--no-ci", dest="ci", action="store_false",
                        help="no CI operations (cancels, re-runs, schedules, moving branches, build slots, "
                             "outages mid-build, redeliveries) in any seed (pbft/sim/ci.py)")
    parser.add_argument("--no-pin", dest="pin_heads", action="store_false",
                        help="clients do not pin a branch's head: nodes that fetch a moving branch at "
                             "different moments build different commits; fails by design")
    parser.add_argument("--builders", choices=("third", "f+1", "all"), default="third",
                        help="which seeds build with the f+1 picked builders (pbft/builders.py): a third "
                             "of them, drawn apart from the seed's other draws, every seed or none "
                             "(default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes (default: %(default)s)")
    args = parser.parse_args(argv)
    _quiet_logs()

    options = SimOptions(
        store_factory=memory_store,
        requests=args.requests,
        primary_faults=args.primary_faults,
        long_every=1 if args.long else args.long_every,
        long_requests=args.long_requests,
        unsynced_stores=args.unsynced_stores,
        relay=args.relay,
        ci=args.ci,
        pin_heads=args.pin_heads,
        builders=args.builders,
        verbose=args.verbose,
    )
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started_s = time.perf_counter()
    kinds: Counter = Counter()
    failing_kinds: Counter = Counter()
    failed_checks: Counter = Counter()
    failures = []
    jobs = [(seed, options) for seed in seeds]
    pool = multiprocessing.Pool(args.jobs) if args.jobs > 1 else None
    outcomes = pool.imap(_run_in_worker, jobs) if pool else map(_run_in_worker, jobs)
    for done, (seed, outcome) in enumerate(zip(seeds, outcomes), start=1):
        if done % 1000 == 0:  # a sweep of thousands of seeds runs for an hour: show it moving
            print(f"{done}/{len(seeds)} seeds, {len(failures)} failed, "
                  f"{time.perf_counter() - started_s:.0f}s", file=sys.stderr, flush=True)
        kinds.update(outcome.kinds)
        if outcome.trace is not None:
            print("\n".join(outcome.trace))
        failed_checks.update(outcome.failed_checks)
        if outcome.violations:
            failing_kinds.update(outcome.kinds)
            failures.append((seed, outcome))
    if pool:
        pool.close()
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
    flags += " --long" if args.long else ""
    flags += f" --long-every {args.long_every}" if args.long_every != 40 and not args.long else ""
    flags += f" --long-requests {args.long_requests}" if args.long_requests != 10_000 else ""
    flags += " --unsynced-stores" if args.unsynced_stores else ""
    flags += f" --relay {args.relay}" if args.relay != "alternate" else ""
    flags += "" if args.ci else " --no-ci"
    flags += "" if args.pin_heads else " --no-pin"
    flags += f" --builders {args.builders}" if args.builders != "third" else ""
    for seed, outcome in failures:
        others = [check for check in outcome.failed_checks if check != outcome.first_violation.kind]
        print(
            f"seed={seed} {outcome.first_violation}" + (f" (also: {','.join(others)})" if others else "")
            + f" [{outcome.plan.describe()}] replay: .venv/bin/python scripts/simulate.py --seed {seed}{flags} --verbose"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
