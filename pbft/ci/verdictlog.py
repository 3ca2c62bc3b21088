"""The verdict log: every certified verdict, in an order the network agreed, as the leaves of a
Merkle tree hashed as RFC 9162 hashes one (`pbft.merkle`), so that anyone holding a head can
check later that a verdict is in it and that a later head extends it (docs/verdict-log.md).

Verdicts are certified off the order, each node at its own moment, so a log that took them
as each node saw them certified would differ from node to node. Here a certified verdict's
signed votes (a `VerdictProof`) ride beside a batch, bound by the batch's digest, and every
node appends, where that batch executes, the leaves of the proofs that check, by rules of the
order alone: the same leaves in the same places on every node, whether it executed the batch,
learnt it by state transfer or replays it after a restart. Each checkpoint signs the log's
head (`Checkpoint.log_size`, `log_root`) beside the state digest, so 2f+1 checkpoints alike
are a co-signed head; a batch that carries verdicts alone is a checkpoint too, so that an idle
network's last verdicts are in a co-signed head soon after they are certified.

A proof checks where it executes if its votes are all for one build that executed earlier at
the sequence number they name, and still in the client table; each is signed by a member of
the epoch that ordered it; and they certify one result by the verdict rule
(`pbft.quorum.verdict`, with the builders the order picked and any node the proof shows
signed two results). A build whose verdict is logged already, or forgotten, adds nothing.

Every node keeps the proofs it certified and has not seen logged (`pending`, at most
MAX_PENDING, the oldest dropped first); a primary proposes them beside its batches, and
alone in a batch once the oldest waited VERDICT_DELAY_S, so that a busy network logs
verdicts in the batches it orders anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from pbft.authenticator import Authenticator
from pbft.encoding import canonical
from pbft.membership import Membership
from pbft.merkle import Frontier, leaf_hash
from pbft.messages import MAX_PROOFS, ResultVote, VerdictProof
from pbft.quorum import verdict

Key = tuple[str, int]
MAX_PENDING = 256  # certified verdicts a node holds for proposing: the primary logs them within a batch or a second
VERDICT_DELAY_S = 1.0  # the longest a certified verdict waits for a batch of requests to ride beside


def leaf_data(seq: int, client: str, timestamp: int, agreed: dict) -> bytes:
    """The bytes of a verdict's leaf: the build (its client's request, ordered at `seq`) and the
    agreed part of its result, canonical JSON, so that a certificate's holder can make them."""
    return canonical({"client": client, "result": agreed, "seq": seq, "timestamp": timestamp})


@dataclass(frozen=True)
class Leaf:
    """One verdict appended to the log, as the store keeps it."""

    position: int
    key: Key
    seq: int  # where its build was ordered
    data: bytes


def proof_problem(proof: VerdictProof, members_at: Callable[[int], Membership], auth: Authenticator,
                  chosen: tuple[int, ...]) -> tuple[str | None, bytes]:
    """Why `proof` does not certify one result of its build, or None with the verdict's leaf data.
    `members_at`: the members of the epoch that ordered a sequence number; `chosen`: the builders
    the order picked for the build, if not all members (`pbft.builders`)."""
    first = proof.votes[0]
    if any(vote.key != first.key or vote.seq != first.seq for vote in proof.votes):
        return "votes_for_two_builds", b""
    members = members_at(first.seq)
    by_sender: dict[int, list[ResultVote]] = {}
    for vote in proof.votes:
        if members.signature_problem(vote, auth) is not None:
            return "vote_not_signed_by_a_member", b""
        by_sender.setdefault(vote.sender, []).append(vote)
    proven = set()
    for sender, votes in by_sender.items():
        if len(votes) > 2 or (len(votes) == 2 and votes[0].result.agreed_key() == votes[1].result.agreed_key()):
            return "votes_repeated", b""
        if len(votes) == 2:
            proven.add(sender)  # it signed two results: the evidence counts it for either
    said = {sender: votes[0].result.agreed_key() for sender, votes in by_sender.items()}
    state, agreed = verdict(said, members.n, members.f, chosen, frozenset(proven))
    if state != "certified":
        return "not_certified", b""
    result = next(vote.result for vote in proof.votes if vote.result.agreed_key() == agreed)
    return None, leaf_data(first.seq, first.client, first.timestamp, result.agreed())


