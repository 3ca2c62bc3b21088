"""Protocol messages: each declared once, as a frozen dataclass whose fields say how they
travel (`pbft.wire`), which derives the signed payload, the wire form and strict decoding.

A message's *payload* is the dict that gets signed; the wire form is the
payload plus `sig` (and, for a pre-prepare, the batch of requests it orders,
which the signed digest already binds). `decode` accepts only well-formed
input and raises `MessageError` with a reason otherwise, so nothing malformed
from a peer ever reaches the protocol core.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from typing import Union

from pbft.build import Operation, Result
from pbft.encoding import canonical, digest
from pbft.handshake import Hello
from pbft.wire import (  # noqa: F401 (encode, decode and MessageError are this module's interface too)
    HEX64, NAME, SEQ, SIG, ListOf, MessageError, Nested, Optional, Pair, Struct, Text, decode, encode, message,
    struct, wire,
)

MAX_BATCH = 1024
MAX_VOTES = 1024  # signed votes in one proof: bounded by the number of nodes
# The largest frame a node takes from a peer (node/server.py): an honest node never sends one
# larger, or it never arrives (`scripts/bench.py frames`, the simulator's `frame` check).
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_LOG = 4096  # certificates or pre-prepares in one view change: bounded by the log window
MAX_VOTE_FETCH = 256  # builds asked about in one VOTE-FETCH
MAX_PROOFS = 8  # certified verdicts one batch adds to the verdict log (`pbft.ci.verdictlog`)
# A batch's bytes (`batch_bytes`: its requests and verdict proofs as their digests encode them).
# A primary stops adding at MAX_BATCH_BYTES and a backup refuses a PRE-PREPARE over it, or one
# that holds a request twice: a VIEW-CHANGE carries every prepared batch of a window, so without
# a bound a faulty primary could pad batches until no peer took an honest node's VIEW-CHANGE,
# and never be replaced (`pbft.admission.batch_problem`; what a window of such batches still
# weighs: `scripts/bench.py frames`).
MAX_BATCH_BYTES = 128 * 1024
# The most nodes a network may have: a verdict's proof, n + f signed votes at most, must fit in
# one batch (about 73 KB at 64 nodes, with the example's votes: `scripts/bench.py frames`).
MAX_NODES = 64
# One request, which a node refuses from a client above it: a batch of it alone always fits,
# and the verdict proofs that do not fit beside it wait for the next batch.
MAX_REQUEST_BYTES = 96 * 1024


def _network():
    """The digest of the network document its sender runs (shared/networkdoc.py): in what a
    node says of its state, so that peers and clients name a node that runs another network
    configuration. Left out while empty (the simulator's and the core tests' replicas)."""
    return wire(HEX64, default="", omit="", kw_only=True)


def _epoch():
    """The epoch its sender works in: the sequence number of the change of the membership that
    began it (`pbft.epochs`), 0 for the first. Views count from 0 in each epoch, and a message of
    another epoch never counts in this one. Left out while 0: messages before epochs keep their bytes."""
    return wire(SEQ, default=0, omit=0, kw_only=True)


def _attestation_sig():
    """A signature of the verdict's attestation, left out while empty: replies and votes signed
    before attestations (or provenance) existed keep their bytes."""
    return wire(SIG, default="", omit="", kw_only=True)


@message("request")
class Request:
    """<REQUEST, o, t, c> signed by client c; t orders one client's requests."""

    client: str = wire(NAME)
    timestamp: int = wire(SEQ)
    operation: Operation = wire(Struct(Operation))

    def digest(self) -> str:
        # The signature is part of the digest, so a pre-prepare binds the
        # exact signed request and nobody can swap in a re-signed variant.
        return self._encoded[0]

    @property
    def size(self) -> int:
        """The bytes of the signed request as its digest encodes them (`batch_bytes`)."""
        return self._encoded[1]

    @functools.cached_property
    def _encoded(self) -> tuple[str, int]:
        # Cached: a batch's digest and size read every request of it, at the primary and at each backup.
        data = canonical({"payload": self.payload(), "sig": self.sig})
        return hashlib.sha256(data).hexdigest(), len(data)

    @functools.cached_property
    def key(self) -> tuple[str, int]:
        # Cached: the same tuple object keys every table that remembers this request.
        return (self.client, self.timestamp)


