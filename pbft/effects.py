"""What the replica asks its driver to do.

The protocol core never performs I/O: each step appends effects to an outbox
and the driver carries them out in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from pbft.ci.ordered import OrderedBuild
from pbft.ci.verdictlog import Leaf
from pbft.messages import Checkpoint, Fetch, Message, PrePrepare, Prepare, Relay, Reply, Request, StateTransfer, VerdictProof


@dataclass(frozen=True)
class Broadcast:
    """Send `message` to every other node."""

    message: Message


@dataclass(frozen=True)
class SendTo:
    """Send `message` to one node, at the address the configuration gives it."""

    node: int
    message: Message


@dataclass(frozen=True)
class SendReply:
    """Send a signed reply to the client it names."""

    reply: Reply


@dataclass(frozen=True)
class ResendReply:
    """A client retransmitted a request this node already answered: send it the reply
    kept in the store (SendReply saved it), not one held in memory for an hour."""

    client: str
    timestamp: int


@dataclass(frozen=True)
class ServeVotes:
    """A peer asked for the RESULT votes of these builds: send `node` every vote the
    store kept for them, except its own. Decided builds' votes live only on disk."""

    node: int
    keys: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Execute:
    """A batch joins the ledger; emitted strictly in sequence order.

    `requests` are the builds to start: only requests not executed before (a
    request ordered twice is built once), and none for batches learnt by
    state transfer, whose builds other nodes already ran. Those are in
    `learnt`: executed here, never built here. `answered` are requests the
    order alone answers, which start no build: cancels, and builds cancelled
    before they executed (`pbft.cancels`); their replies follow in the same
    step. All three count for exactly-once, so the store records them.
    `chosen` names the builders the order picked for this batch's requests of
    repositories with `builders: f+1` (`pbft.builders`): the store keeps it with
    each of them, since their verdicts are counted by it after a restart too.
    """

    view: int
    seq: int
    digest: str
    batch: tuple[Request, ...]
    requests: tuple[Request, ...]
    state_digest: str  # hash chain over the ledger up to and including this batch
    learnt: tuple[Request, ...] = ()
    answered: tuple[Request, ...] = ()
    chosen: tuple[tuple[tuple[str, int], tuple[int, ...]], ...] = ()  # ((client, timestamp), its builders)
    # The network document in force at `seq` (`pbft.ci.ordered`): its digest, and itself.
    network: str = ""
    document: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # The batch's verdict proofs, which its digest binds (the ledger serves them to state
    # transfer), and the verdicts they appended to the verdict log (`pbft.ci.verdictlog`).
    verdicts: tuple[VerdictProof, ...] = ()
    leaves: tuple[Leaf, ...] = ()

    def ordered(self) -> tuple[OrderedBuild, ...]:
        """The builds to start, each with what the order decided for it."""
        chosen = dict(self.chosen)
        return tuple(OrderedBuild(self.seq, request, self.network, self.document, chosen.get(request.key, ()))
                     for request in self.requests)


@dataclass(frozen=True)
class StopBuild:
    """The order cancelled a build (`pbft.cancels`): stop it if it runs here, or before it
    starts if it waits. Its result, whatever the build reports, is `cancelled`."""

    seq: int  # where the cancel executed
    client: str
    timestamp: int


@dataclass(frozen=True)
class BuildLearnt:
    """Build a request this node learnt by state transfer (its Execute carried it in
    `learnt`) whose verdict is still open after asking the peers for their votes: a
    build with artifacts is certified by 2f+1 matching votes, which the nodes that
    built it may not make up alone. Its result is replied and voted like any other."""

    order: OrderedBuild  # the request, where it executed, and what the order decided for it

    @property
    def seq(self) -> int:
        return self.order.seq

    @property
    def request(self) -> Request:
        return self.order.request


@dataclass(frozen=True)
class Store:
    """Persist a protocol message this node accepted or sent, before anything of this step is sent."""

    message: Message


@dataclass(frozen=True)
class ServeFetch:
    """A peer asked for the ledger from `fetch.from_seq`: call `Replica.answer_fetch` with the store."""

    fetch: Fetch


@dataclass(frozen=True)
class KeepStableProof:
    """`seq` became stable: keep its 2f+1 checkpoints for good, so that state transfer can
    end a chunk there for a node that is further behind (see `pbft.ledger`)."""

    seq: int
    proof: tuple[Checkpoint, ...]


@dataclass(frozen=True)
class KeepVoteHorizon:
    """The vote horizon moved (`pbft.horizon`): fsync this step, which holds it in the
    durable state, before the vote that needed it, and those after it, leave unsynced."""

    epoch: int
    view: int
    through: int


