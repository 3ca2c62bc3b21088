"""What a node sends, honest or Byzantine (issue 3, item 6).

A Byzantine node runs an honest replica and rewrites its outgoing messages:
each behaviour turns one send the replica asked for into zero or more sends,
signed with the node's own key (it knows no other). Rewriting the outbox
keeps every behaviour small and lets it act in whatever role the node holds.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

from pbft.build import Operation, Result
from pbft.messages import (
    Checkpoint, Commit, Message, PrePrepare, Prepare, Relay, Reply, Request, ResultVote, ViewChange, batch_digest, signed,
)
from pbft.sim.auth import SimAuthenticator, keyed_signature
from pbft.sim.faults import CENSORED_CLIENT, NodeFault
from pbft.sim.honest import Honest, Send
from pbft.sim.network import Address
from pbft.sim.primaries import DropProofs, Fill, Pad, SlowPrimary


def bogus_digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def flipped(result: Result) -> Result:
    """The verdict a liar reports: artifacts become other bytes under the same exit code,
    any other success becomes failure, and anything else success."""
    if result.artifacts is not None:
        return replace(result, artifacts="sha256:" + bogus_digest("lie", result.artifacts), reason="lie")
    if result.status == "success":
        return Result("failure", 1, result.commit, "lie")
    return Result("success", 0, result.commit, "lie")


class Silent(Honest):
    kind = "silent"

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        return []


class CrashAfter(Honest):
    kind = "crash-after"

    def __init__(self, messages: int) -> None:
        self.remaining = messages

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if self.remaining <= 0:
            return []
        self.remaining -= 1
        return [(dst, message, 0.0)]


class Delay(Honest):
    kind = "delay"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        return [(dst, message, self.delay_s)]


class Lie(Honest):
    kind = "lie"

    def __init__(self, auth: SimAuthenticator) -> None:
        self.auth = auth

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if isinstance(message, Reply):
            message = signed(replace(message, result=flipped(message.result)), self.auth.sign)
        return [(dst, message, 0.0)]


class Equivocate(Honest):
    """Tells half of the nodes one thing and the other half another.

    As primary it pre-prepares a different valid batch at the same sequence
    number for half of the backups; as a backup it votes for a digest
    nobody proposed towards half of the nodes.
    """

    kind = "equivocate"

    def __init__(self, node: int, n: int, auth: SimAuthenticator) -> None:
        self.node = node
        self.n = n
        self.auth = auth
        self.known: dict[tuple[str, int], Request] = {}  # valid client requests seen, to build other batches from
        self.alternatives: dict[tuple[int, int], PrePrepare | None] = {}  # (view, seq) -> the other pre-prepare

    def observe(self, message: Message) -> list[Send]:
        requests = message.batch if isinstance(message, PrePrepare) else (message,) if isinstance(message, Request) else ()
        for request in requests:
            self.known[request.key] = request
        return []

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if not isinstance(dst, int) or (dst - self.node) % self.n <= self.n // 2:
            return [(dst, message, 0.0)]
        if isinstance(message, PrePrepare):
            other = self._alternative(message)
            return [(dst, other or message, 0.0)]
        if isinstance(message, Relay):
            # As a relaying primary: our own commit rides in the relay, so lie there.
            votes = tuple(self._other_vote(vote) if vote.sender == self.node else vote for vote in message.votes)
            return [(dst, Relay(votes), 0.0)]
        return [(dst, self._other_vote(message), 0.0)]

    def _other_vote(self, message: Message) -> Message:
        """Our vote for the batch we pre-prepared for this half as primary (so that it may gather
        a quorum there), else for a digest nobody proposed; other messages as they are."""
        if isinstance(message, (Prepare, Commit)):
            alternative = self.alternatives.get((message.view, message.seq))
            digest = alternative.digest if alternative is not None else bogus_digest(message.view, message.seq)
            message = replace(message, digest=digest)
        elif isinstance(message, Checkpoint):
            message = replace(message, state_digest=bogus_digest(message.seq))
        else:
            return message
        return signed(message, self.auth.sign)

    def _alternative(self, preprepare: PrePrepare) -> PrePrepare | None:
        slot = (preprepare.view, preprepare.seq)
        if slot not in self.alternatives:
            self.alternatives[slot] = self._build_alternative(preprepare)
        return self.alternatives[slot]

    def _build_alternative(self, preprepare: PrePrepare) -> PrePrepare | None:
        """Swap in another client's valid request, or reorder the batch; None if neither exists."""
        others = [request for key, request in self.known.items() if request not in preprepare.batch]
        if others:
            batch = preprepare.batch[:-1] + (others[-1],)
        elif len(preprepare.batch) > 1:
            batch = preprepare.batch[::-1]
        else:
            return None
        return signed(replace(preprepare, batch=batch, digest=batch_digest(batch, preprepare.verdicts)), self.auth.sign)


