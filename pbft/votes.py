"""Certified results: every node's signed RESULT for each executed build, and the verdict.

A build's verdict is "certified" once 2f+1 distinct nodes voted the same
agreed result, "disputed" once no result can get there any more, and
"pending" until then (`pbft.quorum.verdict`); "expired" if the client
table forgot the build before its verdict reached this node (it was down or
behind while its peers served and then forgot the votes). Only a node's first vote for a
build counts; a second one with another result proves its sender faulty, and while the
verdict is open that evidence is kept, sent on to every member, and leaves the sender out
of the picked builders' agreement (`pbft.quorum.verdict`, docs/faults.md). A node that missed votes (it was down, or the votes came
before it ordered the build and were lost with its memory) asks its peers
for them, with a backoff per build, until the verdict is decided; so after
any fault heals every honest node holds the same verdict.

Votes are held in memory only until their build's verdict is decided; then
only who voted is (a bit per node) and a hash of the certified result, so that
a node's memory does not grow with an hour of builds' signed votes. Every kept
vote is in the store, which answers a peer's VOTE-FETCH (the ServeVotes effect).

After a verdict is certified, a vote for the certified result can change
nothing and show nothing new: the replica takes it in unchecked and unkept
(`confirms`). A vote against it is still checked and kept, so that every
ledger shows which node dissented.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from pbft.build import Result
from pbft.membership import Membership
from pbft.messages import ResultVote
from pbft.quorum import verdict

Key = tuple[str, int]  # (client, timestamp)
BACKOFF_CAP = 4  # at most retry_s * 2**4 between asks about one build: soon after a partition heals
# Asks about one build after which a node that learnt it builds it, however few were
# answered: perhaps no peer built it (all of them learnt it too). A minute, at 2 s.
MAX_ASKS = 4


class Counted(NamedTuple):
    """What `ResultVotes.add` made of a vote."""

    kept: bool
    decided: tuple[str, dict | None] | None = None  # (state, agreed result) if this vote decided the verdict
    evidence: tuple[ResultVote, ResultVote] | None = None  # its sender's two different signed results
    proof: tuple[ResultVote, ...] = ()  # a certified verdict's votes (`pbft.ci.verdictlog`)


class Ask:
    """Our VOTE-FETCHes about one undecided build: when the next is due, how many went out,
    and how many of them a vote for the build came back after (an answer)."""

    __slots__ = ("due_at", "sent", "answered", "heard")

    def __init__(self, due_at: float) -> None:
        self.due_at = due_at
        self.sent = 0
        self.answered = 0
        self.heard = False  # a vote came in since the last ask went out


class ResultVotes:
    def __init__(self, members_at: Callable[[int], Membership], retry_s: float) -> None:
        """`members_at(seq)`: the nodes whose votes count for a build ordered at `seq`, and f
        (`pbft.epochs`: a change of the membership does not change an earlier build's quorum)."""
        self.members_at, self.retry_s = members_at, retry_s
        self.votes: dict[Key, dict[int, ResultVote]] = {}  # undecided executed builds: their votes so far
        self.voters: dict[Key, int] = {}  # decided builds: a bit per node whose vote was kept
        self.seq: dict[Key, int] = {}
        self.chosen: dict[Key, tuple[int, ...]] = {}  # builds only some members build: which
        self.decided: dict[Key, str] = {}
        # Certified builds: hash() of the agreed result (a 64-bit SipHash-keyed value a
        # faulty node cannot aim at), to tell a confirming late vote from a dissent.
        self.certified: dict[Key, int] = {}
        self.asks: dict[Key, Ask] = {}  # undecided builds we wait for, or ask about
        # Undecided builds: the second result of each sender that signed two (its first is in
        # `votes`), the evidence that it is faulty. At most one a sender, and gone once decided.
        self.proven: dict[Key, dict[int, ResultVote]] = {}
        # One VOTE-FETCH per half retry period: a node that learnt thousands of builds by
        # state transfer fills their verdicts at a steady pace its peers can answer.
        self.last_fetch_at = float("-inf")

    def __contains__(self, key: Key) -> bool:
        """Whether `key` executed here and is not forgotten: its votes count."""
        return key in self.seq

    def ordered(self, key: Key, seq: int, chosen: tuple[int, ...] = ()) -> None:
        """The build executed at `seq` here: its votes count from now on. `chosen`: the
        builders the order picked for it, if not all members (`pbft.builders`)."""
        if key not in self.decided:
            self.votes.setdefault(key, {})
        self.seq[key] = seq
        if chosen:
            self.chosen[key] = chosen

    def has_vote(self, key: Key, sender: int) -> bool:
        """Whether a vote of `sender` for the ordered build `key` is kept already."""
        if key in self.decided:
            return bool(self.voters[key] & (1 << sender))
        return sender in self.votes[key]

    def confirms(self, vote: ResultVote) -> bool:
        """Whether `vote` is for a certified build and agrees with its verdict."""
        certified = self.certified.get(vote.key)
        return certified is not None and certified == hash(vote.result.agreed_key())

    def add(self, vote: ResultVote) -> Counted:
        """Keep a sender's first vote for an ordered build; a second one with another result
        is evidence against its sender (kept while the verdict is open, one per sender).
        Says whether the vote was kept, the verdict if it is decided now, and the evidence
        if this vote made some."""
        members = self.members_at(self.seq.get(vote.key, 0))
        assert vote.key in self.seq and vote.sender in members, "a vote for a build not ordered here"
        if vote.key in self.decided:
            bit = 1 << vote.sender
            if self.voters[vote.key] & bit:
                return Counted(False)
            self.voters[vote.key] |= bit
            return Counted(True)
        ask = self.asks.get(vote.key)
        if ask is not None and ask.sent and not ask.heard:
            ask.heard, ask.answered = True, ask.answered + 1
        held = self.votes[vote.key]
        first = held.get(vote.sender)
        if first is None:
            held[vote.sender] = vote
            decided, proof = self._decide(vote.key, members)
            return Counted(True, decided, proof=proof)
        if first.result.agreed_key() == vote.result.agreed_key() or vote.sender in self.proven.get(vote.key, {}):
            return Counted(False)
        self.proven.setdefault(vote.key, {})[vote.sender] = vote
        decided, proof = self._decide(vote.key, members)
        return Counted(False, decided, (first, vote), proof)

    def _decide(self, key: Key, members: Membership) -> tuple[tuple[str, dict | None] | None, tuple[ResultVote, ...]]:
        """((state, agreed result), proof) if the votes held for `key` decide its verdict now; the
        proof, of a certified one: the votes for its result, and both of each node proven to sign two."""
        held = self.votes[key]
        proven = self.proven.get(key, {})
        state, agreed = verdict({sender: v.result.agreed_key() for sender, v in held.items()}, members.n, members.f,
                                self.chosen.get(key, ()), frozenset(proven))
        if state == "pending":
            return None, ()
        assert len(held) <= members.n
        self.decided[key] = state
        self.asks.pop(key, None)
        self.proven.pop(key, None)
        del self.votes[key]
        self.voters[key] = sum(1 << sender for sender in held)
        if agreed is None:
            return (state, None), ()
        self.certified[key] = hash(agreed)
        proof = tuple(v for sender, v in held.items() if v.result.agreed_key() == agreed or sender in proven)
        return (state, next(v.result.agreed() for v in held.values() if v.result.agreed_key() == agreed)), (
            *proof, *proven.values())

    def settle(self, key: Key, state: str, result: Result) -> bool:
        """The order decided the verdict of the ordered build `key` (`pbft.cancels`): `state`
        with `result`, whatever its votes said or will say. Votes held stay kept (who voted:
        the evidence), and later ones count as confirming or dissenting as for a certified
        verdict. Returns whether it changed anything."""
        assert key in self.seq, "a verdict for a build not ordered here"
        if self.decided.get(key) == state:
            return False
        held = self.votes.pop(key, None)
        if held is not None:
            self.voters[key] = sum(1 << sender for sender in held)
            self.asks.pop(key, None)
            self.proven.pop(key, None)
        self.decided[key] = state
        self.certified[key] = hash(result.agreed_key())
        return True

    def expect(self, key: Key, now: float, *, at_once: bool = False) -> None:
        """Our part is done (we voted, or learnt the build without running it): if the
        verdict is still open `retry_s` from now (or now), ask the peers for their votes."""
        if key in self.votes and key not in self.asks:
            self.asks[key] = Ask(now if at_once else now + self.retry_s)

    def open_after_asking(self, key: Key, times: int, now: float) -> bool | None:
        """Whether the verdict of `key` is still open after `times` of our asks were answered
        (a vote for it came back after each) and the last answers had until the next ask
        would be due; or after MAX_ASKS asks, answered or not. None while neither.

        Judged when an ask goes out, a busy peer's slow answer would make a node rebuild
        what was certified long ago; counted by asks sent, so would answers its peers
        dropped because they waited too long for a node busy adopting hours of history."""
        if key not in self.votes:
            return False  # decided, or forgotten
        ask = self.asks.get(key)
        if ask is None or now < ask.due_at:
            return None
        return True if ask.answered >= times or ask.sent >= MAX_ASKS else None

    def due(self, now: float, limit: int) -> list[Key]:
        """Undecided builds to ask about now, oldest first; each is asked again later, doubling."""
        if now < self.last_fetch_at + self.retry_s / 2:
            return []
        keys = [key for at, key in sorted((ask.due_at, key) for key, ask in self.asks.items() if ask.due_at <= now)]
        keys = keys[:limit]
        if keys:
            self.last_fetch_at = now
        for key in keys:
            ask = self.asks[key]
            ask.sent += 1
            ask.heard = False
            ask.due_at = now + self.retry_s * 2 ** min(ask.sent, BACKOFF_CAP)
        return keys

    def forget(self, keys: list[Key]) -> list[tuple[Key, int]]:
        """Drop builds whose requests the client table forgot. Returns those of them whose
        verdict this node never learnt, with their sequence numbers."""
        undecided = [(key, self.seq[key]) for key in keys if key in self.votes]
        for key in keys:
            for table in (self.votes, self.voters, self.seq, self.decided, self.certified, self.asks, self.chosen,
                          self.proven):
                table.pop(key, None)
        return undecided
