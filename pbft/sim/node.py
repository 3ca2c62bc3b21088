"""One simulated node: a replica, the behaviour that filters what it sends,
and the node's real SQLite store (in memory), so a crash loses exactly what a
killed process loses and a restart goes through `Replica.restore`.
"""

from __future__ import annotations

from pathlib import Path

from node.storage import NodeStore
from pbft.effects import Effect, ServeFetch
from pbft.messages import Message, Request
from pbft.replica import Replica
from pbft.sim.byzantine import Honest


class SimNode:
    def __init__(self, replica: Replica, behaviour: Honest) -> None:
        self.replica = replica
        self.behaviour = behaviour
        self.honest = behaviour.kind == "honest"
        self.store = NodeStore(Path(":memory:"), n=replica.settings.n, f=replica.settings.f)

    def receive(self, message: Message, now_s: float) -> str | None:
        self.behaviour.observe(message)
        return self.replica.receive(message, now=now_s)

    def tick(self, now_s: float) -> None:
        self.replica.tick(now_s)

    def persist(self, effects: list[Effect]) -> None:
        """Save a step before any of its effects is carried out, as the node's driver does."""
        self.store.save(self.replica.durable_state(), effects)

    def serve_fetch(self, effect: ServeFetch) -> None:
        """Answer a peer's FETCH from the stored ledger, as the driver does."""
        self.replica.answer_fetch(effect.fetch, self.store)

    def restart(self, now_s: float) -> list[tuple[int, Request]]:
        """Forget everything in memory and restore from the store; return the builds to run again."""
        loaded = self.store.load()
        if loaded is None:
            self.replica = Replica(self.replica.settings, self.replica.auth)
            return []
        self.replica = Replica.restore(
            self.replica.settings, self.replica.auth, loaded.state, loaded.messages, loaded.executed, now_s
        )
        return self.replica.builds_to_rerun(loaded.unfinished)
