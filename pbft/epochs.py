"""Epochs: stretches of the order with one membership (Lamport, Malkhi and Zhou, "Reconfiguring
a state machine"; etcd/raft's configuration changes, one at a time).

A change of the network document that adds, removes or re-keys a node, or changes f
(`pbft.networks`), executes at some sequence number s like any request. From there:

- s is a checkpoint (`pbft.checkpoints`), signed by the old members and made stable by 2f+1 of
  them, the old f;
- nothing after s is ordered under the old membership: a primary assigns nothing past a batch
  holding a change until that change is in force, and every node drops what it held above s;
- once the checkpoint at s is stable here, the new epoch begins: its members, its f, and its
  views counted from 0, every message of it carrying `epoch = s`. Every honest node enters it
  at the same point of the order with the same view, whether it executed the change, learnt it
  by state transfer or replays it after a restart. A message of an older epoch counts for
  nothing in this one; one of the next epoch waits in the buffer for future views.

Waiting for the stable checkpoint makes every view change of the new epoch start from s or
later: no certificate from before s, signed by the old members, is ever re-issued in it.
State transfer ends a chunk at each epoch boundary, so that the receiver checks each proof
with the members that signed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbft.membership import Membership

MAX_PAST = 16  # past epochs' members kept, for the votes of builds ordered in them


@dataclass(frozen=True)
class Epoch:
    start: int  # the sequence number of the change that began it; 0: the first
    members: Membership


class Epochs:
    def __init__(self, first: Membership) -> None:
        self.current = Epoch(0, first)
        # A change executed here made it; it begins once the checkpoint at its start is stable.
        self.pending: Epoch | None = None
        self.past: list[Epoch] = []  # the epochs before the current one, oldest first (bounded)
        # Where every epoch after the first began: state transfer ends chunks there. A few
        # integers a year; never forgotten, so a node far behind is served chunk by chunk.
        self.boundaries: list[int] = []

    @property
    def members(self) -> Membership:
        return self.current.members

    def pend(self, start: int, members: Membership) -> None:
        """A change of the membership executed at `start`."""
        assert self.pending is None and start > self.current.start, "one change of the membership at a time"
        self.pending = Epoch(start, members)

    def begin(self) -> None:
        """The pending epoch begins (its boundary checkpoint is stable)."""
        assert self.pending is not None
        self.past = [*self.past, self.current][-MAX_PAST:]
        self.current, self.pending = self.pending, None
        self.boundaries.append(self.current.start)

    def members_at(self, seq: int) -> Membership:
        """The members that order `seq` (a checkpoint at an epoch's start is the epoch before's)."""
        for epoch in (self.pending, self.current, *reversed(self.past)):
            if epoch is not None and seq > epoch.start:
                return epoch.members
        return (self.past[0] if self.past else self.current).members

    def boundary_within(self, first: int, last: int) -> int | None:
        """The first epoch boundary in [first, last], if any."""
        return next((start for start in self.boundaries if first <= start <= last), None)
