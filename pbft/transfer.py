"""State transfer (OSDI'99 §4.3, §5.3.2): what a replica serves of its ledger, what it
checks before it adopts a peer's, and what it adopted without building.

When to ask is `pbft.catchup`'s; this part owns the other side and the
aftermath:

- answering: one peer is answered once per half fetch interval, but its ask
  for the chunk after the last one it got is answered at once, so a faulty
  peer that raises `from_seq` by one with each ask gets no more than an
  honest laggard;
- adopting: the entries a peer sent must follow our ledger without a gap and
  chain, from our state digest, to the digest its 2f+1 checkpoint proof
  vouches for;
- the requests learnt that way and not built here, and those of them whose
  verdict is still open, in ledger order. Each is built after all if its
  verdict is still open once the peers had their time to answer two asks for votes (asks
  whose answers were lost do not count, up to four), or when
  its client sends it again (it lacks matching replies): so 2f+1 honest
  builders exist whenever 2f+1 honest nodes are up. Both forget with the
  client table.
"""

from __future__ import annotations

from typing import Iterable

from pbft.encoding import digest
from pbft.ledger import LedgerReader
from pbft.messages import LedgerEntry, Request, batch_bytes, batch_digest

Key = tuple[str, int]


class LedgerTransfer:
    def __init__(self, fetch_interval_s: float, chunk: int, max_bytes: int) -> None:
        self.fetch_interval_s = fetch_interval_s
        self.chunk = chunk
        self.max_bytes = max_bytes
        self.served: dict[int, tuple[int, float]] = {}  # sender -> (seq the last answer reached, when)
        self.learnt_unbuilt: dict[Key, tuple[int, Request]] = {}
        self.learnt_open: dict[Key, tuple[int, Request]] = {}

    # --- serving --------------------------------------------------------

    def fetch_problem(self, sender: int, from_seq: int, last_executed: int, newer_view: bool, now: float) -> str | None:
        """Why a FETCH is not answered now, or None (and it counts as answered)."""
        if from_seq > last_executed and not newer_view:
            return "nothing_newer"
        served_to, served_at = self.served.get(sender, (0, float("-inf")))
        next_chunk = served_to < from_seq <= last_executed
        if not next_chunk and now < served_at + self.fetch_interval_s / 2:
            return "too_soon"
        self.served[sender] = (served_to, now)
        return None

    def answered(self, sender: int, reached: int, now: float) -> None:
        """Our answer to `sender` covered the ledger up to `reached`."""
        self.served[sender] = (reached, now)

    def chunk_end(self, from_seq: int, low_watermark: int, ledger: LedgerReader) -> int:
        """The furthest kept stable checkpoint within `chunk` batches of `from_seq` (or the
        nearest one beyond, if none is that close); h when it is close enough."""
        if from_seq > low_watermark:
            return low_watermark
        kept = ledger.stable_proof_seqs(from_seq, low_watermark - 1) + [low_watermark]
        close = [seq for seq in kept if seq - from_seq < self.chunk]
        end = close[-1] if close else kept[0]
        assert from_seq <= end <= low_watermark
        return end

    def entries_to(self, from_seq: int, end: int, ledger: LedgerReader) -> tuple[int, list[LedgerEntry]]:
        """The entries of an answer from `from_seq` that `chunk_end` would end at `end`: cut back
        to the furthest kept stable checkpoint that keeps them within `max_bytes` (the nearest one
        if none does), read one checkpoint interval at a time so that a cut answer costs no more
        to read than it holds. The asker checks an answer in one step of its loop: 256 batches of
        eight built requests are over 4 MB, two seconds of a loaded node that answers nobody."""
        if from_seq > end:
            return end, []
        entries: list[LedgerEntry] = []
        reached, total, start = None, 0, from_seq
        for seq in ledger.stable_proof_seqs(from_seq, end - 1) + [end]:
            part = ledger.ledger_entries(start, seq)
            size = sum(batch_bytes(entry.batch, entry.verdicts) for entry in part)
            if reached is not None and total + size > self.max_bytes:
                break
            entries += part
            reached, total, start = seq, total + size, seq + 1
        assert reached is not None
        return reached, entries

    # --- adopting -------------------------------------------------------

    @staticmethod
    def entries_problem(
        entries: Iterable[LedgerEntry], last_executed: int, state_digest: str, stable_seq: int, vouched_digest: str
    ) -> tuple[str | None, list[LedgerEntry]]:
        """The entries beyond `last_executed` that take our ledger to the vouched checkpoint,
        or why they do not."""
        missing = [entry for entry in entries if entry.seq > last_executed]
        if [entry.seq for entry in missing] != list(range(last_executed + 1, stable_seq + 1)):
            return "entries_not_contiguous", []
        chained = state_digest
        for entry in missing:
            chained = digest([chained, entry.seq, batch_digest(entry.batch, entry.verdicts)])
        if chained != vouched_digest:
            return "entries_do_not_match_checkpoint", []
        return None, missing

    # --- what we adopted without building ---------------------------------

    def learnt(self, seq: int, request: Request) -> None:
        self.learnt_unbuilt[request.key] = self.learnt_open[request.key] = (seq, request)

    def take(self, key: Key) -> tuple[int, Request]:
        """A learnt request we now build: it is neither unbuilt nor open any more."""
        self.learnt_open.pop(key, None)
        return self.learnt_unbuilt.pop(key)

    def oldest_open(self) -> Key | None:
        return next(iter(self.learnt_open), None)

    def stop_waiting(self, key: Key) -> None:
        """The peers were asked for the learnt request's votes: it is built now if its verdict
        is still open, and otherwise never needs to be."""
        del self.learnt_open[key]

    def forget(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.learnt_unbuilt.pop(key, None)
            self.learnt_open.pop(key, None)

    def check_invariants(self) -> None:
        # Cheap enough for every step: open is a subset of unbuilt, kept by learnt/take/forget.
        assert len(self.learnt_open) <= len(self.learnt_unbuilt)
