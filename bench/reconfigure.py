"""`reconfigure`: a change of the network document through the order, on four nodes with instant
builds and one owner. Per round, a change of a build limit is signed and submitted while builds
are asked for one at a time; measured are the time from submitting the signed change to every
node running its document (GET /network/document, polled), the time to the change's accepted
verdict, and the builds' latency while the change is applied, against the same builds just
before it. Then as many rounds of a change of the membership: node 1's key is replaced by a
next key its host made (scripts/network.py join --next), which takes the next epoch; applied
means every node runs the document in the new epoch (GET /status).
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
from shared.config_files import node_next_key_file
from shared.crypto import generate_private_key, public_key_hex, save_private_key, sign_bytes

OWNER = "bench"
POLL_S = 0.002
BASELINE_REQUESTS = 10


async def running(session: aiohttp.ClientSession, nodes: NodeProcesses) -> list[tuple[str, int]]:
    """The digest each node runs now, and its epoch."""
    ends = []
    for node in nodes.config.nodes:
        async with session.get(node.url("/status")) as response:
            status = await response.json()
        ends.append((status["network"]["digest"], status["epoch"]))
    return ends


def next_key_of(nodes: NodeProcesses, node_id: int) -> str:
    """A fresh next key on node `node_id`'s host, as `scripts/network.py join --next` makes it."""
    path = node_next_key_file(nodes.config.keys_dir, node_id)
    path.unlink(missing_ok=True)  # the one of the round before is the node's key by now
    key = generate_private_key()
    save_private_key(key, path)
    return public_key_hex(key)


def reconfigure(args) -> dict:
    rounds = 1 if args.quick else args.rounds
    owner = generate_private_key()
    measured: dict[str, list[float]] = {name: [] for name in RESULTS}

    def with_owner(data: dict) -> None:
        data["owners"] = {"threshold": 1, "keys": [{"name": OWNER, "public_key": public_key_hex(owner)}]}

    async def one_change(nodes: NodeProcesses, service, session: aiohttp.ClientSession, edit, kind: str) -> None:
        """Sign and submit the change `edit` makes of the running document, with builds meanwhile."""
        measured[f"{kind}_build_before_ms"].extend(await sequential_latencies_ms(service, BASELINE_REQUESTS))
        async with session.get(nodes.config.node(0).url("/network/document")) as response:
            document = (await response.json())["document"]
        wanted = edit(document)
        unsigned = NetworkChange(document_digest(document), canonical(wanted).decode())
        change = dataclasses.replace(unsigned, signatures=(
            OwnerSignature(OWNER, sign_bytes(owner, canonical(unsigned.signed_payload()))),))
        target = document_digest(wanted)
        _, epoch_before = (await running(session, nodes))[0]
        started_s = time.perf_counter()
        submitted = asyncio.create_task(service.verbs.submit.wait(
            Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=change)))

        async def builds_meanwhile() -> None:
            while not submitted.done():
                measured[f"{kind}_build_during_ms"].extend(await sequential_latencies_ms(service, 1))

        building = asyncio.create_task(builds_meanwhile())
        membership = kind == "membership"
        while not all(digest == target and (epoch > epoch_before or not membership)
                      for digest, epoch in await running(session, nodes)):
            await asyncio.sleep(POLL_S)
        measured[f"{kind}_applied_everywhere_ms"].append((time.perf_counter() - started_s) * 1000)
        verdict = await submitted
        if not isinstance(verdict.outcome, Accepted) or verdict.outcome.result.status != "success":
            raise RuntimeError(f"the change was not applied: {verdict.outcome}")
        measured[f"{kind}_change_verdict_ms"].append(verdict.elapsed_ms)
        await building

    async def measure(nodes: NodeProcesses, service) -> None:
        async with aiohttp.ClientSession() as session:
            for index in range(rounds):
                await one_change(nodes, service, session, lambda document: {
                    **document, "build": {**document.get("build", {}), "memory_mb": 512 + 64 * index}}, "limits")
            for _ in range(rounds):
                public_key = next_key_of(nodes, 1)
                await one_change(nodes, service, session, lambda document: {**document, "nodes": [
                    {**node, "public_key": public_key} if node["id"] == 1 else node for node in document["nodes"]]},
                    "membership")

    on_network(args, 4, measure, edit=with_owner)
    report = {"scenario": "reconfigure", "rounds": rounds, "results": {}}
    for kind in KINDS:
        before, during = measured[f"{kind}_build_before_ms"], measured[f"{kind}_build_during_ms"]
        report["results"].update({name: summarize(measured[name] or [float("nan")], 2)
                                  for name in RESULTS if name.startswith(kind)})
        report[f"{kind}_builds_during"] = len(during)
        report[f"{kind}_during_over_before"] = (ratio(statistics.median(during), statistics.median(before))
                                                if during else None)
    return report


KINDS = {"limits": "a change of build.memory_mb", "membership": "node 1's key replaced (a new epoch)"}
MEASURES = (("applied_everywhere_ms", "signed change submitted -> every node runs it"),
            ("change_verdict_ms", "signed change submitted -> its accepted verdict"),
            ("build_before_ms", "a build's verdict, just before"),
            ("build_during_ms", "a build's verdict, while the change is applied"))
RESULTS = tuple(f"{kind}_{name}" for kind in KINDS for name, _ in MEASURES)


def reconfigure_table(report: dict) -> str:
    results = report["results"]
    rows = [
        f"reconfigure: n = 4, instant builds, one owner; {report['rounds']} round(s) of each change, "
        "builds asked for one at a time meanwhile",
        "",
        "| change | measured | median ms | min | max |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for kind, what in KINDS.items():
        for name, label in MEASURES:
            result = results[f"{kind}_{name}"]
            rows.append(f"| {what} | {label} | {result['median']:.1f} | {result['min']:.1f} | {result['max']:.1f} |")
    for kind, what in KINDS.items():
        if report[f"{kind}_during_over_before"] is not None:
            rows += ["", f"{what}: while it is applied a build's verdict takes {report[f'{kind}_during_over_before']}x "
                         f"one before ({report[f'{kind}_builds_during']} builds)."]
    return "\n".join(rows)
