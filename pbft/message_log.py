"""The message log (OSDI'99 §4.2, §4.3): what this replica knows per sequence number.

Slots hold the current view's pre-prepare and signed votes for sequence
numbers inside the window (h, h+L]; prepared certificates outlive the view
they formed in, since the next VIEW-CHANGE must carry them. Both are
collected as garbage when a checkpoint becomes stable.
"""

from __future__ import annotations

from pbft.messages import CommittedCertificate, PreparedCertificate
from pbft.slot import Slot


class MessageLog:
    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.prepared_certs: dict[int, PreparedCertificate] = {}  # seq -> latest certificate

    def slot(self, seq: int) -> Slot:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot()
        return slot

    def new_view(self) -> None:
        """A new view starts with empty slots; prepared certificates stay for later view changes."""
        self.slots = {}

    def collect_garbage(self, stable_seq: int) -> None:
        self.slots = {seq: slot for seq, slot in self.slots.items() if seq > stable_seq}
        self.prepared_certs = {seq: cert for seq, cert in self.prepared_certs.items() if seq > stable_seq}

    def prepared_above(self, stable_seq: int) -> tuple[PreparedCertificate, ...]:
        return tuple(cert for seq, cert in sorted(self.prepared_certs.items()) if seq > stable_seq)

    def committed_certificate(self, seq: int) -> CommittedCertificate | None:
        """The pre-prepare and 2f+1 matching commits that made `seq` committed here, if it did."""
        slot = self.slots.get(seq)
        if slot is None or not slot.committed or slot.preprepare is None:
            return None
        commits = tuple(vote for vote in slot.commits.values() if vote.digest == slot.preprepare.digest)
        return CommittedCertificate(slot.preprepare, commits)