class EquivocateResults(Honest):
    """Builds honestly and signs its true RESULT for the peers of one half of the ring and
    the flipped one for the other half, in relays too: a picked builder that does so
    (`pbft.builders`) lets some honest nodes certify at once while others see the picked
    builders disagree. Otherwise honest, its replies to clients included."""

    kind = "equivocate-results"

    def __init__(self, node: int, n: int, auth: SimAuthenticator) -> None:
        self.node = node
        self.n = n
        self.auth = auth

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if not isinstance(dst, int) or (dst - self.node) % self.n <= self.n // 2:
            return [(dst, message, 0.0)]
        if isinstance(message, Relay):
            message = Relay(tuple(self._other(vote) for vote in message.votes))
        elif isinstance(message, ResultVote):
            message = self._other(message)
        return [(dst, message, 0.0)]

    def _other(self, vote: Message) -> Message:
        if not isinstance(vote, ResultVote) or vote.sender != self.node:
            return vote
        return signed(replace(vote, result=flipped(vote.result)), self.auth.sign)


class Censor(Honest):
    """Never lets its replica see a request of one client, straight from it or forwarded
    by a backup, and is otherwise honest. As primary it goes on ordering everybody
    else's requests, so the network looks healthy while that client's requests wait."""

    kind = "censor"

    def __init__(self, client: str) -> None:
        self.client = client

    def admits(self, message: Message) -> bool:
        return not (isinstance(message, Request) and message.client == self.client)


class WithholdRelay(Lie):
    """As the primary of a network that relays votes, never passes COMMITs on to one
    backup (the next node) and puts that backup's own votes first in the relays the
    others get, so they hold them before it gives up on the relay and votes to all.
    Everyone else sees a healthy primary. It also lies in its replies, so that a
    build with artifacts (2f+1 matching replies) needs the cut-out backup's."""

    kind = "withhold-relay"

    def __init__(self, node: int, n: int, auth: SimAuthenticator) -> None:
        super().__init__(auth)
        self.victim = (node + 1) % n

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if isinstance(message, Reply):
            return super().outgoing(dst, message)
        if isinstance(message, Relay):
            if dst == self.victim and any(isinstance(vote, Commit) for vote in message.votes):
                return []
            first = tuple(vote for vote in message.votes if vote.sender == self.victim)
            message = Relay(first + tuple(vote for vote in message.votes if vote.sender != self.victim))
        return [(dst, message, 0.0)]


class Forge(Honest):
    """Sends each message, then a tampered copy that names another node as sender
    (signed with its own key) or carries a signature from a key nobody trusts.
    """

    kind = "forge"

    def __init__(self, node: int, n: int, auth: SimAuthenticator, rng: random.Random) -> None:
        self.node = node
        self.n = n
        self.auth = auth
        self.stranger_secret = rng.randbytes(32)
        self.forged = 0

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        self.forged += 1
        return [(dst, message, 0.0), (dst, self._forgery(message), 0.0)]

    def _forgery(self, message: Message) -> Message:
        if isinstance(message, Relay):
            # An envelope has no signature to forge: forge what it carries.
            return Relay(tuple(self._forgery(vote) for vote in message.votes))
        victim = (self.node + 1 + self.forged % (self.n - 1)) % self.n
        tampered = _tampered(message, victim if self.forged % 2 else self.node)
        if self.forged % 2:
            return signed(tampered, self.auth.sign)
        return replace(tampered, sig=keyed_signature(self.stranger_secret, tampered.payload()))


class Flooder(Honest):
    """A Byzantine node that adds signed junk to what it sends, counted per destination."""

    def __init__(self, node: int, auth: SimAuthenticator) -> None:
        self.node = node
        self.auth = auth
        self.sent: dict[int, int] = {}

    def count(self, dst: int) -> int:
        """One more junk message to `dst`: how many so far."""
        self.sent[dst] = self.sent.get(dst, 0) + 1
        return self.sent[dst]


class ViewChangeSpam(Flooder):
    """Alongside each message to a node, VIEW-CHANGEs for views nobody asked for.

    Each is well formed and signed by this node (genesis checkpoint, no
    certificates), for a view far ahead and new each time, so a replica
    that keeps one per sender per view keeps all of them.
    """

    kind = "vc-spam"
    PER_SEND = 3
    LIMIT = 900  # per destination: enough to show unbounded growth, cheap to simulate

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        sends = [(dst, message, 0.0)]
        if not isinstance(dst, int):
            return sends
        for _ in range(min(self.PER_SEND, self.LIMIT - self.sent.get(dst, 0))):
            spam = ViewChange(1000 + self.count(dst), 0, (), (), self.node)
            sends.append((dst, signed(spam, self.auth.sign), 0.0))
        return sends


