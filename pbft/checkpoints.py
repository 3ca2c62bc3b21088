"""Checkpoints and the low watermark (OSDI'99 §4.3).

Every `interval` executed batches, and where a change of the network document
executes, a replica signs the digest of its state
(the hash chain over the ledger) and that of the network document it runs.
A checkpoint is stable once 2f+1 nodes, this one included, vouch for the
digests this replica has itself; its sequence number becomes the low
watermark h, and those 2f+1 signatures are the proof a view change or a
state transfer carries. Votes are kept only
from h up to two windows ahead, one per sender and sequence number, so a
faulty node can hold at most (2L/K) entries here, plus one off the interval
ahead of what this replica executed (it may be at a change not executed
here yet; a sender's newer one replaces it).
"""

from __future__ import annotations

from pbft.messages import Checkpoint


class Checkpoints:
    def __init__(self, interval: int, log_window: int) -> None:
        self.interval, self.log_window = interval, log_window
        # Matching votes that make a checkpoint stable (`pbft.quorum.commit_quorum` of the members).
        self.quorum = 0
        self.votes: dict[int, dict[int, Checkpoint]] = {}  # seq -> sender -> signed checkpoint
        # seq -> what this replica vouches for there (`Checkpoint.vouches`): its state digest, its
        # network document's digest and its verdict log's head
        self.own: dict[int, tuple[str, str, int, str]] = {}
        self.stable_seq = 0  # h
        self.stable_proof: tuple[Checkpoint, ...] = ()  # 2f+1 checkpoints proving h
        # Sequence numbers above h where a change of the network document executed: each is a
        # checkpoint too, the boundary between the documents (`pbft.networks`).
        self.boundaries: set[int] = set()
        # sender -> the sequence number of its one vote kept off the interval, which may be at a
        # boundary this replica has not executed yet
        self.ahead: dict[int, int] = {}

    def due(self, seq: int) -> bool:
        return seq % self.interval == 0 or seq in self.boundaries

    def boundary(self, seq: int) -> None:
        """A change of the network document executed at `seq`: a checkpoint is due there."""
        self.boundaries.add(seq)

    def add(self, vote: Checkpoint, last_executed: int) -> str | None:
        """Keep a peer's (or our own) signed checkpoint; return why not, if it is not kept.
        One beyond `last_executed` off the interval may be at a change we have not executed."""
        off_interval = not self.due(vote.seq)
        if off_interval and vote.seq <= last_executed:
            return "not_at_interval"
        if vote.seq <= self.stable_seq:
            return "stale"
        if vote.seq > self.stable_seq + 2 * self.log_window:
            return "out_of_window"
        if vote.sender in self.votes.get(vote.seq, {}):
            return "duplicate"
        if off_interval:
            problem = self._keep_ahead(vote)
            if problem is not None:
                return problem
        self.votes.setdefault(vote.seq, {})[vote.sender] = vote
        return None

    def _keep_ahead(self, vote: Checkpoint) -> str | None:
        """Make room for the sender's one vote off the interval: its newer one replaces an
        older one that did not turn out to be at a boundary. (An honest node signs boundaries
        in order, and the latest is the one a change of the membership waits for.)"""
        previous = self.ahead.get(vote.sender)
        if previous is not None and previous > self.stable_seq and not self.due(previous):
            if previous > vote.seq:
                return "behind_its_newer_one"
            votes = self.votes.get(previous, {})
            votes.pop(vote.sender, None)
            if not votes:
                self.votes.pop(previous, None)
        self.ahead[vote.sender] = vote.seq
        return None

    def computed(self, seq: int, vouched: tuple[str, str, int, str]) -> None:
        """What this replica vouches for at `seq` (`Checkpoint.vouches`): what a stable proof must match."""
        self.own[seq] = vouched

    def adopt_proof(self, seq: int, proof: tuple[Checkpoint, ...]) -> None:
        """Votes from a verified 2f+1 proof (a view change or state transfer carried it). Each
        replaces what its sender said here before: a faulty sender may have signed another
        digest to us first, and a node with no vote of its own there (one that joins at `seq`)
        needs every vote of the proof."""
        assert all(checkpoint.seq == seq for checkpoint in proof)
        self.boundaries.add(seq)  # 2f+1 signed a checkpoint there: one off the interval (a batch of verdicts alone) too
        votes = self.votes.setdefault(seq, {})
        for checkpoint in proof:
            votes[checkpoint.sender] = checkpoint

    def try_stable(self, seq: int) -> bool:
        """Make `seq` stable if 2f+1 votes match our own digest there; forget what it supersedes."""
        own = self.own.get(seq)
        if own is None or seq <= self.stable_seq:
            return False
        proof = tuple(vote for vote in self.votes.get(seq, {}).values() if vote.vouches() == own)
        if len(proof) < self.quorum:
            return False
        assert len({vote.sender for vote in proof}) == len(proof), "one vote per sender"
        self.stable_seq, self.stable_proof = seq, proof
        self.votes = {s: votes for s, votes in self.votes.items() if s >= seq}
        self.own = {s: digest for s, digest in self.own.items() if s >= seq}
        self.boundaries = {s for s in self.boundaries if s >= seq}
        self.ahead = {sender: s for sender, s in self.ahead.items() if s > seq}
        return True

    def restore(self, stable_seq: int, proof: tuple[Checkpoint, ...], stored: list[Checkpoint], me: int,
                last_executed: int) -> None:
        """Rebuild from the saved stable checkpoint and the CHECKPOINTs stored since, by the rules
        that took them (the boundaries up to `last_executed` are known by now): the store still
        holds a sender's votes off the interval that a newer one replaced, and one that turned
        out to be at no boundary."""
        assert self.stable_seq == 0 and not self.votes, "restore fresh checkpoints"
        self.stable_seq, self.stable_proof = stable_seq, proof
        # Where we signed one off the interval we executed a batch of verdicts alone: a checkpoint
        # here as everywhere, which the replayed changes do not tell.
        self.boundaries |= {checkpoint.seq for checkpoint in stored
                            if checkpoint.sender == me and stable_seq < checkpoint.seq <= last_executed}
        for checkpoint in sorted(stored, key=lambda checkpoint: checkpoint.seq):
            if checkpoint.seq == stable_seq:
                self.votes.setdefault(checkpoint.seq, {})[checkpoint.sender] = checkpoint
            elif checkpoint.seq < stable_seq or self.add(checkpoint, last_executed) is not None:
                continue
            if checkpoint.sender == me:
                self.computed(checkpoint.seq, checkpoint.vouches())
