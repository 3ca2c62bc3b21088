"""A store that loses to a power cut what an unsynced SQLite commit can lose.

The inner store is the real one; every step saved into it is also kept in a
journal, and a power cut rebuilds the inner store from the journal without
the steps the disk may not have had:

- as the node saves (`every_step_unsynced=False`, the default): every step
  after the last synced one (`pbft.effects.must_sync`). Such steps took
  messages in, sent votes a synced vote horizon covers, or started builds
  (`pbft.horizon`): the node restarts as after a reboot, and every checker
  still applies;
- with every step unsynced (SQLite synchronous=NORMAL, `SimOptions.unsynced_stores`):
  the last step, messages it already sent included, to show what that costs (F7).
"""

from __future__ import annotations

from typing import Callable

from pbft.effects import Effect
from pbft.messages import Checkpoint, LedgerEntry, Reply, ResultVote
from pbft.durable import DurableState
from pbft.storage import Loaded, ReplicaStore


class PowerCutStore:
    """Implements `pbft.storage.ReplicaStore` over `make_store()`."""

    def __init__(self, make_store: Callable[[], ReplicaStore], *, every_step_unsynced: bool = False) -> None:
        self._make_store = make_store
        self._every_step_unsynced = every_step_unsynced
        self._inner = make_store()
        self._journal: list[tuple[DurableState, list[Effect]]] = []
        self._synced = 0  # how many journal steps the disk has for certain

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool = True) -> None:
        self._inner.save(state, effects, sync=sync)
        if not effects and self._journal and self._journal[-1][0] == state:
            return  # a step that wrote nothing: nothing of it to lose
        self._journal.append((state, list(effects)))  # DurableState is a frozen copy
        if self._every_step_unsynced:
            self._synced = len(self._journal) - 1
        elif sync:
            self._synced = len(self._journal)

    def lose_power(self) -> list[Effect]:
        """Power fails: the steps the disk may lack are gone. Returns their effects."""
        lost = self._journal[self._synced:]
        if not lost:
            return []
        del self._journal[self._synced:]
        self._inner = self._make_store()
        for state, effects in self._journal:
            self._inner.save(state, effects)
        return [effect for _, effects in lost for effect in effects]

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