class AbsurdSeq(Flooder):
    """Now and then, a signed COMMIT and CHECKPOINT for a sequence number nobody will reach."""

    kind = "absurd-seq"
    SEQ = 10**12  # a multiple of every checkpoint interval the simulator draws
    EVERY = 40  # messages to one destination between two absurd pairs

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        sends = [(dst, message, 0.0)]
        if not isinstance(dst, int):
            return sends
        if self.count(dst) % self.EVERY == 1:
            view = getattr(message, "view", 0)
            commit = Commit(view, self.SEQ, bogus_digest("absurd", view), self.node)
            checkpoint = Checkpoint(self.SEQ, bogus_digest("absurd"), self.node)
            sends += [(dst, signed(commit, self.auth.sign), 0.0), (dst, signed(checkpoint, self.auth.sign), 0.0)]
        return sends


class VoteFlood(Flooder):
    """As soon as an honest node's RESULT vote reaches it, a buffer's worth of signed votes
    for requests that do not exist to every other node: one that keeps that honest vote
    as an early one (it has not ordered the request yet) loses it. At most four buffers
    per node. And for each honest CHECKPOINT, signed checkpoints at the sequence numbers
    after it, off the interval: a node behind must keep one that may be at a change of the
    network document it has not executed yet, never one per sequence number."""

    kind = "vote-flood"
    CHECKPOINTS = 60  # per destination: far more than the window holds at the interval

    def __init__(self, node: int, n: int, auth: SimAuthenticator, buffer: int) -> None:
        super().__init__(node, auth)
        self.n = n
        self.burst = buffer + 1
        self.limit = 4 * self.burst
        self.seen: set[tuple[str, int]] = set()
        self.checkpoints_sent: dict[int, int] = {}

    def observe(self, message: Message) -> list[Send]:
        if isinstance(message, Relay):
            return [send for vote in message.votes for send in self.observe(vote)]
        if isinstance(message, Checkpoint) and message.sender != self.node:
            return self._checkpoints_after(message)
        if not isinstance(message, ResultVote) or message.sender == self.node or message.key in self.seen:
            return []
        self.seen.add(message.key)
        sends = []
        for dst in range(self.n):
            if dst in (self.node, message.sender):
                continue
            for _ in range(min(self.burst, self.limit - self.sent.get(dst, 0))):
                count = self.count(dst)
                ghost = ResultVote(count, f"ghost-{count % 7}", 10**9 + count, Result("success", 0, "0" * 40), self.node)
                sends.append((dst, signed(ghost, self.auth.sign), 0.0))
        return sends

    def _checkpoints_after(self, honest: Checkpoint) -> list[Send]:
        sends = []
        for dst in range(self.n):
            if dst == self.node:
                continue
            for _ in range(3):
                sent = self.checkpoints_sent.get(dst, 0)
                if sent >= self.CHECKPOINTS:
                    break
                self.checkpoints_sent[dst] = sent + 1
                # A new sequence number each time, spread over the window ahead of the honest one.
                seq = honest.seq + 1 + sent
                junk = Checkpoint(seq, bogus_digest("ahead", sent), self.node, network=honest.network)
                sends.append((dst, signed(junk, self.auth.sign), 0.0))
        return sends


def _tampered(message: Message, sender: int) -> Message:
    if isinstance(message, (Prepare, Commit)):
        return replace(message, sender=sender, digest=bogus_digest(message.view, message.seq, sender))
    if isinstance(message, ResultVote):
        return replace(message, sender=sender, result=flipped(message.result))
    if isinstance(message, Checkpoint):
        return replace(message, sender=sender, state_digest=bogus_digest(message.seq, sender))
    if isinstance(message, Reply):
        return replace(message, sender=sender, result=flipped(message.result))
    if isinstance(message, PrePrepare):
        return replace(message, sender=sender)
    if isinstance(message, Request):
        return replace(message, operation=Operation(message.operation.repository, "forged"))
    return message


def behaviour_for(
    fault: NodeFault | None, n: int, auth: SimAuthenticator, rng: random.Random, buffer: int
) -> Honest:
    """The behaviour of a node given its fault; network faults leave it honest."""
    kind = fault.kind if fault is not None else "honest"
    if kind == "silent":
        return Silent()
    if kind == "crash-after":
        return CrashAfter(fault.messages)
    if kind == "delay":
        return Delay(fault.delay_s)
    if kind == "slow-primary":
        return SlowPrimary(fault.delay_s)
    if kind == "lie":
        return Lie(auth)
    if kind == "pad":
        return Pad(auth, fault.messages)
    if kind == "drop-proofs":
        return DropProofs(auth)
    if kind == "fill":
        return Fill(auth, fault.messages)
    if kind == "equivocate":
        return Equivocate(fault.node, n, auth)
    if kind == "forge":
        return Forge(fault.node, n, auth, rng)
    if kind == "equivocate-results":
        return EquivocateResults(fault.node, n, auth)
    if kind == "vc-spam":
        return ViewChangeSpam(fault.node, auth)
    if kind == "absurd-seq":
        return AbsurdSeq(fault.node, auth)
    if kind == "vote-flood":
        return VoteFlood(fault.node, n, auth, buffer)
    if kind == "censor":
        return Censor(CENSORED_CLIENT)
    if kind == "withhold-relay":
        return WithholdRelay(fault.node, n, auth)
    return Honest()
