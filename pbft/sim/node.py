"""One simulated node: a replica, the behaviour that filters what it sends,
and an adapter over the replica's evolving interface.

`receive(..., now=)` and `tick(now)` arrive with view change; probing the
replica once here lets the simulator drive the core before and after.
"""

from __future__ import annotations

import inspect

from pbft.messages import Message
from pbft.replica import Replica
from pbft.sim.byzantine import Honest


def replica_has_timers() -> bool:
    return callable(getattr(Replica, "tick", None))


class SimNode:
    def __init__(self, replica: Replica, behaviour: Honest) -> None:
        self.replica = replica
        self.behaviour = behaviour
        self.honest = behaviour.kind == "honest"
        self._receive_takes_now = "now" in inspect.signature(replica.receive).parameters
        self._tick = getattr(replica, "tick", None)
        self.ledger: dict[int, tuple] = {}  # seq -> executed batch, as a real node persists it

    @property
    def has_timers(self) -> bool:
        return self._tick is not None

    def receive(self, message: Message, now_s: float) -> str | None:
        self.behaviour.observe(message)
        if self._receive_takes_now:
            return self.replica.receive(message, now=now_s)
        return self.replica.receive(message)

    def tick(self, now_s: float) -> None:
        self._tick(now_s)

    def record(self, execute: object) -> None:
        """Keep the ledger from Execute effects that carry their batch (those of state-transfer cores)."""
        batch = getattr(execute, "batch", None)
        if batch is not None:
            self.ledger[execute.seq] = batch

    def serve_fetch(self, fetch: object) -> None:
        """Answer a peer's FETCH from the ledger, as the driver does with its storage."""
        from pbft.messages import LedgerEntry  # exists only in cores that emit ServeFetch

        entries = [LedgerEntry(seq, batch) for seq, batch in sorted(self.ledger.items()) if seq >= fetch.from_seq]
        self.replica.answer_fetch(fetch, entries)