@dataclass(frozen=True)
class NetworkChanged:
    """A change executed at `seq` replaced the network document (`pbft.networks`): builds
    ordered after it run with `document`. A restart replays the change from the ledger."""

    seq: int
    document: dict
    digest: str


@dataclass(frozen=True)
class RecordVerdict:
    """A build's verdict is decided: "certified" with the agreed result, or "disputed"; or
    "expired": the build was forgotten (`pbft.clients`) before its verdict reached this node;
    or "cancelled", with the cancelled result: the order decided it (`pbft.cancels`)."""

    seq: int
    client: str
    timestamp: int
    state: str
    result: dict | None


Effect = Union[
    Broadcast, SendTo, SendReply, ResendReply, ServeVotes, Execute, BuildLearnt, StopBuild, Store, ServeFetch,
    KeepStableProof, KeepVoteHorizon, RecordVerdict, NetworkChanged,
]

# What a node only took in or concluded: another node's message kept, a verdict reached,
# a checkpoint's proof kept. A step with nothing else sends, signs and builds nothing.
_INWARD = (Store, RecordVerdict, KeepStableProof)
# What only serves from the store what it holds already (a reply sent before, votes kept,
# the ledger), to a client that lost a reply or a peer that asks: it commits to nothing new.
_SERVING = (ResendReply, ServeVotes, ServeFetch)
# Messages that commit their sender to nothing: other nodes' votes passed on, and a chunk
# of the ledger (entries proven by signed checkpoints and commits, the NEW-VIEW on disk).
_UNCOMMITTING = (Relay, StateTransfer)


# Votes a synced vote horizon covers (`pbft.horizon`): written before they leave, not fsynced.
_UNDER_HORIZON = (PrePrepare, Prepare)


def must_sync(effects: list[Effect], node_id: int) -> bool:
    """Whether a step must reach the disk, fsynced, before its effects are carried out.

    A step that only takes in (every effect in `_INWARD`, no message this node
    signed) commits nothing to anyone: losing it to a power cut, with every
    later such step, leaves the node as if those messages had been lost on the
    way, which the protocol survives. Passing on other nodes' votes (a Relay)
    commits the node to nothing either: a vote of its own in a relay was saved
    by the step that signed it. Nor does serving what the store holds
    (`_SERVING`, and the STATE-TRANSFER that answers a FETCH): a retransmitting
    client or an asking peer costs no fsync. A PRE-PREPARE or PREPARE of its own
    is covered by the vote horizon the node fsynced before it (`pbft.horizon`),
    and starting a build (Execute) needs the disk only against a kill, which a
    write survives: a power cut that takes the execution takes the build with
    it, and the node executes the batch, and builds, again. Those steps are
    written, unsynced, before anything of them is carried out (`must_write`).
    Any other step is synced, and the sync carries every earlier step with it,
    so whatever else leaves the node is on disk with all it rests on.
    """
    return durability(effects, node_id) == "sync"


def must_write(effects: list[Effect], node_id: int) -> bool:
    """Whether a step that need not be synced must still be written, unsynced, before its
    effects are carried out: it sends a vote the horizon covers or starts a build. A
    killed process loses nothing written; only a power cut can (`pbft.horizon`)."""
    return durability(effects, node_id) == "write"


def durability(effects: list[Effect], node_id: int) -> str:
    """How a step reaches the disk before its effects are carried out: "sync" (`must_sync`),
    "write" (`must_write`) or "defer" (it only took in: it waits for the next save)."""
    needs = "defer"
    for effect in effects:
        if isinstance(effect, Store):
            message = effect.message
            if message.sender != node_id:
                continue
            if not isinstance(message, _UNDER_HORIZON):
                return "sync"
            needs = "write"
        elif isinstance(effect, (Broadcast, SendTo)):
            if isinstance(effect.message, _UNCOMMITTING):
                continue
            if not isinstance(effect.message, _UNDER_HORIZON):
                return "sync"
            needs = "write"
        elif isinstance(effect, Execute):
            needs = "write"
        elif not isinstance(effect, _INWARD + _SERVING):
            return "sync"
    return needs


def leaves_unsaved(effect: Effect, effects: list[Effect], node_id: int) -> bool:
    """Whether `effect` may be sent before its step is saved: a relay holding no vote
    that this step signed. Other nodes' votes commit this node to nothing, and its own
    earlier ones are on disk already (see must_sync), so the relay need not wait for
    an fsync the step makes for other reasons."""
    if not isinstance(effect, (Broadcast, SendTo)) or not isinstance(effect.message, Relay):
        return False
    signed_now = [other.message for other in effects if isinstance(other, Store) and other.message.sender == node_id]
    return not any(vote in signed_now for vote in effect.message.votes)
