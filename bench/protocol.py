"""Scenarios of the protocol alone: nodes with the test-only instant executor, no Docker.

With builds that answer at once, a request's time from signing to its
accepted verdict is the whole of what consensus adds to a build: the
request, the three phases, every node's reply and the client's check of
f+1 of them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from bench.network import NodeProcesses, client_of, settle, start_nodes, submit_accepted
from bench.stats import alternating, load_average, percentile, ratio, summarize
from client.service import ClientService
from shared.config import ProtocolConfig
from shared.crypto import Ed25519Authenticator, generate_private_key, verify_bytes
from pbft.encoding import canonical
from pbft.messages import Commit, signed

T = TypeVar("T")
CONSENSUS_SIZES = (4, 7, 10, 16)
# --quick: the smallest network and the smallest with f = 2, the sizes the code paths differ by;
# 10 and 16 nodes cost the quick run (CI's) most of its time and show nothing more about it.
QUICK_CONSENSUS_SIZES = (4, 7)
IN_FLIGHT = (1, 8, 64, 256)
RELAY_SIZES = (4, 7, 10, 16)
VOTING = {"all-to-all": False, "relayed": True}  # protocol.relay_votes
# Series of the nodes' GET /metrics: seconds their event loops waited on fsynced saves; signatures checked.
SYNCED_SAVE_SECONDS = ("pbft_store_save_seconds_sum", (("synced", "true"),))
SIGNATURES_CHECKED = ("pbft_signatures_checked_total", ())


async def sequential_latencies_ms(service, count: int, quorum_ms: list[float] | None = None) -> list[float]:
    """`count` requests one at a time: each one's ms to its verdict; `quorum_ms` gets each one's
    ms to its first f+1 matching replies (client.verbs.submit: the verdict waits to settle)."""
    latencies = []
    for _ in range(count):
        elapsed_s, verdict = await submit_accepted(service)
        latencies.append(elapsed_s * 1000)
        if quorum_ms is not None:
            quorum_ms.append(verdict.outcome.quorum_ms)
    return latencies


async def keep_in_flight(service, in_flight: int, *, total: int | None = None, duration_s: float | None = None) -> int:
    """Keep `in_flight` requests outstanding until `total` were accepted or `duration_s` passed.

    Returns how many were accepted. Each worker submits its next request as
    soon as its last one is accepted, as that many independent webhooks would.
    """
    started = accepted = 0
    stop_at_s = None if duration_s is None else time.monotonic() + duration_s

    async def worker() -> None:
        nonlocal started, accepted
        while (total is None or started < total) and (stop_at_s is None or time.monotonic() < stop_at_s):
            started += 1
            await submit_accepted(service)
            accepted += 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return accepted


def on_network(args, n: int, measure: Callable[[NodeProcesses, ClientService], Awaitable[T]], *,
               settled: bool = True, protocol: dict | None = None, follow_links: bool = True,
               edit: Callable[[dict], None] | None = None) -> T:
    """Start `n` nodes with instant builds and a client, await `measure(nodes, service)`, stop them all.

    `settled`: a few requests first, so that links are up and code paths warm. `protocol`:
    settings of the network's protocol section. `follow_links`: see `bench.network.client_of`.
    `edit`: see `bench.network.start_nodes`.
    """
    with tempfile.TemporaryDirectory(prefix=f"pbft-ci-bench-n{n}-") as scratch:
        nodes = start_nodes(Path(scratch), n, instant_builds=True, profile_dir=args.profile, protocol=protocol,
                            edit=edit)
        try:
            async def run() -> T:
                async with client_of(nodes.config, follow_links=follow_links) as service:
                    if settled:
                        await settle(service)
                    return await measure(nodes, service)

            return asyncio.run(run())
        finally:
            nodes.stop()


async def latencies_and_cpu(nodes: NodeProcesses, service, count: int) -> tuple[list[float], list[float], float, float, float]:
    """`count` requests one at a time: their latencies to the verdict and to the first f+1
    matching replies, the CPU ms all nodes spent per request, the ms a node's event loop waited
    for fsynced saves per request (the mean of the nodes), and the signatures all nodes checked
    per request."""
    cpu_before_s = nodes.cpu_s()
    synced_before_s, checked_before = nodes.metric_sums(SYNCED_SAVE_SECONDS, SIGNATURES_CHECKED)
    quorum_ms: list[float] = []
    latencies = await sequential_latencies_ms(service, count, quorum_ms)
    cpu_ms = (nodes.cpu_s() - cpu_before_s) * 1000 / count
    synced_after_s, checked_after = nodes.metric_sums(SYNCED_SAVE_SECONDS, SIGNATURES_CHECKED)
    synced_ms = (synced_after_s - synced_before_s) * 1000 / count / len(nodes.processes)
    checks = (checked_after - checked_before) / count
    return latencies, quorum_ms, cpu_ms, synced_ms, checks


def signature_check_us(count: int = 2000) -> float:
    """CPU µs of one signature check as nodes make it (a COMMIT's canonical payload, then Ed25519),
    in this process: what the checks a request needs cost at the least. Each check is made
    anew: an authenticator remembers the signatures that held, its own among them, and
    answers those without checking (`pbft_signatures_checked` counts only real checks)."""
    key = generate_private_key()
    auth = Ed25519Authenticator(key, {0: key.public_key()}, {})
    commit = signed(Commit(0, 1, "0" * 64, 0), auth.sign)
    payload, public_key = commit.payload(), key.public_key()
    if not verify_bytes(public_key, canonical(payload), commit.sig):
        raise RuntimeError("the calibration's own signature does not hold")
    started_s = time.process_time()
    for _ in range(count):
        verify_bytes(public_key, canonical(payload), commit.sig)
    return (time.process_time() - started_s) * 1e6 / count


def consensus(args) -> dict:
    requests = 20 if args.quick else args.requests
    check_us = signature_check_us()
    sizes = {}
    for n in args.sizes or (QUICK_CONSENSUS_SIZES if args.quick else CONSENSUS_SIZES):
        latencies, quorum_ms, cpu_ms, synced_ms, checks = on_network(
            args, n, lambda nodes, service: latencies_and_cpu(nodes, service, requests))
        sizes[str(n)] = {
            "f": (n - 1) // 3,
            "requests": requests,
            "p50_ms": round(percentile(latencies, 0.5), 2),
            # The same requests to their first f+1 matching replies: the difference is what
            # waiting for the verdict to settle (2f+1, or disputed) costs.
            "f_plus_1_p50_ms": round(percentile(quorum_ms, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "min_ms": round(min(latencies), 2),
            "max_ms": round(max(latencies), 2),
            "node_cpu_ms_per_request": round(cpu_ms, 1),
            "synced_save_wait_ms_per_request": round(synced_ms, 1),
            "signature_checks_per_request": round(checks, 1),
            "signature_check_cpu_ms_per_request": round(checks * check_us / 1000, 1),
        }
    return {
        "scenario": "consensus", "data_dir": tempfile.gettempdir(), "cores": os.cpu_count(),
        "signature_check_us": round(check_us, 1),
        "load_average_at_end": load_average(), "results": sizes,
    }


def consensus_table(report: dict) -> str:
    rows = [
        "consensus: one request at a time, instant builds; signing a request to its accepted verdict; "
        f"node data in {report['data_dir']} (TMPDIR), {report['cores']} cores; "
        f"a signature check took {report['signature_check_us']:.0f} µs of CPU here",
        "",
        "| n | f | requests | p50 ms | p50 ms to f+1 replies | p99 ms | min ms | max ms | CPU ms per request, all nodes "
        "| signature checks per request, all nodes (their CPU ms) | ms a node waited on fsynced saves per request |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, result in report["results"].items():
        rows.append(f"| {n} | {result['f']} | {result['requests']} | {result['p50_ms']:.1f} "
                    f"| {result['f_plus_1_p50_ms']:.1f} | {result['p99_ms']:.1f} "
                    f"| {result['min_ms']:.1f} | {result['max_ms']:.1f} | {result['node_cpu_ms_per_request']:.1f} "
                    f"| {result['signature_checks_per_request']:.0f} ({result['signature_check_cpu_ms_per_request']:.1f}) "
                    f"| {result['synced_save_wait_ms_per_request']:.1f} |")
    return "\n".join(rows)


def relay(args) -> dict:
    """Consensus latency with votes all-to-all and relayed through the primary (protocol.relay_votes),
    alternating rounds on fresh networks at each size."""
    sizes = (7,) if args.quick else RELAY_SIZES
    rounds = 1 if args.quick else args.rounds
    per_round = 10 if args.quick else max(10, args.requests // rounds)
    results = {}
    for n in sizes:
        latencies: dict[str, list[float]] = {voting: [] for voting in VOTING}
        round_p50s: dict[str, list[float]] = {voting: [] for voting in VOTING}
        for _, voting in alternating(list(VOTING), rounds):
            measured = on_network(
                args, n, lambda nodes, service: sequential_latencies_ms(service, per_round),
                protocol={"relay_votes": VOTING[voting]},
            )
            latencies[voting] += measured
            round_p50s[voting].append(percentile(measured, 0.5))
        result = {
            voting: {
                "p50_ms": round(percentile(values, 0.5), 2),
                "p99_ms": round(percentile(values, 0.99), 2),
                "round_p50_ms": summarize(round_p50s[voting], 2),
            }
            for voting, values in latencies.items()
        }
        result["relayed_over_all_to_all"] = ratio(result["relayed"]["p50_ms"], result["all-to-all"]["p50_ms"])
        results[str(n)] = result
    return {
        "scenario": "relay", "rounds": rounds, "requests_per_round": per_round,
        "load_average_at_end": load_average(), "results": results,
    }


def relay_table(report: dict) -> str:
    rows = [
        f"relay: one request at a time, instant builds; p50 from signing to accepted verdict with votes "
        f"all-to-all vs relayed by the primary, {report['rounds']} alternating round(s) of "
        f"{report['requests_per_round']} requests on fresh networks",
        "",
        "| n | all-to-all p50 ms | relayed p50 ms | relayed / all-to-all | all-to-all p99 | relayed p99 "
        "| round p50s all-to-all | round p50s relayed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for n, result in report["results"].items():
        each, relayed = result["all-to-all"], result["relayed"]
        rows.append(
            f"| {n} | {each['p50_ms']:.1f} | {relayed['p50_ms']:.1f} | {result['relayed_over_all_to_all']} "
            f"| {each['p99_ms']:.1f} | {relayed['p99_ms']:.1f} "
            f"| {each['round_p50_ms']['min']:.1f}–{each['round_p50_ms']['max']:.1f} "
            f"| {relayed['round_p50_ms']['min']:.1f}–{relayed['round_p50_ms']['max']:.1f} |"
        )
    return "\n".join(rows)


def throughput(args) -> dict:
    duration_s = 2.0 if args.quick else args.duration_s
    rounds = 1 if args.quick else args.rounds
    rates: dict[str, list[float]] = {str(k): [] for k in IN_FLIGHT}
    # CPU ms per accepted request, of the four nodes together and of the client (this process).
    cpu_ms: dict[str, dict[str, list[float]]] = {name: {"nodes": [], "client": []} for name in rates}

    async def measure(nodes, service) -> None:
        for _, name in alternating(list(rates), rounds):
            started_s, nodes_cpu_s, client_cpu_s = time.perf_counter(), nodes.cpu_s(), time.process_time()
            accepted = await keep_in_flight(service, int(name), duration_s=duration_s)
            rates[name].append(accepted / (time.perf_counter() - started_s))
            cpu_ms[name]["nodes"].append((nodes.cpu_s() - nodes_cpu_s) * 1000 / max(accepted, 1))
            cpu_ms[name]["client"].append((time.process_time() - client_cpu_s) * 1000 / max(accepted, 1))

    on_network(args, 4, measure)
    return {
        "scenario": "throughput",
        "n": 4,
        "duration_s": duration_s,
        "rounds": rounds,
        "load_average_at_end": load_average(),
        "results": {name: summarize(values, 1) for name, values in rates.items()},
        "cpu_ms_per_request": {
            name: {who: round(statistics.median(values), 2) for who, values in split.items()}
            for name, split in cpu_ms.items()
        },
    }


def throughput_table(report: dict) -> str:
    rows = [
        f"throughput: n = 4, instant builds, signatures verified; accepted requests per second over "
        f"{report['duration_s']:g} s, {report['rounds']} round(s)",
        "",
        "| in flight | median req/s | min | max | CPU ms per request, all nodes | CPU ms per request, client |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in report["results"].items():
        cpu = report["cpu_ms_per_request"][name]
        rows.append(f"| {name} | {result['median']:.0f} | {result['min']:.0f} | {result['max']:.0f} "
                    f"| {cpu['nodes']:.2f} | {cpu['client']:.2f} |")
    return "\n".join(rows)


def idle(args) -> dict:
    idle_s = 5.0 if args.quick else args.idle_s
    rounds = 1 if args.quick else args.rounds
    warm_ms: list[float] = []
    after_idle_ms: list[float] = []

    async def measure(nodes, service) -> None:
        for _ in range(rounds):
            warm_ms.append(statistics.median(await sequential_latencies_ms(service, 5)))
            await asyncio.sleep(idle_s)
            after_idle_ms.extend(await sequential_latencies_ms(service, 1))

    on_network(args, 4, measure)
    warm, after_idle = summarize(warm_ms, 2), summarize(after_idle_ms, 2)
    return {
        "scenario": "idle",
        "idle_s": idle_s,
        "rounds": rounds,
        "results": {"warm_ms": warm, "after_idle_ms": after_idle},
        "after_idle_over_warm": ratio(after_idle["median"], warm["median"]),
    }


def idle_table(report: dict) -> str:
    results = report["results"]
    rows = [
        f"idle: n = 4, instant builds; the first request after {report['idle_s']:g} s of silence vs a warm one "
        f"(the median of 5 just before), {report['rounds']} round(s)",
        "",
        "| request | median ms | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, label in (("warm_ms", "warm"), ("after_idle_ms", "first after idle")):
        result = results[name]
        rows.append(f"| {label} | {result['median']:.1f} | {result['min']:.1f} | {result['max']:.1f} |")
    rows += ["", f"The first request after idle takes {report['after_idle_over_warm']}x a warm one."]
    return "\n".join(rows)


# How the client learns that the primary is gone: from its link going down, or only when a
# request's retransmission period passes without a quorum (ClientOptions(follow_links=...)).
FAILOVER_CLIENTS = {"follows links": True, "retransmits only": False}
# On a network in view 1 (its first primary was killed, and is back): a client that had
# replies in view 1, and one restarted just before the kill, which knows the view only from
# what the nodes say on its HELLO (CURRENT-VIEW).
VIEW_ONE_CLIENTS = {"knew view 1": False, "restarted, view 1": True}
# How long a restarted client waits for its links before the kill, at the most.
LINKS_UP_S = 10.0
# The backups' view-change timeout and the client's retransmission period in a --quick
# failover run (the defaults are 4 s and 5 s).
QUICK_FAILOVER_TIMEOUTS = {"view_change_timeout_s": 1.0, "client_retransmit_s": 2.0}


def failover(args) -> dict:
    """The primary killed (SIGKILL) on a warm network, then one request: signing it to its accepted
    verdict, alternating rounds on fresh networks. In view 0: a client that follows its links
    and one that only retransmits. In view 1: a client that had replies there, and one restarted
    just before the kill. Backups whose link to the killed primary stays down suspect it as the
    request reaches them (`pbft.reach`); a client that only retransmits reaches them after
    client_retransmit_s."""
    rounds = 1 if args.quick else args.rounds
    # A quick run waits out shorter timeouts: its six view changes are most of its time.
    protocol = QUICK_FAILOVER_TIMEOUTS if args.quick else None
    names = [*FAILOVER_CLIENTS, *VIEW_ONE_CLIENTS]
    results: dict[str, list[float]] = {name: [] for name in names}

    async def kill_primary_and_submit(nodes, service, primary: int) -> float:
        process = nodes.processes[primary]
        process.kill()
        process.wait()
        await asyncio.sleep(0.5)  # the client's link to it is down by now, as a user would find it
        elapsed_s, _ = await submit_accepted(service)
        return elapsed_s * 1000

    async def in_view_0(nodes, service) -> float:
        return await kill_primary_and_submit(nodes, service, service.core.primary)

    def in_view_1(restarted: bool):
        async def measure(nodes, service) -> float:
            # Move the network to view 1: node 0, its primary, killed; a request through the
            # view change; node 0 started again, and a request in view 1.
            await kill_primary_and_submit(nodes, service, 0)
            await asyncio.to_thread(nodes.restart, 0)
            await submit_accepted(service)
            assert service.core.primary == 1, service.core.view
            if not restarted:
                return await kill_primary_and_submit(nodes, service, 1)
            scratch = Path(tempfile.mkdtemp(prefix="pbft-ci-bench-client-"))
            try:
                async with client_of(nodes.config, data_dir=scratch) as fresh:
                    deadline_s = time.monotonic() + LINKS_UP_S
                    while len(fresh.connected()) < len(nodes.processes) and time.monotonic() < deadline_s:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.1)  # what the nodes say on its HELLO, if anything
                    return await kill_primary_and_submit(nodes, fresh, 1)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return measure

    for _, name in alternating(names, rounds):
        if name in FAILOVER_CLIENTS:
            results[name].append(on_network(args, 4, in_view_0, follow_links=FAILOVER_CLIENTS[name],
                                            protocol=protocol))
        else:
            results[name].append(on_network(args, 4, in_view_1(VIEW_ONE_CLIENTS[name]), protocol=protocol))
    summaries = {name: summarize(values, 0) for name, values in results.items()}
    defaults = ProtocolConfig(**(protocol or {}))
    return {
        "scenario": "failover",
        "rounds": rounds,
        "view_change_timeout_s": defaults.view_change_timeout_s,
        "client_retransmit_s": defaults.client_retransmit_s,
        "results": summaries,
        "follows_links_over_retransmits_only": ratio(
            summaries["follows links"]["median"], summaries["retransmits only"]["median"]),
        "restarted_over_knew_the_view": ratio(
            summaries["restarted, view 1"]["median"], summaries["knew view 1"]["median"]),
    }


def failover_table(report: dict) -> str:
    rows = [
        f"failover: n = 4, instant builds; the primary killed, then one request, signing it to its verdict; "
        f"view_change_timeout_s {report['view_change_timeout_s']:g}, client_retransmit_s "
        f"{report['client_retransmit_s']:g}; {report['rounds']} round(s), each on a fresh network",
        "",
        "| client | median ms | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, result in report["results"].items():
        rows.append(f"| {name} | {result['median']:.0f} | {result['min']:.0f} | {result['max']:.0f} |")
    rows += ["", f"Following the links takes {report['follows_links_over_retransmits_only']}x the time of "
                 "retransmitting only.",
             f"A client restarted just before the kill takes {report['restarted_over_knew_the_view']}x the time "
             "of one that knew the view."]
    return "\n".join(rows)


def memory(args) -> dict:
    first, second = (200, 1000) if args.quick else (1000, 10000)
    in_flight = 64
    samples: dict[int, dict[int, int]] = {}

    async def measure(nodes, service) -> None:
        done = 0
        for mark in (first, second):
            await keep_in_flight(service, in_flight, total=mark - done)
            done = mark
            # Replies reach the client before the slowest node has stored its own.
            await asyncio.sleep(1.0)
            samples[mark] = nodes.rss_kib()

    on_network(args, 4, measure, settled=False)
    per_node = {
        str(node_id): {
            "rss_mib": [round(samples[mark][node_id] / 1024, 1) for mark in (first, second)],
            "growth": round(samples[second][node_id] / samples[first][node_id] - 1, 3),
        }
        for node_id in sorted(samples[first])
    }
    return {
        "scenario": "memory",
        "requests": [first, second],
        "in_flight": in_flight,
        "results": per_node,
        "max_growth": max(node["growth"] for node in per_node.values()),
    }


def memory_table(report: dict) -> str:
    first, second = report["requests"]
    rows = [
        f"memory: n = 4, instant builds, {report['in_flight']} requests in flight; "
        f"each node's resident set after {first} and after {second} requests",
        "",
        f"| node | RSS MiB at {first} | RSS MiB at {second} | growth |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for node_id, result in report["results"].items():
        at_first, at_second = result["rss_mib"]
        rows.append(f"| {node_id} | {at_first:.1f} | {at_second:.1f} | {result['growth']:+.1%} |")
    rows += ["", f"Largest growth: {report['max_growth']:+.1%}."]
    return "\n".join(rows)