@message("result")
class ResultVote:
    """<RESULT, n, c, t, r, i>: node i's outcome of client c's request t, ordered at n.

    2f+1 matching votes certify a build's result in every honest node's
    ledger, independently of what any client accepted.
    """

    seq: int = wire(SEQ)
    client: str = wire(NAME)
    timestamp: int = wire(SEQ)
    result: Result = wire(Struct(Result))
    sender: int = wire(SEQ)
    statement_sig: str = _attestation_sig()  # as in Reply: so that every node's ledger can show the attestation
    link_sig: str = _attestation_sig()
    provenance_sig: str = _attestation_sig()

    @functools.cached_property
    def key(self) -> tuple[str, int]:
        # Cached: the same tuple object keys every table that remembers this request.
        return (self.client, self.timestamp)


@struct
class VerdictProof:
    """The signed RESULT votes that certified one build's verdict (`pbft.quorum.verdict`), as a
    primary proposes them for the verdict log beside a batch (`pbft.ci.verdictlog`): every vote
    for the agreed result it held when the verdict was decided, and both votes of any node
    proven to have signed two. Each vote speaks for itself: checked against its signer."""

    votes: tuple[ResultVote, ...] = wire(ListOf(Nested(ResultVote), MAX_VOTES, minimum=1))

    @functools.cached_property
    def encoded(self) -> tuple[str, int]:
        """The digest and the size of the proof's canonical encoding (`batch_digest`, `batch_bytes`)."""
        data = canonical(encode(self))
        return hashlib.sha256(data).hexdigest(), len(data)


@message("status")
class Status:
    """<STATUS, v, n, i>: node i is in view v (not changing it) and has executed up to n.

    Sent when the network has been idle for a while, so that a node that missed the
    last batches learns it is behind even when nothing else will be sent (§5.3)."""

    view: int = wire(SEQ)
    last_executed: int = wire(SEQ)
    sender: int = wire(SEQ)
    network: str = _network()
    epoch: int = _epoch()


@message("vote-fetch")
class VoteFetch:
    """<VOTE-FETCH, keys, i>: node i has no verdict yet for these builds (client, timestamp)
    and asks its peers for the signed RESULT votes they hold for them."""

    keys: tuple[tuple[str, int], ...] = wire(ListOf(
        Pair(("client", NAME), ("timestamp", SEQ), refusal="a vote-fetch key must be [client, timestamp]"),
        MAX_VOTE_FETCH, minimum=1,
    ))
    sender: int = wire(SEQ)


@message("preprepare")
class PrePrepare:
    """<PRE-PREPARE, v, n, d> signed by the primary of v, with the batch d names (which
    travels after the signature: the signed digest binds it). An empty batch is the null
    request a new primary uses to fill a gap (§4.4)."""

    view: int = wire(SEQ)
    seq: int = wire(SEQ)
    digest: str = wire(HEX64)
    sender: int = wire(SEQ)
    batch: tuple[Request, ...] = wire(ListOf(Nested(Request), MAX_BATCH), default=(), signed=False)
    epoch: int = _epoch()
    # Certified verdicts for the verdict log, ordered with the batch and bound by the same
    # digest (`batch_digest`); left out while none, so batches without keep their bytes.
    verdicts: tuple[VerdictProof, ...] = wire(
        ListOf(Struct(VerdictProof), MAX_PROOFS), default=(), omit=(), signed=False, kw_only=True
    )


@dataclass(frozen=True)
class _Vote:
    """Shared shape of PREPARE and COMMIT: <TYPE, v, n, d, i> signed by node i."""

    view: int = wire(SEQ)
    seq: int = wire(SEQ)
    digest: str = wire(HEX64)
    sender: int = wire(SEQ)
    epoch: int = _epoch()


@message("prepare")
class Prepare(_Vote):
    pass


@message("commit")
class Commit(_Vote):
    pass


@message("checkpoint")
class Checkpoint:
    """<CHECKPOINT, n, d, i>: node i's digest of the replicated state after sequence n, and
    of the network document it runs: checkpoints match only if both do."""

    seq: int = wire(SEQ)
    state_digest: str = wire(HEX64)
    sender: int = wire(SEQ)
    network: str = _network()
    # The verdict log's head after n (`pbft.ci.verdictlog`): its size and root, left out while
    # the log is empty (checkpoints signed before the log keep their bytes). The chain of batch
    # digests binds the log already; signed here, 2f+1 checkpoints alike are a co-signed head.
    log_size: int = wire(SEQ, default=0, omit=0, kw_only=True)
    log_root: str = wire(HEX64, default="", omit="", kw_only=True)

    def vouches(self) -> tuple[str, str, int, str]:
        """What checkpoints must share to match: the state, the network document and the log's head."""
        return (self.state_digest, self.network, self.log_size, self.log_root)


