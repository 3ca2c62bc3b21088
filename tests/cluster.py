"""An in-memory PBFT cluster for core tests: real replicas, real signatures.

Messages travel through a FIFO the test controls: it can deliver all,
hold some back, reorder or drop them, and inject forged ones. Builds are
simulated by a function of the operation, reported back in start order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

from pbft.crypto import Ed25519Authenticator, generate_private_key
from node.storage import NodeStore
from pbft.effects import Broadcast, Execute, KeepStableProof, ResendReply, SendReply, SendTo, ServeFetch, ServeVotes, Store
from pbft.ledger import MemoryLedger
from pbft.messages import Message, Operation, Reply, Request, Result, ResultVote, signed
from pbft.replica import Replica, ReplicaSettings

CLIENT = "client"


@lru_cache(maxsize=None)
def keys(count: int = 4):
    """Key pairs for `count` nodes and one client, made once per test run."""
    return [generate_private_key() for _ in range(count)], generate_private_key()


def authenticator(node_keys, client_key, private_key) -> Ed25519Authenticator:
    return Ed25519Authenticator(
        private_key,
        {i: key.public_key() for i, key in enumerate(node_keys)},
        {CLIENT: client_key.public_key()},
    )


def no_artifacts(node: int, operation: Operation) -> Mapping[str, str]:
    return {}


def default_build(operation: Operation) -> Result:
    if operation.branch == "master":
        return Result("success", 0, "a" * 40)
    return Result("failure", 3, "b" * 40)


@dataclass
class Cluster:
    n: int = 4
    f: int = 1
    settings: dict = field(default_factory=dict)
    build: Callable[[Operation], Result] = default_build
    # The per-file digests each node's build found (node, operation -> path -> "sha256:<hex>"),
    # which a node with the network's builder id signs the provenance of.
    artifact_files: Callable[[int, Operation], Mapping[str, str]] = no_artifacts
    store_dir: Path | None = None  # persist every replica's steps in SQLite, as nodes do

    def __post_init__(self) -> None:
        self.node_keys, self.client_key = keys(self.n)
        self.client_auth = authenticator(self.node_keys, self.client_key, self.client_key)
        self.replicas = [
            Replica(
                ReplicaSettings(node_id=i, n=self.n, f=self.f, **self.settings),
                authenticator(self.node_keys, self.client_key, self.node_keys[i]),
            )
            for i in range(self.n)
        ]
        self.network: deque[tuple[int, Message]] = deque()  # (destination, message)
        self.executed: list[list[Execute]] = [[] for _ in range(self.n)]
        self.replies: list[Reply] = []
        self.stored: list[list[Message]] = [[] for _ in range(self.n)]  # what each node persisted
        self.ledgers = [MemoryLedger() for _ in range(self.n)]  # what each node's store would answer a FETCH from
        self.drops: list[tuple[int, str]] = []
        self.crashed: set[int] = set()
        self.slow: set[int] = set()  # nodes whose builds do not finish until finish_builds()
        self.running: dict[int, list[tuple[int, Request]]] = {}
        self.stores = {}
        if self.store_dir is not None:
            self.stores = {i: NodeStore(self.store_dir / f"node-{i}.sqlite", n=self.n, f=self.f) for i in range(self.n)}
        self._timestamp = 0

    def request(self, branch: str = "master", timestamp: int | None = None) -> Request:
        if timestamp is None:
            self._timestamp += 1
            timestamp = self._timestamp
        return signed(Request(CLIENT, timestamp, Operation("example", branch)), self.client_auth.sign)

    def deliver_to(self, node: int, message: Message) -> str | None:
        reason = self.replicas[node].receive(message)
        if reason is not None:
            self.drops.append((node, reason))
        self._collect(node)
        return reason

    def _collect(self, node: int) -> None:
        effects = self.replicas[node].take_effects()
        self.stored[node].extend(effect.message for effect in effects if isinstance(effect, Store))
        if node in self.stores and effects:
            self.stores[node].save(self.replicas[node].durable_state(), effects)
        for effect in effects:
            if isinstance(effect, Broadcast):
                for other in range(self.n):
                    if other != node:
                        self.network.append((other, effect.message))
            elif isinstance(effect, SendTo):
                self.network.append((effect.node, effect.message))
            elif isinstance(effect, SendReply):
                self.replies.append(effect.reply)
            elif isinstance(effect, ResendReply):
                key = (effect.client, effect.timestamp)
                self.replies += [r for r in self.replies if r.sender == node and (r.client, r.timestamp) == key][:1]
            elif isinstance(effect, ServeVotes):
                self.network.extend(
                    (effect.node, vote) for vote in self.stored[node]
                    if isinstance(vote, ResultVote) and vote.key in effect.keys and vote.sender != effect.node
                )
            elif isinstance(effect, KeepStableProof):
                self.ledgers[node].proofs[effect.seq] = effect.proof
            elif isinstance(effect, Execute):
                self.executed[node].append(effect)
                self.ledgers[node].batches[effect.seq] = effect.batch
                self.running.setdefault(node, []).extend((effect.seq, request) for request in effect.requests)
                if node not in self.slow:
                    self.finish_builds(node)
            elif isinstance(effect, ServeFetch):
                self.replicas[node].answer_fetch(effect.fetch, self.ledgers[node])
                self._collect(node)

    def finish_builds(self, node: int) -> None:
        """The builds `node` started report their results, in start order."""
        builds, self.running[node] = self.running.get(node, []), []
        for seq, request in builds:
            files = self.artifact_files(node, request.operation)
            self.replicas[node].execution_finished(request, self.build(request.operation), seq, files)
        self._collect(node)

    def run(self, keep: Callable[[int, Message], bool] = lambda node, message: True) -> None:
        """Deliver until the network is quiet; `keep` decides which messages survive."""
        while self.network:
            node, message = self.network.popleft()
            if node not in self.crashed and keep(node, message):
                self.deliver_to(node, message)

    def tick(self, now: float) -> None:
        """Advance every live replica's clock to `now`, then deliver what that caused."""
        for node in range(self.n):
            if node not in self.crashed:
                self.replicas[node].tick(now)
                self._collect(node)

    def send_results(self, now: float = 0.0) -> None:
        """Tick, which sends the RESULTs each node queued, and deliver until quiet; twice, for
        a relaying primary passes on at its next tick the RESULTs backups sent at theirs."""
        for _ in range(2):
            self.tick(now)
            self.run()

    def restart(self, node: int, now: float = 0.0) -> None:
        """Replace a crashed node's replica by one restored from its store, as a restarted process does:
        builds its killed process was running start again."""
        loaded = self.stores[node].load()
        self.replicas[node] = Replica.restore(
            self.replicas[node].settings, self.replicas[node].auth,
            loaded.state, loaded.messages, loaded.executed, now,
        )
        self.crashed.discard(node)
        self.running[node] = self.replicas[node].builds_to_rerun(loaded.unfinished)
        if node not in self.slow:
            self.finish_builds(node)
        self._collect(node)

    def ledger(self, node: int) -> list[tuple[int, str]]:
        return [(effect.seq, effect.digest) for effect in self.executed[node]]

    def executed_seqs(self, node: int) -> list[int]:
        return [effect.seq for effect in self.executed[node]]

    def builds(self, node: int) -> list[Request]:
        return [request for effect in self.executed[node] for request in effect.requests]
