"""How far a node may vote in a view without an fsync: the vote horizon.

A PRE-PREPARE or PREPARE an honest node sent must never be followed by another
for the same view and sequence number with a different digest: two prepared
certificates for one slot would let two requests commit there. The node keeps
that promise across a `kill -9` because every step it sends from is written
before it is sent, and a killed process loses nothing the operating system
holds. A power cut, or a crash of the machine, loses what was written and not
fsynced; fsyncing each PRE-PREPARE or PREPARE cost every node one of its four
fsyncs per request (starting the build was another: `pbft.effects.must_sync`).

So those steps are written unsynced under a horizon that was fsynced before
them: "in this view (of this epoch), this node may have sent votes it does not
remember up to sequence number `through`". A vote past the horizon, or in a
later view, first moves the horizon up to the high watermark, and that step is
fsynced (`pbft.effects.KeepVoteHorizon`). A node that restarts after its
machine did (`Replica.restore(rebooted=True)`) keeps silent in that view up to
that sequence number: as a backup it sends no new PREPARE there, as the
primary it issues nothing there. It saves that silence with its state, so a
later restart without a reboot keeps it too, and a store that recorded another
boot than the machine's (`node.storage`) counts as rebooted until it writes
again.

Its COMMITs are fsynced with the prepared certificate they rest on (they
always were), so a view change still finds every request that may have
committed: a node that lost a PREPARE to a power cut lost a vote no COMMIT of
its own rests on. The price is paid after a reboot only: the node stays out of
at most a window of that view's slots, and as the primary its peers change
views past it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Horizon:
    """Votes in view `view` of epoch `epoch` up to `through` may have been sent and never
    fsynced; view -1: none. Views start again at 0 in each epoch (`pbft.epochs`)."""

    epoch: int = 0
    view: int = -1
    through: int = 0

    def covers(self, epoch: int, view: int, seq: int) -> bool:
        return (epoch, view) == (self.epoch, self.view) and seq <= self.through


class VoteHorizon:
    def __init__(self) -> None:
        self.durable = Horizon()  # as last moved: fsynced with the step that moved it
        # After a reboot: the horizon the store had, inside which this node's own votes
        # it no longer holds may have been sent. It votes nowhere inside it again.
        self.silent = Horizon()

    def cover(self, epoch: int, view: int, seq: int, high_watermark: int) -> Horizon | None:
        """About to vote at (epoch, view, seq): the horizon to fsync first, or None if it covers the vote already."""
        if self.durable.covers(epoch, view, seq):
            return None
        assert seq <= high_watermark, "a vote past the high watermark"
        self.durable = Horizon(epoch, view, high_watermark)
        return self.durable

    def may_vote(self, epoch: int, view: int, seq: int) -> bool:
        """Whether a new vote at (epoch, view, seq) keeps the promise after a reboot: outside
        the silent horizon. (Where the store gave back a vote of ours, the slot kept its
        PRE-PREPARE too, and we vote there no more.)"""
        return not self.silent.covers(epoch, view, seq)

    def restore(self, durable: Horizon, silent: Horizon, rebooted: bool) -> None:
        """After a reboot the node is silent inside the horizon it had fsynced; after any
        other restart, inside the one an earlier reboot left (saved with its state)."""
        self.durable = durable
        self.silent = durable if rebooted else silent