@struct
class PreparedCertificate:
    """Proof that a batch prepared at (view, seq): its pre-prepare and 2f matching prepares."""

    preprepare: PrePrepare = wire(Nested(PrePrepare))
    prepares: tuple[Prepare, ...] = wire(ListOf(Nested(Prepare), MAX_VOTES))


@struct
class LedgerEntry:
    """One batch at its sequence number: an executed one, as state transfer carries it below
    a stable checkpoint; a prepared one, as a VIEW-CHANGE carries it beside the pre-prepare
    it signs without it."""

    seq: int = wire(SEQ)
    batch: tuple[Request, ...] = wire(ListOf(Nested(Request), MAX_BATCH))
    verdicts: tuple[VerdictProof, ...] = wire(ListOf(Struct(VerdictProof), MAX_PROOFS), default=(), omit=())


@message("view-change")
class ViewChange:
    """<VIEW-CHANGE, v+1, n, C, P, i> (§4.4): node i's stable checkpoint n with its
    proof C, and a prepared certificate for every batch above n that it saw prepare."""

    view: int = wire(SEQ)
    stable_seq: int = wire(SEQ)
    checkpoint_proof: tuple[Checkpoint, ...] = wire(ListOf(Nested(Checkpoint), MAX_VOTES))
    prepared: tuple[PreparedCertificate, ...] = wire(ListOf(Struct(PreparedCertificate), MAX_LOG))
    sender: int = wire(SEQ)
    epoch: int = _epoch()
    # The batches of the prepared pre-prepares, which the signature covers without them (each
    # pre-prepare's digest binds its batch): a NEW-VIEW carries its 2f+1 VIEW-CHANGEs without
    # them, and each batch it issues again once (`pbft.viewchange`).
    batches: tuple[LedgerEntry, ...] = wire(ListOf(Struct(LedgerEntry), MAX_LOG), default=(), omit=(), signed=False,
                                            kw_only=True)


@message("new-view")
class NewView:
    """<NEW-VIEW, v+1, V, O> (§4.4): the 2f+1 view changes V the new primary used
    and the pre-prepares O it re-issues from them, null batches filling gaps."""

    view: int = wire(SEQ)
    view_changes: tuple[ViewChange, ...] = wire(ListOf(Nested(ViewChange), MAX_VOTES))
    preprepares: tuple[PrePrepare, ...] = wire(ListOf(Nested(PrePrepare), MAX_LOG))
    sender: int = wire(SEQ)
    epoch: int = _epoch()


@struct
class CommittedCertificate:
    """Proof that a batch committed at (view, seq): its pre-prepare and 2f+1 matching commits."""

    preprepare: PrePrepare = wire(Nested(PrePrepare))
    commits: tuple[Commit, ...] = wire(ListOf(Nested(Commit), MAX_VOTES))


@message("fetch")
class Fetch:
    """<FETCH, n, v, i>: node i, in view v, has executed up to n-1 and asks peers for what follows."""

    from_seq: int = wire(SEQ)
    view: int = wire(SEQ)
    sender: int = wire(SEQ)
    epoch: int = _epoch()


@message("state")
class StateTransfer:
    """A peer's answer to FETCH (§4.3 state transfer, simplified to whole batches).

    `entries` lead up to `stable_seq` and are trusted only if hashing them onto
    the receiver's own state yields the digest the 2f+1 checkpoints in
    `checkpoint_proof` vouch for. `certificates` cover sequence numbers above
    it, each proven committed by 2f+1 signed commits. `new_view` is the
    NEW-VIEW that started the sender's view, for a receiver left in an older one.
    """

    stable_seq: int = wire(SEQ)
    checkpoint_proof: tuple[Checkpoint, ...] = wire(ListOf(Nested(Checkpoint), MAX_VOTES))
    entries: tuple[LedgerEntry, ...] = wire(ListOf(Struct(LedgerEntry), MAX_LOG))
    certificates: tuple[CommittedCertificate, ...] = wire(ListOf(Struct(CommittedCertificate), MAX_LOG))
    new_view: NewView | None = wire(Optional(Nested(NewView)))
    sender: int = wire(SEQ)


