"""The message log (OSDI'99 §4.2, §4.3): what this replica knows per sequence number.

Slots hold the current view's pre-prepare and signed votes for sequence
numbers inside the window (h, h+L]; prepared certificates outlive the view
they formed in, since the next VIEW-CHANGE must carry them, and so do
committed certificates: a sequence number committed in an earlier view is
decided for good, and a node that lagged through the view change (and will
not see it commit again in this one without its own vote) takes it from a
STATE. All are collected as garbage when a checkpoint becomes stable, and
rebuilt after a restart from the pre-prepares and votes the store kept.
"""

from __future__ import annotations

from typing import Callable, Iterable

from pbft.messages import Commit, CommittedCertificate, NewView, PreparedCertificate, PrePrepare, Prepare, batch_bytes
from pbft.quorum import commit_quorum, matching, prepare_quorum
from pbft.slot import Slot, vote_digests


class MessageLog:
    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.prepared_certs: dict[int, PreparedCertificate] = {}  # seq -> latest certificate
        self.committed_before: dict[int, CommittedCertificate] = {}  # seq -> committed in an earlier view

    def slot(self, seq: int) -> Slot:
        assert seq > 0
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot()
        return slot

    def empty_slot(self, seq: int) -> Slot:
        """The slot of `seq`, to take a pre-prepare: one is never replaced within a view."""
        slot = self.slot(seq)
        assert slot.preprepare is None, f"seq {seq} holds a pre-prepare already"
        return slot

    def new_view(self) -> None:
        """A new view starts with empty slots; prepared certificates stay for later view
        changes, committed ones for peers that missed them."""
        for seq in self.slots:
            certificate = self.committed_certificate(seq)
            if certificate is not None:
                self.committed_before[seq] = certificate
        self.slots = {}

    def drop_above(self, seq: int) -> None:
        """A change of the membership executed at `seq`: nothing above it was ordered (`pbft.epochs`)."""
        self.slots = {at: slot for at, slot in self.slots.items() if at <= seq}
        self.prepared_certs = {at: cert for at, cert in self.prepared_certs.items() if at <= seq}
        self.committed_before = {at: cert for at, cert in self.committed_before.items() if at <= seq}

    def collect_garbage(self, stable_seq: int) -> None:
        self.slots = {seq: slot for seq, slot in self.slots.items() if seq > stable_seq}
        self.prepared_certs = {seq: cert for seq, cert in self.prepared_certs.items() if seq > stable_seq}
        self.committed_before = {seq: cert for seq, cert in self.committed_before.items() if seq > stable_seq}

    def decided_through(self, seq: int) -> int:
        """`seq`, or the last of the committed slots that follow it without a gap. A primary
        assigns above it: a STATE's committed certificates (`pbft.statetransfer`) may fill slots
        past what it assigned, from a view it never entered, and its own batch must not replace
        what a quorum committed there."""
        while (slot := self.slots.get(seq + 1)) is not None and slot.committed:
            seq += 1
        return seq

    def room(self, executed: int, window_bytes: int) -> int:
        """What `window_bytes` leaves beside the batches pre-prepared above `executed`
        (`batch_bytes`): the most a VIEW-CHANGE carries of batches not executed yet is bounded by
        it (`ReplicaSettings.window_bytes`)."""
        return window_bytes - sum(batch_bytes(slot.preprepare.batch, slot.preprepare.verdicts)
                                  for seq, slot in self.slots.items() if seq > executed and slot.preprepare is not None)

    def lacking(self, new_view: NewView | None, view: int, in_window: Callable[[int], bool]) -> list[PrePrepare]:
        """Of the pre-prepares `new_view` re-issued, if it began `view`, those the window reaches
        whose slot has none. A node that entered the view behind its stable checkpoint (its
        primary too: it may build the NEW-VIEW while it lags) takes the rest as its window moves
        up; nobody sends them again, and without its vote a sequence number may never commit in
        this view. (While views change, `view` is the next one: no NEW-VIEW began it yet.)"""
        if new_view is None or new_view.view != view:
            return []
        return [pp for pp in new_view.preprepares
                if in_window(pp.seq) and (pp.seq not in self.slots or self.slots[pp.seq].preprepare is None)]

    def committed_as_proposed(self, seq: int, quorum: int) -> bool:
        """Whether slot `seq` is committed, and `quorum` commits (by the rule that committed it)
        are for its own pre-prepare: what executes there is what they committed. Checked as it
        executes, not at every step, which would count the votes of every slot of the window
        each time."""
        slot = self.slots[seq]
        return (slot.committed and slot.preprepare is not None
                and matching(vote_digests(slot.commits), slot.preprepare.digest) >= quorum)

    def check_invariants(self) -> None:
        for slot in self.slots.values():
            if slot.committed:
                assert slot.prepared and slot.preprepare is not None

    def prepared_above(self, stable_seq: int) -> tuple[PreparedCertificate, ...]:
        return tuple(cert for seq, cert in sorted(self.prepared_certs.items()) if seq > stable_seq)

    def committed_certificate(self, seq: int) -> CommittedCertificate | None:
        """The pre-prepare and 2f+1 matching commits that made `seq` committed here, in this
        view or an earlier one, if it did."""
        slot = self.slots.get(seq)
        if slot is None or not slot.committed or slot.preprepare is None:
            return self.committed_before.get(seq)
        commits = tuple(vote for vote in slot.commits.values() if vote.digest == slot.preprepare.digest)
        return CommittedCertificate(slot.preprepare, commits)

    def restore(
        self, stored: Iterable[PrePrepare | Prepare | Commit], in_window: Callable[[int], bool],
        me: int, n: int, f: int, working_view: int | None,
    ) -> None:
        """Rebuild from stored pre-prepares and votes, recomputing prepared and committed-local
        and sending nothing. Only the slots of `working_view` (None while changing views)
        take part in agreement; older ones live on as prepared certificates."""
        assert not self.slots and not self.prepared_certs and not self.committed_before, "restore a fresh log"
        by_view: dict[tuple[int, int], Slot] = {}
        for message in stored:
            if not in_window(message.seq):
                continue
            slot = by_view.setdefault((message.view, message.seq), Slot())
            if isinstance(message, PrePrepare):
                slot.preprepare = message
            elif isinstance(message, Prepare):
                slot.prepares.setdefault(message.sender, message)
            else:
                slot.commits.setdefault(message.sender, message)
        for (view, seq), slot in sorted(by_view.items()):
            self._restore_progress(seq, slot, me, n, f)
            if view == working_view:
                self.slots[seq] = slot
            elif slot.committed:
                assert slot.preprepare is not None
                commits = tuple(vote for vote in slot.commits.values() if vote.digest == slot.preprepare.digest)
                self.committed_before[seq] = CommittedCertificate(slot.preprepare, commits)

    def _restore_progress(self, seq: int, slot: Slot, me: int, n: int, f: int) -> None:
        if slot.preprepare is None:
            return
        wanted = slot.preprepare.digest
        if matching(vote_digests(slot.prepares), wanted) >= prepare_quorum(n, f) or me in slot.commits:
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == wanted)
            if len(proof) >= prepare_quorum(n, f):
                self.prepared_certs[seq] = PreparedCertificate(slot.preprepare, proof)
        slot.committed = slot.prepared and matching(vote_digests(slot.commits), wanted) >= commit_quorum(n, f)
