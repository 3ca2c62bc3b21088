"""Relayed votes: backups hand their votes to the primary, which passes quorums on.

With `ReplicaSettings.relay_votes` a backup sends its PREPAREs, COMMITs and
RESULTs to the primary alone, and the primary passes them on to everyone in
one RELAY frame: fewer frames per request in a large network, for one more
hop per phase. A primary may withhold or lose a relay, so a backup whose
slot has not moved for `fallback_s` after it voted goes back to all-to-all
voting for that slot, and a peer that sees a backup's vote come straight to
it joins all-to-all for that slot too, or the backup would wait in vain.

This part owns the RESULTs waiting for the next tick and whether the votes
being taken in came in a relay; the slots carry when they were voted and
whether they went all-to-all (`pbft.slot.Slot`). It decides where a vote
goes and returns the effects; the replica carries them out.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

from pbft.effects import Broadcast, Effect, SendTo
from pbft.messages import MAX_VOTES, Commit, Prepare, Relay, ResultVote
from pbft.slot import Slot


class VoteRelay:
    def __init__(self, enabled: bool, fallback_s: float) -> None:
        self.enabled = enabled
        self.fallback_s = fallback_s
        # RESULTs to send at the next tick in one RELAY: our own, and as primary of a
        # relaying network every kept one.
        self.queue: list[ResultVote] = []
        self.taking_in = False  # the votes being handled came in a relay, not straight from their sender

    @contextmanager
    def unpacking(self) -> Iterator[None]:
        """While the votes of one RELAY are handled."""
        assert not self.taking_in, "a relay inside a relay"
        self.taking_in = True
        try:
            yield
        finally:
            self.taking_in = False

    def to_primary(self, is_primary: bool) -> bool:
        """Whether our votes go to the primary alone (we are a backup of a relaying network)."""
        return self.enabled and not is_primary

    def send_vote(self, vote: Prepare | Commit, slot: Slot, now: float, primary: int, is_primary: bool) -> Effect:
        """Where our vote of `slot` goes: to the primary, or while the slot is all-to-all, to all."""
        if self.to_primary(is_primary) and not slot.all_to_all:
            slot.voted_at = now
            return SendTo(primary, vote)
        return Broadcast(vote)

    def joins_all_to_all(self, vote: Prepare | Commit, slot: Slot | None, view: int, primary: int, is_primary: bool) -> bool:
        """A backup's vote that came straight from it: it gave up waiting for the primary's
        relay of this slot, so we vote to everyone in it too."""
        return (
            self.to_primary(is_primary)
            and not self.taking_in
            and vote.sender != primary
            and slot is not None
            and not slot.all_to_all
            and vote.view == view
        )

    def overdue(self, slots: Iterable[Slot], now: float) -> list[Slot]:
        """Slots whose relay is later than `fallback_s` after our vote."""
        return [
            slot for slot in slots
            if not slot.committed and not slot.all_to_all and slot.voted_at is not None
            and now - slot.voted_at >= self.fallback_s
        ]

    @staticmethod
    def go_all_to_all(slot: Slot, me: int, view: int) -> list[Effect]:
        """Our votes of `slot` again, to everyone, and every later one too."""
        slot.all_to_all = True
        return [
            Broadcast(vote) for vote in (slot.prepares.get(me), slot.commits.get(me))
            if vote is not None and vote.view == view
        ]

    def queue_result(self, vote: ResultVote, primary: int, is_primary: bool) -> list[Effect]:
        self.queue.append(vote)
        return self.flush(primary, is_primary) if len(self.queue) >= MAX_VOTES else []

    def flush(self, primary: int, is_primary: bool) -> list[Effect]:
        """The RESULTs queued since the last tick, as one frame: verdicts in node ledgers are
        not on any client's path, so they can wait for company. A peer then takes in one
        frame per tick, not one per build and node. A backup of a relaying network sends
        its own to the primary, which passes them on with the others at its next tick;
        every other node sends to all."""
        if not self.queue:
            return []
        relay, self.queue = Relay(tuple(self.queue)), []
        assert len(relay.votes) <= MAX_VOTES
        return [SendTo(primary, relay) if self.to_primary(is_primary) else Broadcast(relay)]
