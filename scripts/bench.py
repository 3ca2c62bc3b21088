#!/usr/bin/env python3
"""Measure pbft-ci: what consensus adds to a build, and what each choice costs.

    .venv/bin/python scripts/bench.py                       # every scenario of the table below
    .venv/bin/python scripts/bench.py consensus throughput  # only these
    .venv/bin/python scripts/bench.py --quick               # a small version of everything (CI runs it)
    .venv/bin/python scripts/bench.py --json out.json       # also write the numbers as JSON
    .venv/bin/python scripts/bench.py consensus --profile prof/  # nodes under cProfile: prof/node-<id>.prof

Every scenario starts what it needs on loopback (fresh keys, free ports, a
temporary data directory) and stops it again. Figures are medians of
repeated runs with min and max; compared commands alternate their order each
round, so a noisy machine shows as a wide range, not a wrong ratio. --quick
numbers only show that the scenarios still run.

Scenarios (default: all but real-project, caches, large-repo, codec, first-verdict, reconfigure, cost, frames
and log-proofs):

  consensus   n = 4, 7, 10, 16 nodes with the test-only instant executor
              (node/instant.py); p50 and p99 of one request at a time, from
              signing it to the client accepting f+1 matching replies.
  relay       n = 4, 7, 10, 16, instant builds: consensus p50 with votes
              all-to-all vs relayed through the primary (protocol.
              relay_votes), alternating rounds on fresh networks.
  throughput  n = 4, instant builds: accepted requests per second with 1, 8,
              64 and 256 requests in flight.
  idle        n = 4, instant builds: the first request after --idle-s of
              silence vs a warm one.
  failover    n = 4, instant builds: the primary killed, then one request;
              a client that follows its links (sends to all nodes once the
              primary's link is down) vs one that only retransmits; and in
              view 1, a client that had replies there vs one restarted just
              before the kill.
  memory      n = 4, instant builds: each node's RSS after 1,000 and after
              10,000 requests.
  build       the example project through pbft-ci (webhook -> verdict) vs a
              plain `git clone && docker run` of its spec vs four plain runs
              at once; each node's overhead per build (its build duration
              less the time the build's own commands ran); then the same
              project built from a Dockerfile, against plain `git clone &&
              docker build && docker run`, by every node and with
              `builders: f+1` (two of the four nodes build it).
  concurrent  20 webhooks at once (10 master, 10 feature) vs 20 in a row.
  burst       30 webhooks at once for a repository whose 20 s builds run two
              at a time per node (repositories[].max_concurrent): every
              verdict, the wait for a build slot, and the time to the last
              verdict vs the same builds one after another (about 15 min).
  durable     the node's store: saves per second with SQLite
              synchronous=FULL (what nodes use) vs NORMAL, in --dir.
  restart     a node's restart (load its store, restore the replica) after
              5,000 and 40,000 builds of one client, in --dir: what is live
              costs, not the history.
  real-project  like build, for a real test suite (harness/real_project.py:
              more-itertools, 660-odd pytest tests). Needs the image
              (scripts/build-debian-image.sh) and, once, PyPI.
  caches      build caches on a simulated dependency install: no cache, a
              cold cache (miss, save), a warm one (hit).
  large-repo  like build, for a repository of 30,000 files and 224 MB in one
              commit (made by the bench): getting the tree to the build.
  codec       the message codec's CPU for one request's frames at n = 4,
              replayed from recorded frames; --tree DIR measures another
              checkout's codec alongside (e.g. a `git worktree` of an older
              commit), --instructions counts instructions with valgrind.
  reconfigure  n = 4, instant builds, one owner: a signed change of the
              network document (a build limit) submitted while builds are
              asked for one at a time; the time until every node runs it, to
              its verdict, and the builds' latency meanwhile vs before.
  cost        CPU seconds and peak memory of every node's build containers per
              verdict (the engine's cgroup figures), against one plain run of
              the same spec: the example project, a build that only computes,
              and pg8000 with a PostgreSQL service when its images are there
              (also its time to verdict).
  first-verdict  a newcomer's first hour: `git clone` of this checkout to the
              README's first webhook answered, with its commands alone
              (./startNetwork.sh sets the clone up), the engine and images
              present; each phase's seconds.
  frames      no network: the largest VIEW-CHANGE and NEW-VIEW at n = 4, 7,
              16 for batches of 1, 32 and 64 requests, with and without their
              verdict proofs, against the largest frame a node takes from a peer.
  log-proofs  no network: a verdict log of --leaves verdicts in a node's
              store; CPU of its proofs from the kept subtrees vs from every
              leaf, and of growing the subtrees.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from bench import (  # noqa: E402
    builds, burst, caches, codec, cost, durable, firstverdict, frames, largerepo, logproofs, protocol, reconfigure,
    restart,
)
from bench.targets import targets_table  # noqa: E402

SCENARIOS = {
    "consensus": (protocol.consensus, protocol.consensus_table),
    "relay": (protocol.relay, protocol.relay_table),
    "throughput": (protocol.throughput, protocol.throughput_table),
    "idle": (protocol.idle, protocol.idle_table),
    "failover": (protocol.failover, protocol.failover_table),
    "memory": (protocol.memory, protocol.memory_table),
    "build": (builds.build, builds.compare_table),
    "concurrent": (builds.concurrent, builds.concurrent_table),
    "burst": (burst.burst, burst.burst_table),
    "durable": (durable.durable, durable.durable_table),
    "restart": (restart.restart, restart.restart_table),
    "real-project": (builds.real_project, builds.compare_table),
    "caches": (caches.caches, caches.caches_table),
    "large-repo": (largerepo.large_repo, builds.compare_table),
    "codec": (codec.codec, codec.codec_table),
    "first-verdict": (firstverdict.first_verdict, firstverdict.first_verdict_table),
    "reconfigure": (reconfigure.reconfigure, reconfigure.reconfigure_table),
    "cost": (cost.cost, cost.cost_table),
    "frames": (frames.frames, frames.frames_table),
    "log-proofs": (logproofs.log_proofs, logproofs.log_proofs_table),
}
DEFAULT = (
    "consensus", "relay", "throughput", "idle", "failover", "memory", "build", "concurrent", "durable", "restart",
)


def stop_on_sigterm(signum: int, frame: object) -> None:
    """A terminated bench stops the networks it started: the exception runs each scenario's
    clean-up on its way out, as Ctrl-C does."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenarios", nargs="*", metavar="scenario",
                        help=f"what to measure: {', '.join(SCENARIOS)} (default: {' '.join(DEFAULT)})")
    parser.add_argument("--quick", action="store_true", help="a small version of each scenario; its numbers are noisy")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of each compared command or case (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=200,
                        help="consensus: requests measured at each network size (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N",
                        help="consensus: only these network sizes, of 4, 7, 10 and 16 (default: all four)")
    parser.add_argument("--duration-s", type=float, default=10.0,
                        help="throughput: seconds each in-flight count runs (default: %(default)s)")
    parser.add_argument("--idle-s", type=float, default=60.0,
                        help="idle: seconds of silence before the measured request (default: %(default)s)")
    parser.add_argument("--saves", type=int, default=1000, help="durable: saves per round and mode (default: %(default)s)")
    parser.add_argument("--dir", default=str(REPO_ROOT / "data"),
                        help="durable, restart, log-proofs: where the scratch databases go (default: %(default)s)")
    parser.add_argument("--leaves", type=int, default=1_000_000,
                        help="log-proofs: verdicts in the log (default: %(default)s)")
    parser.add_argument("--files", type=int, default=20000,
                        help="caches: files the simulated dependency install writes (default: %(default)s)")
    parser.add_argument("--compile-mb", type=int, default=0,
                        help="caches: MB hashed per 100 files, the install's CPU work (default: %(default)s)")
    parser.add_argument("--tree", action="append", default=[], metavar="DIR",
                        help="codec: also measure the checkout in DIR (repeatable)")
    parser.add_argument("--instructions", action="store_true",
                        help="codec: also count instructions per request with valgrind's callgrind")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="consensus, throughput, idle, memory: run the nodes under cProfile, timed by CPU, "
                             "writing DIR/node-<id>.prof (later runs overwrite earlier ones)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if min(args.saves, args.rounds, args.requests) < 1 or args.duration_s <= 0 or args.idle_s < 0:
        parser.error("--saves, --rounds, --requests and --duration-s must be positive")
    if args.sizes and not set(args.sizes) <= {4, 7, 10, 16}:
        parser.error("--sizes takes network sizes of 4, 7, 10 and 16")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    reports = []
    for name in args.scenarios or DEFAULT:
        run, table = SCENARIOS[name]
        started_s = time.perf_counter()
        report = run(args)
        report["elapsed_s"] = round(time.perf_counter() - started_s, 1)
        reports.append(report)
        print(table(report) + "\n", flush=True)
        if args.json:
            # Written after every scenario, so a long run that fails late keeps what it measured.
            Path(args.json).write_text(json.dumps({"quick": args.quick, "scenarios": reports}, indent=2) + "\n")
    targets = targets_table(reports, args.quick)
    if targets:
        print(targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
