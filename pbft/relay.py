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
goes and returns the effects; the replica carries them out. Its rules read
where this node sits (`Seat`, which `pbft.views.Views` is) and the slots of
the log, handed in at each call rather than the replica: they are all it reads.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Mapping, Protocol

from pbft.effects import Broadcast, Effect, SendTo
from pbft.messages import MAX_VOTES, Commit, Message, Prepare, Relay, ResultVote
from pbft.seat import Seat
from pbft.slot import Slot


class Log(Protocol):
    """The message log (`pbft.message_log.MessageLog`), as far as a relay asks: its slots,
    read afresh for each vote, as a vote taken in may start a view with new ones."""

    @property
    def slots(self) -> Mapping[int, Slot]: ...


class KeptResults(Protocol):
    """The RESULT votes a node keeps (`pbft.votes.ResultVotes`), as far as a relay asks."""

    def __contains__(self, key: tuple[str, int]) -> bool: ...

    def has_vote(self, key: tuple[str, int], sender: int) -> bool: ...


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

    def send(self, vote: Prepare | Commit, slots: Mapping[int, Slot], seat: Seat, now: float) -> Effect:
        """Broadcast our vote, or in a relaying network hand it to the primary, which passes a quorum on."""
        return self.send_vote(vote, slots[vote.seq], now, seat.primary(), seat.is_primary)

    def take_in(
        self, relay: Relay, seat: Seat, log: Log, results: KeptResults, handle: Callable[[Message], str | None],
    ) -> str | None:
        """Take in each relayed vote as if it had come alone (`handle`). Votes we hold already
        (our own among them) are skipped before their signature is checked: they tell us nothing."""
        first_problem = None
        with self.unpacking():
            for vote in relay.votes:
                if vote.sender == seat.me or held(vote, log, results):
                    continue
                problem = handle(vote)
                first_problem = first_problem or problem
        return first_problem

    def joined_all_to_all(self, vote: Prepare | Commit, slots: Mapping[int, Slot], seat: Seat) -> list[Effect]:
        """Our votes of `vote`'s slot to everyone, if its sender gave up on the primary's relay of it."""
        slot = slots.get(vote.seq)
        if self.joins_all_to_all(vote, slot, seat.view, seat.primary(vote.view), seat.is_primary):
            return self.go_all_to_all(slot, seat.me, seat.view)
        return []

    def fall_back(self, slots: Mapping[int, Slot], seat: Seat, now: float) -> list[Effect]:
        """Slots whose relay is overdue go back to all-to-all voting (see relay_fallback_s)."""
        if not self.to_primary(seat.is_primary) or seat.changing:
            return []
        return [
            effect for slot in self.overdue(slots.values(), now) for effect in self.go_all_to_all(slot, seat.me, seat.view)
        ]

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


def held(vote: Prepare | Commit | ResultVote, log: Log, results: KeptResults) -> bool:
    """Whether this very vote is kept already: in its slot of the log, or among the RESULTs."""
    if isinstance(vote, ResultVote):
        return vote.key in results and results.has_vote(vote.key, vote.sender)
    slot = log.slots.get(vote.seq)
    if slot is None:
        return False
    kept = (slot.prepares if isinstance(vote, Prepare) else slot.commits).get(vote.sender)
    return kept == vote
