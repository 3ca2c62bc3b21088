"""An in-memory PBFT cluster for core tests: real replicas, real signatures,
and the interpreter the node's driver runs (`pbft.interpreter`), each node on
the node's real store (in memory unless `store_dir` is given).

Messages travel through a FIFO the test controls: it can deliver all,
hold some back, reorder or drop them, and inject forged ones. Each delivery
is one turn: its save runs, then its sends, before `deliver_to` returns.
Builds are simulated by a function of the operation, reported back in start
order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Mapping

from node.storage import NodeStore
from shared.crypto import Ed25519Authenticator, generate_private_key
from pbft.effects import BuildLearnt, Effect, Execute, KeepStableProof, NetworkChanged, StopBuild, Store
from pbft.interpreter import Interpreter
from pbft.ledger import MemoryLedger
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation, Result
from pbft.networkchange import NetworkChange
from pbft.messages import Message, Reply, Request, signed
from pbft.replica import Replica, ReplicaSettings
from pbft.durable import DurableState

CLIENT = "client"
# What a stopped build reports: the executor's result for a build whose container it killed.
CANCELLED = Result("cancelled", None, None, "cancelled by the client's request")


@lru_cache(maxsize=None)
def keys(count: int = 4):
    """Key pairs for `count` nodes and one client, made once per test run."""
    return [generate_private_key() for _ in range(count)], generate_private_key()


def authenticator(node_keys, client_key, private_key, spare_keys=()) -> Ed25519Authenticator:
    return Ed25519Authenticator(
        private_key,
        {i: key.public_key() for i, key in enumerate(node_keys)},
        {CLIENT: client_key.public_key()},
        spare_keys,
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
    document: dict | None = None  # the network document every node starts with (`pbft.networks`)

    def __post_init__(self) -> None:
        self.node_keys, self.client_key = keys(self.n)
        self.client_auth = authenticator(self.node_keys, self.client_key, self.client_key)
        self.replicas = [
            Replica(
                ReplicaSettings(node_id=i, n=self.n, f=self.f, **self.settings),
                authenticator(self.node_keys, self.client_key, self.node_keys[i]),
                self.document,
            )
            for i in range(self.n)
        ]
        self.network: deque[tuple[int, Message]] = deque()  # (destination, message)
        self.executed: list[list[Execute]] = [[] for _ in range(self.n)]
        self.replies: list[Reply] = []
        self.stored: list[list[Message]] = [[] for _ in range(self.n)]  # what each node saved, or will at its next write
        self.ledgers = [MemoryLedger() for _ in range(self.n)]  # each node's ledger, for a test that forges an answer
        self.drops: list[tuple[int, str]] = []
        self.crashed: set[int] = set()
        self.slow: set[int] = set()  # nodes whose builds do not finish until finish_builds()
        self.running: dict[int, list[tuple[int, Request]]] = {}
        self.stopped: list[list[tuple[str, int]]] = [[] for _ in range(self.n)]  # builds each node was told to stop
        self.network_changes: list[list[tuple[int, str]]] = [[] for _ in range(self.n)]  # (seq, digest) each applied
        self.stores = {
            i: NodeStore(self.store_dir / f"node-{i}.sqlite" if self.store_dir else Path(":memory:"), n=self.n, f=self.f)
            for i in range(self.n)
        }
        self._interpreters: dict[int, Interpreter] = {}
        self._turn_ends: dict[int, list[Callable[[], None]]] = {i: [] for i in range(self.n)}
        self._timestamp = 0

    def request(self, branch: str = "master", timestamp: int | None = None) -> Request:
        if timestamp is None:
            self._timestamp += 1
            timestamp = self._timestamp
        return signed(Request(CLIENT, timestamp, Operation("example", branch)), self.client_auth.sign)

    def cancel(self, target: Request, timestamp: int | None = None) -> Request:
        """The client's request to cancel its build `target` (pbft.cancels)."""
        if timestamp is None:
            self._timestamp += 1
            timestamp = self._timestamp
        operation = Operation("example", target.operation.branch, cancels=target.timestamp)
        return signed(Request(CLIENT, timestamp, operation), self.client_auth.sign)

    def change(self, network_change: NetworkChange) -> Request:
        """The client's request to run another network document (pbft.networkchange)."""
        self._timestamp += 1
        operation = Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=network_change)
        return signed(Request(CLIENT, self._timestamp, operation), self.client_auth.sign)

    def interpreter(self, node: int) -> Interpreter:
        """Node's interpreter; a new one (a new process) once a test put in another replica."""
        interpreter = self._interpreters.get(node)
        if interpreter is None or interpreter.replica is not self.replicas[node]:
            interpreter = self._interpreters[node] = Interpreter(self.replicas[node], self.stores[node], _Edges(self, node))
            self._turn_ends[node].clear()
        return interpreter

    def deliver_to(self, node: int, message: Message) -> str | None:
        reason = self.interpreter(node).step(self.replicas[node].receive, message)
        if reason is not None:
            self.drops.append((node, reason))
        self._end_turn(node)
        return reason

    def saw(self, node: int, effects: list[Effect]) -> None:
        """A turn of `node` is about to be saved and carried out (a hook for scenario tests)."""

    def _end_turn(self, node: int) -> None:
        """Run the save the node's interpreter scheduled, and what that started."""
        ends = self._turn_ends[node]
        while ends:
            ends.pop(0)()

    def finish_builds(self, node: int) -> None:
        """The builds `node` started report their results, in start order."""
        builds, self.running[node] = self.running.get(node, []), []
        interpreter = self.interpreter(node)
        for seq, request in builds:
            files = self.artifact_files(node, request.operation)
            interpreter.step(self.replicas[node].execution_finished, request, self.build(request.operation), seq, files)
        self._end_turn(node)

    def run(self, keep: Callable[[int, Message], bool] = lambda node, message: True) -> None:
        """Deliver until the network is quiet; `keep` decides which messages survive. Then every
        live node writes what waited unsynced, as a node's next tick does."""
        while self.network:
            node, message = self.network.popleft()
            if node not in self.crashed and keep(node, message):
                self.deliver_to(node, message)
        for node in range(self.n):
            if node not in self.crashed:
                self.interpreter(node).write_deferred()

    def tick(self, now: float, nodes: Iterable[int] | None = None, unreachable: frozenset[int] = frozenset()) -> None:
        """Advance the clock of every live replica (or of `nodes`) to `now`, as each node's
        driver ticks: a step, then the write of what waited unsynced. `unreachable`: the peers
        their links say they cannot reach (`pbft.reach`)."""
        for node in range(self.n) if nodes is None else nodes:
            if node not in self.crashed:
                interpreter = self.interpreter(node)
                interpreter.step(self.replicas[node].tick, now, unreachable - {node})
                self._end_turn(node)
                interpreter.write_deferred()

    def send_results(self, now: float = 0.0) -> None:
        """Tick, which sends the RESULTs each node queued, and deliver until quiet; twice, for
        a relaying primary passes on at its next tick the RESULTs backups sent at theirs."""
        for _ in range(2):
            self.tick(now)
            self.run()

    def restart(self, node: int, now: float = 0.0, rebooted: bool = False) -> None:
        """Replace a crashed node's replica by one restored from its store, as a restarted process does:
        builds its killed process was running start again. `rebooted`: as after a power cut."""
        loaded = self.stores[node].load()
        self.replicas[node] = Replica(self.replicas[node].settings, self.replicas[node].auth, self.document).restore(
            loaded, now, rebooted=rebooted
        )
        self.crashed.discard(node)
        self.running[node] = [(build.seq, build.request) for build in self.replicas[node].builds_to_rerun(loaded.unfinished)]
        if node not in self.slow:
            self.finish_builds(node)
        self.interpreter(node).take()
        self._end_turn(node)

    def ledger(self, node: int) -> list[tuple[int, str]]:
        return [(effect.seq, effect.digest) for effect in self.executed[node]]

    def executed_seqs(self, node: int) -> list[int]:
        return [effect.seq for effect in self.executed[node]]

    def builds(self, node: int) -> list[Request]:
        return [request for effect in self.executed[node] for request in effect.requests]


