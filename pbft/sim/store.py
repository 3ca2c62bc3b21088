"""A store that loses its last saved step on power loss, as SQLite with synchronous=NORMAL can.

The inner store is the real one; every step saved into it is also kept in
a journal, and a power loss rebuilds the inner store from the journal
without its last step. Used only with `SimOptions.unsynced_stores`, for
the nodes that lose power, to show what an unsynced step costs (F7).
"""

from __future__ import annotations

from typing import Callable

from pbft.effects import Effect
from pbft.messages import Checkpoint, LedgerEntry, Reply, ResultVote
from pbft.replica_persistence import DurableState
from pbft.storage import Loaded, ReplicaStore


class UnsyncedStore:
    """Implements `pbft.storage.ReplicaStore` over `make_store()`."""

    def __init__(self, make_store: Callable[[], ReplicaStore]) -> None:
        self._make_store = make_store
        self._inner = make_store()
        self._journal: list[tuple[DurableState, list[Effect]]] = []

    def save(self, state: DurableState, effects: list[Effect]) -> None:
        self._inner.save(state, effects)
        if not effects and self._journal and self._journal[-1][0] == state:
            return  # a step that wrote nothing: the last step that did stays the one to lose
        self._journal.append((state, list(effects)))  # DurableState is a frozen copy

    def lose_last_step(self) -> int:
        """Power fails before the last step reached the disk; return how many effects it had."""
        if not self._journal:
            return 0
        _, lost = self._journal.pop()
        self._inner = self._make_store()
        for state, effects in self._journal:
            self._inner.save(state, effects)
        return len(lost)

    def load(self) -> Loaded | None:
        return self._inner.load()

    def ledger_entries(self, from_seq: int, to_seq: int) -> list[LedgerEntry]:
        return self._inner.ledger_entries(from_seq, to_seq)

    def stable_proof_seqs(self, from_seq: int, to_seq: int) -> list[int]:
        return self._inner.stable_proof_seqs(from_seq, to_seq)

    def stable_proof(self, seq: int) -> tuple[Checkpoint, ...] | None:
        return self._inner.stable_proof(seq)

    def reply(self, client: str, timestamp: int) -> Reply | None:
        return self._inner.reply(client, timestamp)

    def votes(self, keys: tuple[tuple[str, int], ...]) -> list[ResultVote]:
        return self._inner.votes(keys)

    def build_records(self, seq: int) -> list[dict]:
        return self._inner.build_records(seq)
