"""`log-monitor`: watch the verdict log's heads on every node, and say what cannot be true
(docs/verdict-log.md).

Each poll asks every node for its head (`GET /log/head`) and checks, from the network's keys
alone (client/logproofs.py):

- each head is co-signed by 2f+1 nodes: a node that serves one the others did not sign is named;
- every two heads are one history: two of one size have one root, and the larger extends the
  smaller by the consistency proof the larger's node serves (or, if it serves none, any node
  that holds as many verdicts: the proof is checked against both heads, whoever serves it);
- each node's head extends the one it served at the last poll.

Two co-signed heads that are not one history would take more than f faulty nodes: the report
holds both, and what signed them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field

import aiohttp

from client.logproofs import Head, LogProofError, check_consistency, check_head
from shared.cli import load_config_or_report
from shared.config import NetworkConfig

TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_ANSWER_BYTES = 1 << 20


@dataclass
class Monitor:
    config: NetworkConfig
    seen: dict[int, Head] = field(default_factory=dict)  # each node's head at the last poll

    async def poll(self, session: aiohttp.ClientSession) -> list[str]:
        """One round over every node: what cannot be true, one line each."""
        problems: list[str] = []
        heads: dict[int, Head] = {}
        for node in self.config.nodes:
            try:
                heads[node.id] = check_head(await self._get(session, node.id, "/log/head"), self.config)
            except LogProofError as error:
                problems.append(f"node {node.id} serves a head that is not the network's: {error.reason}")
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                print(f"node {node.id}: no head ({type(error).__name__}: {error})"[:300], file=sys.stderr)
        for node_id, head in heads.items():
            before = self.seen.get(node_id)
            if before is not None:
                problem = await self._one_history(session, node_id, before, head, heads, problems)
                if problem:
                    problems.append(f"node {node_id}'s head does not extend the one it served before: {problem}")
        ordered = sorted(heads.items(), key=lambda item: item[1].size)
        for index, (small_node, small) in enumerate(ordered):
            for large_node, large in ordered[index + 1:]:
                problem = await self._one_history(session, large_node, small, large, heads, problems)
                if problem:
                    problems.append(f"nodes {small_node} and {large_node} serve heads of one log that cannot both"
                                    f" be true: {problem} ({small.line()}; {large.line()})")
        self.seen.update(heads)
        return list(dict.fromkeys(problems))  # a node named once, however many pairs it was asked for

    async def _one_history(self, session: aiohttp.ClientSession, node_id: int, old: Head, new: Head,
                           heads: dict[int, Head], problems: list[str]) -> str | None:
        """Why heads `old` and `new` cannot both be true, or None. Any node that holds the larger
        tree can prove that it extends the smaller: the proof is checked against both co-signed
        heads, so it matters not whose it is. `node_id`'s is asked first, then the others'. A
        node that serves a proof that does not check is named in `problems`; one that serves
        none (down, or still indexing its log: 503) is silent, not a contradiction, and the pair
        is checked again at the next poll if no node proves it now."""
        if new.size < old.size:
            return f"it shrank from {old.size} verdicts to {new.size}"
        if new.size == old.size:
            return None if new.root == old.root else f"two roots for {new.size} verdicts"
        provers = [node_id, *(other for other, head in heads.items() if other != node_id and head.size >= new.size)]
        wrong: dict[int, str] = {}
        silent: list[str] = []
        for prover in provers:
            try:
                proof = await self._get(session, prover, f"/log/consistency?first={old.size}&second={new.size}")
                check_consistency(proof, old, new)
            except LogProofError as error:
                wrong[prover] = error.reason
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                silent.append(f"node {prover}: {type(error).__name__}: {error}"[:200])
                continue
            problems.extend(f"node {other} serves a consistency proof that does not check, where node {prover}'s"
                            f" does: {reason}" for other, reason in wrong.items())
            return None
        if wrong:
            return next(iter(wrong.values()))
        print(f"no node proves now that the head of {new.size} verdicts extends the head of {old.size}"
              f" ({'; '.join(silent)}): checked again at the next poll", file=sys.stderr)
        return None

    async def _get(self, session: aiohttp.ClientSession, node_id: int, path: str):
        async with session.get(self.config.node(node_id).url(path), timeout=TIMEOUT) as response:
            if response.status != 200:
                raise ValueError(f"{path}: HTTP {response.status}")
            body = await response.content.read(MAX_ANSWER_BYTES + 1)
            if len(body) > MAX_ANSWER_BYTES:
                raise ValueError(f"{path}: answer over {MAX_ANSWER_BYTES} bytes")
            return json.loads(body)


async def _watch(config: NetworkConfig, once: bool, interval_s: float) -> int:
    monitor, found = Monitor(config), False
    connector = aiohttp.TCPConnector(ssl=config.node_ssl())
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            problems = await monitor.poll(session)
            for problem in problems:
                print(problem)
            found = found or bool(problems)
            if once:
                if not problems:
                    shown = "; ".join(f"node {node} {head.size} verdicts at checkpoint {head.seq}"
                                      for node, head in sorted(monitor.seen.items()))
                    print(f"one history: {shown or 'no node served a head'}")
                return 1 if found else 0
            await asyncio.sleep(interval_s)


def main(argv: list[str], prog: str = "log-monitor") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Watch every node's verdict log heads; print any"
                                     " two that cannot both be true, or one the network did not co-sign.")
    parser.add_argument("--config", required=True, help="network configuration YAML holding the public keys")
    parser.add_argument("--once", action="store_true", help="one poll; exit 1 if anything cannot be true")
    parser.add_argument("--interval-s", type=float, default=30.0, help="seconds between polls (default 30)")
    args = parser.parse_args(argv)
    if args.interval_s <= 0:
        parser.error("--interval-s must be positive")
    config = load_config_or_report(args.config, read_secrets=False)
    if config is None:
        return 2
    return asyncio.run(_watch(config, args.once, args.interval_s))