class VerdictLog:
    def __init__(self) -> None:
        self.tree = Frontier()
        # Builds still in the client table whose verdict is logged, and where: a proof of one
        # again adds nothing. Forgotten with the client table's entries, on every node alike.
        self.logged: dict[Key, int] = {}
        # Certified here, not logged yet: (proof, when certified), oldest first.
        self.pending: dict[Key, tuple[VerdictProof, float]] = {}
        self.proposed: dict[Key, tuple[VerdictProof, float]] = {}  # ours, as primary, in batches not executed yet

    def head(self) -> tuple[int, str]:
        """(size, root as hex): what a checkpoint signs; the root is "" while the log is empty."""
        return (self.tree.size, self.tree.root().hex() if self.tree.size else "")

    def certified(self, key: Key, proof: VerdictProof, now: float) -> None:
        """This node holds the votes that certified `key`'s verdict: to propose, unless logged."""
        if key in self.logged or key in self.proposed:
            return
        self.pending[key] = (proof, now)
        while len(self.pending) > MAX_PENDING:
            del self.pending[next(iter(self.pending))]

    def due(self, now: float) -> bool:
        """Whether a primary should order a batch for the pending verdicts alone."""
        oldest = next(iter(self.pending.values()), None)
        return oldest is not None and (len(self.pending) >= MAX_PROOFS or now >= oldest[1] + VERDICT_DELAY_S)

    def overdue(self, now: float, grace_s: float) -> Key | None:
        """The oldest verdict certified here and not logged `grace_s` after a primary would have
        proposed it alone (VERDICT_DELAY_S), or None: a backup's view-change timer runs for it as
        for a request it waits for, so that a primary that strips verdicts from its batches, or
        lost one that carried them, does not keep the log short for good."""
        oldest = next(iter(self.pending.items()), None)
        if oldest is None or now < oldest[1][1] + VERDICT_DELAY_S + grace_s:
            return None
        return oldest[0]

    def propose(self, room: int) -> tuple[VerdictProof, ...]:
        """Up to MAX_PROOFS pending proofs, oldest first and `room` bytes in all (`batch_bytes`),
        for the batch a primary issues now."""
        keys: list[Key] = []
        for key, (proof, _) in self.pending.items():
            room -= proof.encoded[1]
            if len(keys) == MAX_PROOFS or room < 0:
                break
            keys.append(key)
        for key in keys:
            self.proposed[key] = self.pending.pop(key)
        return tuple(self.proposed[key][0] for key in keys)

    def unpropose(self) -> None:
        """The view changes: our batches not executed may be lost, and with them their proofs."""
        self.pending.update(self.proposed)
        self.proposed.clear()

    def append(self, key: Key, seq: int, data: bytes) -> Leaf:
        """Append a checked verdict's leaf: the only place the log grows."""
        leaf = Leaf(self.tree.size, key, seq, data)
        self.tree.append(leaf_hash(data))
        self.logged[key] = leaf.position
        self.pending.pop(key, None)
        self.proposed.pop(key, None)
        return leaf

    def withdraw(self, key: Key) -> None:
        """The order settled `key`'s verdict otherwise (its cancel executed): ours to propose no
        more, nor for a backup to wait for (`overdue`); a batch that carries it already logs it
        or not by the rules above, on every node alike."""
        self.pending.pop(key, None)

    def forget(self, keys: Iterable[Key]) -> None:
        """The client table forgot these builds: a proof of one is refused from now on."""
        for key in keys:
            self.logged.pop(key, None)
            self.pending.pop(key, None)
            self.proposed.pop(key, None)

    def restore(self, leaves: Iterable[tuple[Key, bytes]], kept: Callable[[Key], bool]) -> None:
        """After a restart: the leaves the store holds, in order, and which builds the client
        table still holds (those whose verdicts count as logged)."""
        assert self.tree.size == 0, "restore a fresh log"
        for key, data in leaves:
            if kept(key):
                self.logged[key] = self.tree.size
            self.tree.append(leaf_hash(data))