class _Edges:
    """`pbft.interpreter.Edges` of one node of a `Cluster`: sends go into its FIFO, and a
    turn ends when the cluster says so (`Cluster._end_turn`)."""

    def __init__(self, cluster: Cluster, node: int) -> None:
        self.cluster = cluster
        self.node = node

    def send(self, node: int, message: Message) -> None:
        self.cluster.network.append((node, message))

    def broadcast(self, message: Message) -> None:
        self.cluster.network.extend((other, message) for other in range(self.cluster.n) if other != self.node)

    def send_reply(self, reply: Reply) -> None:
        self.cluster.replies.append(reply)

    def execute(self, effect: Execute) -> None:
        self.cluster.executed[self.node].append(effect)
        self._build((effect.seq, request) for request in effect.requests)

    def build_learnt(self, effect: BuildLearnt) -> None:
        self._build([(effect.seq, effect.request)])

    def network_changed(self, effect: NetworkChanged) -> None:
        self.cluster.network_changes[self.node].append((effect.seq, effect.digest))

    def stop_build(self, effect: StopBuild) -> None:
        """A build still running here ends at once, as the executor's killed container does;
        on a slow node the kill has not landed yet, and the build ends at finish_builds."""
        cluster, node = self.cluster, self.node
        cluster.stopped[node].append((effect.client, effect.timestamp))
        if node in cluster.slow:
            return
        running = cluster.running.get(node, [])
        for seq, request in [build for build in running if build[1].key == (effect.client, effect.timestamp)]:
            running.remove((seq, request))
            cluster.interpreter(node).step(cluster.replicas[node].execution_finished, request, CANCELLED, seq)

    def _build(self, builds: Iterable[tuple[int, Request]]) -> None:
        cluster, node = self.cluster, self.node
        cluster.running.setdefault(node, []).extend(builds)
        if node not in cluster.slow:
            cluster.finish_builds(node)

    def schedule(self, callback: Callable[[], None]) -> None:
        self.cluster._turn_ends[self.node].append(callback)

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        self.cluster.stores[self.node].save(state, effects, sync=sync)

    def saving(self, effects: list[Effect]) -> None:
        cluster, node = self.cluster, self.node
        cluster.saw(node, effects)
        for effect in effects:
            if isinstance(effect, Store):
                cluster.stored[node].append(effect.message)
            elif isinstance(effect, KeepStableProof):
                cluster.ledgers[node].proofs[effect.seq] = effect.proof
            elif isinstance(effect, Execute):
                cluster.ledgers[node].batches[effect.seq] = effect.batch
                if effect.verdicts:
                    cluster.ledgers[node].verdicts[effect.seq] = effect.verdicts

    def stop(self) -> None:
        raise AssertionError(f"node {self.node}'s interpreter stopped: a replica invariant broke")