@message("reply")
class Reply:
    """<REPLY, v, t, c, i, r> signed by node i."""

    view: int = wire(SEQ)
    timestamp: int = wire(SEQ)
    client: str = wire(NAME)
    sender: int = wire(SEQ)
    result: Result = wire(Struct(Result))
    # Node i's signatures of the verdict's attestation (`pbft.attestation`): the DSSE
    # signature of the in-toto statement and the signature of its in-toto link. Empty
    # for a result without a commit, which has no statement.
    statement_sig: str = _attestation_sig()
    link_sig: str = _attestation_sig()
    # Node i's DSSE signature of the SLSA provenance of the build's artifacts
    # (`pbft.provenance`); empty for a build without artifacts.
    provenance_sig: str = _attestation_sig()
    network: str = _network()
    # The members the order picked to build the request (`pbft.builders`); () when all build.
    builders: tuple[int, ...] = wire(ListOf(SEQ, MAX_VOTES), default=(), omit=(), kw_only=True)


# Where a node's build of a request is while it has no result.
BUILD_STATES = ("queued", "running")


@message("build-state")
class BuildState:
    """<BUILD-STATE, t, c, s, i> signed by node i, to client c alone: its build of request t
    waits for a build slot (`queued`) or runs. No node counts it; f+1 of them tell the client
    that the build is on its way, so its deadline does not run out on a busy network."""

    timestamp: int = wire(SEQ)
    client: str = wire(NAME)
    state: str = wire(Text(choices=BUILD_STATES))
    sender: int = wire(SEQ)
    # The older build of the same client that this one's concurrency group waits for, and that
    # its spec's `cancel_in_progress` asks the client to cancel through the order (0: none).
    # f+1 nodes saying so are what the client acts on (client/verbs/supersede.py).
    supersedes: int = wire(SEQ, default=0, omit=0, kw_only=True)


@message("current-view")
class CurrentView:
    """<CURRENT-VIEW, v, c, i> signed by node i, to client c alone: node i works in view v, and
    knows it current (`Replica.view_confirmed`). Said on the client's HELLO and whenever the
    view changes, so that a client that has had no reply yet (it just started) sends to the
    primary of the view f+1 nodes say, and knows which link going down means a failover."""

    view: int = wire(SEQ)
    client: str = wire(NAME)
    sender: int = wire(SEQ)
    network: str = _network()


@message("relay", signed=False)
class Relay:
    """<RELAY, votes>: signed votes, passed on in one frame.

    In a network that relays votes (`ReplicaSettings.relay_votes`), backups send
    their PREPAREs, COMMITs and RESULTs to the primary alone, and the primary
    passes a quorum of them on in one frame, so that a backup takes in O(1)
    frames per phase instead of O(n). Every node also sends its own RESULTs in
    relays: those it signed since its last tick, in one frame.

    A relay is an envelope, not a statement: it carries no signature of its
    own, and every vote in it is checked against its own signer, exactly as if
    it had arrived alone. Whoever forges an envelope can fill it only with
    votes their signers really sent.
    """

    votes: tuple[Prepare | Commit | ResultVote, ...] = wire(ListOf(
        Nested(Prepare, Commit, ResultVote, refusal="a relay carries only prepare, commit and result votes"),
        MAX_VOTES, minimum=1,
    ))


Message = Union[
    Request, PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Fetch, StateTransfer, ResultVote, Reply,
    Hello, VoteFetch, Status, Relay, BuildState,
]


def batch_digest(batch: tuple[Request, ...], verdicts: tuple[VerdictProof, ...] = ()) -> str:
    """What a PRE-PREPARE's votes agree on: its requests (each with its signature) and the
    verdict proofs beside them, whose votes' signatures are bound the same way."""
    requests = digest([request.digest() for request in batch])
    return requests if not verdicts else digest([requests, [proof.encoded[0] for proof in verdicts]])


def batch_bytes(batch: tuple[Request, ...], verdicts: tuple[VerdictProof, ...] = ()) -> int:
    """A batch's size against MAX_BATCH_BYTES: what its digest encodes, request by request and proof by proof."""
    return sum(request.size for request in batch) + sum(proof.encoded[1] for proof in verdicts)


def signed(message: Message, sign) -> Message:
    """Return `message` carrying the signature `sign(payload)`."""
    return replace(message, sig=sign(message.payload()))


def describe(message: Message) -> str:
    """A message's type and the fields that place it, for a log line."""
    parts = [message.TYPE]
    for name in ("view", "seq", "sender", "client", "timestamp"):
        if hasattr(message, name):
            parts.append(f"{name}={getattr(message, name)}")
    return " ".join(parts)
