"""What the replica reads back from its store to answer a FETCH: the storage contract.

State transfer moves a gap of any length in chunks, each ending at a stable
checkpoint whose 2f+1 proof the serving node kept (OSDI'99 §5.3.2), so the
receiver checks every chunk on its own by hashing it onto its state. The
node's SQLite store (`node.storage.NodeStore`) and `MemoryLedger` (for tests
and the simulator) both satisfy `LedgerReader`; the core depends on nothing
else of them.
"""

from __future__ import annotations

from typing import Protocol

from pbft.messages import Checkpoint, LedgerEntry, Request, VerdictProof


class LedgerReader(Protocol):
    def ledger_entries(self, from_seq: int, to_seq: int) -> list[LedgerEntry]:
        """Executed batches with from_seq <= seq <= to_seq, in order."""

    def stable_proof_seqs(self, from_seq: int, to_seq: int) -> list[int]:
        """Sequence numbers in [from_seq, to_seq] whose stable checkpoint proof was kept, ascending."""

    def stable_proof(self, seq: int) -> tuple[Checkpoint, ...] | None:
        """The 2f+1 checkpoints that made `seq` stable here, if kept."""


class MemoryLedger:
    """A `LedgerReader` fed with the replica's Execute and KeepStableProof effects."""

    def __init__(self) -> None:
        self.batches: dict[int, tuple[Request, ...]] = {}
        self.verdicts: dict[int, tuple[VerdictProof, ...]] = {}  # the batches' verdict proofs, where any
        self.proofs: dict[int, tuple[Checkpoint, ...]] = {}

    def ledger_entries(self, from_seq: int, to_seq: int) -> list[LedgerEntry]:
        return [LedgerEntry(seq, self.batches[seq], self.verdicts.get(seq, ()))
                for seq in range(from_seq, to_seq + 1) if seq in self.batches]

    def stable_proof_seqs(self, from_seq: int, to_seq: int) -> list[int]:
        return sorted(seq for seq in self.proofs if from_seq <= seq <= to_seq)

    def stable_proof(self, seq: int) -> tuple[Checkpoint, ...] | None:
        return self.proofs.get(seq)
