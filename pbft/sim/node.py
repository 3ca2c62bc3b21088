"""One simulated node: a replica, the behaviour that filters what it sends,
and a store behind the `pbft.storage.ReplicaStore` contract (the node's real
SQLite store, in memory, in practice), so a crash loses exactly what a
killed process loses and a restart goes through `Replica.restore`.
"""

from __future__ import annotations

from pbft.effects import Effect, ServeFetch, must_sync
from pbft.messages import Message
from pbft.replica import Replica
from pbft.sim.byzantine import Honest
from pbft.storage import Loaded, ReplicaStore


class SimNode:
    def __init__(self, replica: Replica, behaviour: Honest, store: ReplicaStore) -> None:
        self.replica = replica
        self.behaviour = behaviour
        self.honest = behaviour.kind == "honest"
        self.store = store

    def receive(self, message: Message, now_s: float) -> str | None:
        return self.replica.receive(message, now=now_s)

    def tick(self, now_s: float) -> None:
        self.replica.tick(now_s)

    def persist(self, effects: list[Effect]) -> None:
        """Save a step before any of its effects is carried out, as the node's driver does."""
        self.store.save(self.replica.durable_state(), effects, sync=must_sync(effects, self.replica.id))

    def serve_fetch(self, effect: ServeFetch) -> None:
        """Answer a peer's FETCH from the stored ledger, as the driver does."""
        self.replica.answer_fetch(effect.fetch, self.store)

    def restart(self, now_s: float) -> Loaded | None:
        """Forget everything in memory and restore from the store; return what the store gave back."""
        loaded = self.store.load()
        if loaded is None:
            self.replica = Replica(self.replica.settings, self.replica.auth)
            return None
        self.replica = Replica.restore(
            self.replica.settings, self.replica.auth, loaded.state, loaded.messages, loaded.executed, now_s
        )
        return loaded
