"""The `restart` scenario: what a node's restart costs against the length of its history.

It writes a store the way a node does after H builds of one client (each: its
ledger entry, four RESULT votes, the verdict and the reply), with the client
table's floor where `max_requests_per_client` (4,096) puts it, then times
`NodeStore.load` and `Replica.restore` on it, cold (a fresh connection). A
restart should cost what is live (the builds above the floor), not H.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.stats import summarize
from node.storage import NodeStore
from pbft.effects import Execute, RecordVerdict, SendReply, Store
from pbft.build import Operation, Result
from pbft.messages import Reply, Request, ResultVote, batch_digest
from pbft.replica import Replica, ReplicaSettings
from pbft.durable import DurableState
from pbft.sim.auth import SimKeys

HISTORIES = (5_000, 40_000)
PASSED = Result("success", 0, "a" * 40)
SIG = "0" * 128  # the store keeps what it is given; restore takes stored messages as verified


def write_history(path: Path, settings: ReplicaSettings, builds: int) -> None:
    store = NodeStore(path, n=settings.n, f=settings.f)
    effects = []
    for timestamp in range(1, builds + 1):
        request = Request("client", timestamp, Operation("example", "master"), SIG)
        effects += [
            Execute(0, timestamp, batch_digest((request,)), (request,), (request,), "0" * 64),
            SendReply(Reply(0, timestamp, "client", settings.node_id, PASSED, SIG)),
            *(Store(ResultVote(timestamp, "client", timestamp, PASSED, node, SIG)) for node in range(settings.n)),
            RecordVerdict(timestamp, "client", timestamp, "certified", PASSED.agreed()),
        ]
        if timestamp % 1000 == 0 or timestamp == builds:
            floor = max(-1, timestamp - settings.max_requests_per_client)
            state = DurableState(0, False, 0, timestamp, timestamp, 0, 0, "0" * 64, (), {"client": floor},
                                 {"client": timestamp})
            store.save(state, effects, sync=False)
            effects = []
    store.close()


def time_restart(path: Path, settings: ReplicaSettings) -> tuple[float, int]:
    """Seconds to load the store and restore the replica from it, and how many builds it holds after."""
    auth = SimKeys.generate(random.Random(1), settings.n, ["client"]).for_node(settings.node_id)
    started_s = time.perf_counter()
    store = NodeStore(path, n=settings.n, f=settings.f)
    loaded = store.load()
    replica = Replica(settings, auth).restore(loaded)
    elapsed_s = time.perf_counter() - started_s
    store.close()
    return elapsed_s, len(replica.clients.executed)


def restart(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    histories = (2_000, 8_000) if args.quick else HISTORIES
    settings = ReplicaSettings(node_id=0, n=4, f=1)
    results = {}
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-restart-", dir=args.dir) as scratch:
        for builds in histories:
            path = Path(scratch) / f"node-{builds}.sqlite"
            write_history(path, settings, builds)
            timings, kept = [], 0
            for _ in range(rounds):
                elapsed_s, kept = time_restart(path, settings)
                timings.append(elapsed_s)
            results[str(builds)] = {"restart_s": summarize(timings, 3), "builds_kept": kept}
    first, last = (results[str(builds)]["restart_s"]["median"] for builds in (histories[0], histories[-1]))
    return {
        "scenario": "restart",
        "rounds": rounds,
        "max_requests_per_client": settings.max_requests_per_client,
        "results": results,
        "longest_over_shortest": round(last / first, 2) if first else None,
    }


def restart_table(report: dict) -> str:
    rows = [
        f"restart: a node's store after H builds of one client (4 votes, a verdict and a reply each), "
        f"load and restore, cold; max_requests_per_client {report['max_requests_per_client']}, "
        f"{report['rounds']} round(s)",
        "",
        "| builds in the store | restart median s | min | max | builds the replica keeps |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for builds, result in report["results"].items():
        timing = result["restart_s"]
        rows.append(f"| {int(builds):,} | {timing['median']:.3f} | {timing['min']:.3f} | {timing['max']:.3f} "
                    f"| {result['builds_kept']:,} |")
    rows += ["", f"The longest history restarts in {report['longest_over_shortest']}x the time of the shortest."]
    return "\n".join(rows)
