"""One simulated node: a replica, the behaviour that filters what it sends, a
store behind the `pbft.storage.ReplicaStore` contract (the node's real SQLite
store, in memory, in practice), and the interpreter the node's driver runs
(`pbft.interpreter`), so steps are saved, deferred and sent exactly as on a
real node. A crash loses what a killed process loses (the interpreter's
memory: a turn whose save had not run, turns waiting unsynced), and a
restart goes through `Replica.restore`. Its links' view of its peers (`pbft.reach`) is
fed by the cluster from the network model, as the driver feeds a real node's from
its links.
"""

from __future__ import annotations

from typing import Callable

from pbft.effects import Execute
from pbft.interpreter import Edges, Interpreter
from pbft.messages import Message
from pbft.reach import Reach
from pbft.replica import Replica
from pbft.sim.honest import Honest
from pbft.storage import Loaded, ReplicaStore

# What the cluster gives a node to reach the world: edges for one incarnation of it.
MakeEdges = Callable[["SimNode"], Edges]


class SimNode:
    def __init__(
        self, replica: Replica, behaviour: Honest, store: ReplicaStore, make_edges: MakeEdges, document: dict | None = None,
    ) -> None:
        self.replica = replica
        self.document = document  # the network document it starts with, as its file
        self.behaviour = behaviour
        self.honest = behaviour.kind == "honest"
        self.store = store
        self._make_edges = make_edges
        self.interpreter = Interpreter(replica, store, make_edges(self))
        self.reach = Reach()

    def receive(self, message: Message, now_s: float) -> str | None:
        return self.interpreter.step(self.replica.receive, message, now_s)

    def tick(self, now_s: float, links: dict[int, bool]) -> None:
        """As the driver's ticker: what the links show (peer -> up), a step, then the write of
        what waited unsynced."""
        for peer, up in links.items():
            self.reach.link(peer, up, now_s)
        self.interpreter.step(self.replica.tick, now_s, self.reach.unreachable(now_s))
        self.interpreter.write_deferred()

    def unsaved_executions(self) -> set[tuple[str, int]]:
        """Requests executed in steps whose save has not run: a crash now loses them, rightly."""
        return {
            request.key for effect in self.interpreter.unsaved if isinstance(effect, Execute)
            for request in effect.batch
        }

    def restart(self, now_s: float, rebooted: bool = False) -> Loaded | None:
        """Forget everything in memory and restore from the store; return what the store gave
        back. `rebooted`: after a power cut, as the node's store tells it (`pbft.horizon`)."""
        loaded = self.store.load()
        if loaded is None:
            self.replica = Replica(self.replica.settings, self.replica.auth, self.document)
        else:
            self.replica = Replica(self.replica.settings, self.replica.auth, self.document).restore(
                loaded, now_s, rebooted=rebooted
            )
        self.interpreter = Interpreter(self.replica, self.store, self._make_edges(self))
        self.reach = Reach()  # a new process: its links start again
        return loaded
