"""`reconfigure`: a change of the network document through the order, on four nodes with instant
builds and one owner. Per round, a change of a build limit is signed and submitted while builds
are asked for one at a time; measured are the time from submitting the signed change to every
node running its document (GET /network/document, polled), the time to the change's accepted
verdict, and the builds' latency while the change is applied, against the same builds just
before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time

import aiohttp

from bench.network import NodeProcesses
from bench.protocol import on_network, sequential_latencies_ms
from bench.stats import ratio, summarize
from client.outcome import Accepted
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation
from pbft.encoding import canonical
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from shared.crypto import generate_private_key, public_key_hex, sign_bytes

OWNER = "bench"
POLL_S = 0.002
BASELINE_REQUESTS = 10


async def documents(session: aiohttp.ClientSession, nodes: NodeProcesses) -> list[str]:
    """The digest each node runs now."""
    digests = []
    for node in nodes.config.nodes:
        async with session.get(node.url("/network/document")) as response:
            digests.append((await response.json())["digest"])
    return digests


def reconfigure(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    owner = generate_private_key()
    apply_ms: list[float] = []
    verdict_ms: list[float] = []
    before_ms: list[float] = []
    during_ms: list[float] = []

    def with_owner(data: dict) -> None:
        data["owners"] = {"threshold": 1, "keys": [{"name": OWNER, "public_key": public_key_hex(owner)}]}

    async def measure(nodes: NodeProcesses, service) -> None:
        async with aiohttp.ClientSession() as session:
            for index in range(rounds):
                before_ms.extend(await sequential_latencies_ms(service, BASELINE_REQUESTS))
                async with session.get(nodes.config.node(0).url("/network/document")) as response:
                    document = (await response.json())["document"]
                wanted = {**document, "build": {**document.get("build", {}), "memory_mb": 512 + 64 * index}}
                unsigned = NetworkChange(document_digest(document), canonical(wanted).decode())
                change = dataclasses.replace(unsigned, signatures=(
                    OwnerSignature(OWNER, sign_bytes(owner, canonical(unsigned.signed_payload()))),))
                target = document_digest(wanted)
                started_s = time.perf_counter()
                submitted = asyncio.create_task(service.verbs.submit.wait(
                    Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=change)))

                async def builds_meanwhile() -> None:
                    while not submitted.done():
                        during_ms.extend(await sequential_latencies_ms(service, 1))

                building = asyncio.create_task(builds_meanwhile())
                while set(await documents(session, nodes)) != {target}:
                    await asyncio.sleep(POLL_S)
                apply_ms.append((time.perf_counter() - started_s) * 1000)
                verdict = await submitted
                if not isinstance(verdict.outcome, Accepted) or verdict.outcome.result.status != "success":
                    raise RuntimeError(f"the change was not applied: {verdict.outcome}")
                verdict_ms.append(verdict.elapsed_ms)
                await building

    on_network(args, 4, measure, edit=with_owner)
    before, during = summarize(before_ms, 2), summarize(during_ms or [float("nan")], 2)
    return {
        "scenario": "reconfigure",
        "rounds": rounds,
        "results": {"applied_everywhere_ms": summarize(apply_ms, 2), "change_verdict_ms": summarize(verdict_ms, 2),
                    "build_before_ms": before, "build_during_ms": during},
        "builds_during": len(during_ms),
        "during_over_before": ratio(statistics.median(during_ms), before["median"]) if during_ms else None,
    }


def reconfigure_table(report: dict) -> str:
    results = report["results"]
    rows = [
        f"reconfigure: n = 4, instant builds, one owner; a change of build.memory_mb per round, "
        f"{report['rounds']} round(s), builds asked for one at a time meanwhile ({report['builds_during']} in all)",
        "",
        "| measured | median ms | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, label in (("applied_everywhere_ms", "signed change submitted -> every node runs it"),
                        ("change_verdict_ms", "signed change submitted -> its accepted verdict"),
                        ("build_before_ms", "a build's verdict, just before"),
                        ("build_during_ms", "a build's verdict, while the change is applied")):
        result = results[name]
        rows.append(f"| {label} | {result['median']:.1f} | {result['min']:.1f} | {result['max']:.1f} |")
    if report["during_over_before"] is not None:
        rows += ["", f"While a change is applied a build's verdict takes {report['during_over_before']}x one before."]
    return "\n".join(rows)
