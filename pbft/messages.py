"""Protocol messages, their wire form and strict decoding.

A message is a frozen dataclass. Its *payload* is the dict that gets signed;
the wire form is the payload plus `sig` (and, for a pre-prepare, the batch of
requests it orders, which the signed digest already binds). `decode` accepts
only well-formed input and raises `MessageError` with a reason otherwise, so
nothing malformed from a peer ever reaches the protocol core.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Union

from pbft.encoding import digest

STATUSES = ("success", "failure", "error", "timeout")
MAX_BATCH = 1024
MAX_VOTES = 1024  # signed votes in one proof: bounded by the number of nodes
MAX_LOG = 4096  # certificates or pre-prepares in one view change: bounded by the log window
MAX_TEXT = 1024
MAX_VOTE_FETCH = 256  # builds asked about in one VOTE-FETCH

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIG = re.compile(r"[0-9a-f]{128}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SPEC_PATH = re.compile(r"\.pbft-ci\.yml|Dockerfile")
# A sha256 as artifact manifests and results write it; the group is the hex.
SHA256_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# A Docker image reference: printable ASCII without spaces (the spec's own rule is "no spaces").
_IMAGE = re.compile(r"[!-~]{1,255}")
CHALLENGE_BYTES = 32
_CHALLENGE = re.compile(f"[0-9a-f]{{{2 * CHALLENGE_BYTES}}}")


class MessageError(ValueError):
    """A frame that is not a well-formed protocol message."""


@dataclass(frozen=True)
class Operation:
    """What a client asks the network to build."""

    repository: str
    branch: str
    commit: str | None = None

    def to_dict(self) -> dict:
        return {"repository": self.repository, "branch": self.branch, "commit": self.commit}


@dataclass(frozen=True)
class Request:
    """<REQUEST, o, t, c> signed by client c; t orders one client's requests."""

    client: str
    timestamp: int
    operation: Operation
    sig: str = ""
    TYPE = "request"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "client": self.client,
            "timestamp": self.timestamp,
            "operation": self.operation.to_dict(),
        }

    def digest(self) -> str:
        # The signature is part of the digest, so a pre-prepare binds the
        # exact signed request and nobody can swap in a re-signed variant.
        return digest({"payload": self.payload(), "sig": self.sig})

    @functools.cached_property
    def key(self) -> tuple[str, int]:
        # Cached: the same tuple object keys every table that remembers this request.
        return (self.client, self.timestamp)


@dataclass(frozen=True)
class Status:
    """<STATUS, v, n, i>: node i is in view v (not changing it) and has executed up to n.

    Sent when the network has been idle for a while, so that a node that missed the
    last batches learns it is behind even when nothing else will be sent (§5.3)."""

    view: int
    last_executed: int
    sender: int
    sig: str = ""
    TYPE = "status"

    def payload(self) -> dict:
        return {"type": self.TYPE, "view": self.view, "last_executed": self.last_executed, "sender": self.sender}


@dataclass(frozen=True)
class VoteFetch:
    """<VOTE-FETCH, keys, i>: node i has no verdict yet for these builds (client, timestamp)
    and asks its peers for the signed RESULT votes they hold for them."""

    keys: tuple[tuple[str, int], ...]
    sender: int
    sig: str = ""
    TYPE = "vote-fetch"

    def payload(self) -> dict:
        return {"type": self.TYPE, "keys": [[client, timestamp] for client, timestamp in self.keys], "sender": self.sender}


@dataclass(frozen=True)
class PrePrepare:
    """<PRE-PREPARE, v, n, d> signed by the primary of v, with the batch d names."""

    view: int
    seq: int
    digest: str
    sender: int
    batch: tuple[Request, ...] = ()
    sig: str = ""
    TYPE = "preprepare"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "view": self.view,
            "seq": self.seq,
            "digest": self.digest,
            "sender": self.sender,
        }


@dataclass(frozen=True)
class _Vote:
    """Shared shape of PREPARE and COMMIT: <TYPE, v, n, d, i> signed by node i."""

    view: int
    seq: int
    digest: str
    sender: int
    sig: str = ""
    TYPE = ""

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "view": self.view,
            "seq": self.seq,
            "digest": self.digest,
            "sender": self.sender,
        }


@dataclass(frozen=True)
class Prepare(_Vote):
    TYPE = "prepare"


@dataclass(frozen=True)
class Commit(_Vote):
    TYPE = "commit"


@dataclass(frozen=True)
class Checkpoint:
    """<CHECKPOINT, n, d, i>: node i's digest of the replicated state after sequence n."""

    seq: int
    state_digest: str
    sender: int
    sig: str = ""
    TYPE = "checkpoint"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "seq": self.seq,
            "state_digest": self.state_digest,
            "sender": self.sender,
        }


@dataclass(frozen=True)
class PreparedCertificate:
    """Proof that a batch prepared at (view, seq): its pre-prepare and 2f matching prepares."""

    preprepare: PrePrepare
    prepares: tuple[Prepare, ...]

    def to_dict(self) -> dict:
        return {"preprepare": encode(self.preprepare), "prepares": [encode(p) for p in self.prepares]}


@dataclass(frozen=True)
class ViewChange:
    """<VIEW-CHANGE, v+1, n, C, P, i> (§4.4): node i's stable checkpoint n with its
    proof C, and a prepared certificate for every batch above n that it saw prepare."""

    view: int
    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    sender: int
    sig: str = ""
    TYPE = "view-change"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "view": self.view,
            "stable_seq": self.stable_seq,
            "checkpoint_proof": [encode(c) for c in self.checkpoint_proof],
            "prepared": [cert.to_dict() for cert in self.prepared],
            "sender": self.sender,
        }


@dataclass(frozen=True)
class NewView:
    """<NEW-VIEW, v+1, V, O> (§4.4): the 2f+1 view changes V the new primary used
    and the pre-prepares O it re-issues from them, null batches filling gaps."""

    view: int
    view_changes: tuple[ViewChange, ...]
    preprepares: tuple[PrePrepare, ...]
    sender: int
    sig: str = ""
    TYPE = "new-view"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "view": self.view,
            "view_changes": [encode(vc) for vc in self.view_changes],
            "preprepares": [encode(pp) for pp in self.preprepares],
            "sender": self.sender,
        }


@dataclass(frozen=True)
class CommittedCertificate:
    """Proof that a batch committed at (view, seq): its pre-prepare and 2f+1 matching commits."""

    preprepare: PrePrepare
    commits: tuple[Commit, ...]

    def to_dict(self) -> dict:
        return {"preprepare": encode(self.preprepare), "commits": [encode(c) for c in self.commits]}


@dataclass(frozen=True)
class LedgerEntry:
    """One executed batch, as state transfer carries it below a stable checkpoint."""

    seq: int
    batch: tuple[Request, ...]

    def to_dict(self) -> dict:
        return {"seq": self.seq, "batch": [encode(r) for r in self.batch]}


@dataclass(frozen=True)
class Fetch:
    """<FETCH, n, v, i>: node i, in view v, has executed up to n-1 and asks peers for what follows."""

    from_seq: int
    view: int
    sender: int
    sig: str = ""
    TYPE = "fetch"

    def payload(self) -> dict:
        return {"type": self.TYPE, "from_seq": self.from_seq, "view": self.view, "sender": self.sender}


@dataclass(frozen=True)
class StateTransfer:
    """A peer's answer to FETCH (§4.3 state transfer, simplified to whole batches).

    `entries` lead up to `stable_seq` and are trusted only if hashing them onto
    the receiver's own state yields the digest the 2f+1 checkpoints in
    `checkpoint_proof` vouch for. `certificates` cover sequence numbers above
    it, each proven committed by 2f+1 signed commits. `new_view` is the
    NEW-VIEW that started the sender's view, for a receiver left in an older one.
    """

    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]
    entries: tuple[LedgerEntry, ...]
    certificates: tuple[CommittedCertificate, ...]
    new_view: NewView | None
    sender: int
    sig: str = ""
    TYPE = "state"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "stable_seq": self.stable_seq,
            "checkpoint_proof": [encode(c) for c in self.checkpoint_proof],
            "entries": [entry.to_dict() for entry in self.entries],
            "certificates": [cert.to_dict() for cert in self.certificates],
            "new_view": None if self.new_view is None else encode(self.new_view),
            "sender": self.sender,
        }


@dataclass(frozen=True)
class Spec:
    """What a build ran: its spec file (`.pbft-ci.yml` or `Dockerfile`) at the built
    commit, that file's sha256, and the image by the name the spec or the network's
    configuration gives it. A function of the commit and the configuration, so every
    honest node reports the same; the image's id is not (each node has its own copy)."""

    path: str
    sha256: str
    image: str

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "image": self.image}


@dataclass(frozen=True)
class Result:
    """A build outcome; `agreed()` is the part every honest node computes alike.

    `spec` is there only for a build whose container ran; it is compared with
    the rest, because the verdict's attestation names it (`pbft.attestation`).
    `artifacts` only for a successful build whose spec declares artifacts: the
    digest of its manifest (`pbft.attestation.manifest_digest`), one value
    however many files, so that matching results vouch for every file's bytes
    and a vote stays small. A result without them has the wire form results
    had before they existed, so signatures made then still verify.
    """

    status: str
    exit_code: int | None
    commit: str | None
    reason: str = ""
    # Keyword-only: subclasses (the executor's BuildResult) add positional fields after `reason`.
    spec: Spec | None = field(default=None, kw_only=True)
    artifacts: str | None = field(default=None, kw_only=True)  # "sha256:<hex>" of the manifest

    def agreed(self) -> dict:
        agreed = {"status": self.status, "exit_code": self.exit_code, "commit": self.commit}
        if self.spec is not None:
            agreed["spec"] = self.spec.to_dict()
        if self.artifacts is not None:
            agreed["artifacts"] = self.artifacts
        return agreed

    def agreed_key(self) -> tuple:
        """`agreed()` as a hashable value, for counting matching results."""
        return (self.status, self.exit_code, self.commit, self.spec, self.artifacts)

    def to_dict(self) -> dict:
        return {**self.agreed(), "reason": self.reason}


@dataclass(frozen=True)
class Reply:
    """<REPLY, v, t, c, i, r> signed by node i."""

    view: int
    timestamp: int
    client: str
    sender: int
    result: Result
    sig: str = ""
    # Node i's signatures of the verdict's attestation (`pbft.attestation`): the DSSE
    # signature of the in-toto statement and the signature of its in-toto link. Empty
    # for a result without a commit, which has no statement.
    statement_sig: str = ""
    link_sig: str = ""
    # Node i's DSSE signature of the SLSA provenance of the build's artifacts
    # (`pbft.provenance`); empty for a build without artifacts.
    provenance_sig: str = ""
    TYPE = "reply"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "view": self.view,
            "timestamp": self.timestamp,
            "client": self.client,
            "sender": self.sender,
            "result": self.result.to_dict(),
            **_attestation_sigs(self),
        }


@dataclass(frozen=True)
class Challenge:
    """Node i's fresh random challenge: the first frame on every client connection.

    Unsigned: only the node that issued it checks it, against what it sent
    on that very connection.
    """

    challenge: str  # CHALLENGE_BYTES random bytes, hex
    TYPE = "challenge"

    def payload(self) -> dict:
        return {"type": self.TYPE, "challenge": self.challenge}


@dataclass(frozen=True)
class Hello:
    """<HELLO, c, i, x> signed by client c, answering node i's challenge x on one connection.

    It tells node i that this connection carries c's replies. Naming the node
    keeps a captured hello from subscribing a stranger anywhere else, and the
    challenge, good for one HELLO on the connection it was issued on, keeps it
    from subscribing a stranger later.
    """

    client: str
    node: int
    challenge: str
    sig: str = ""
    TYPE = "hello"

    def payload(self) -> dict:
        return {"type": self.TYPE, "client": self.client, "node": self.node, "challenge": self.challenge}


@dataclass(frozen=True)
class ResultVote:
    """<RESULT, n, c, t, r, i>: node i's outcome of client c's request t, ordered at n.

    2f+1 matching votes certify a build's result in every honest node's
    ledger, independently of what any client accepted.
    """

    seq: int
    client: str
    timestamp: int
    result: Result
    sender: int
    sig: str = ""
    statement_sig: str = ""  # as in Reply: so that every node's ledger can show the attestation
    link_sig: str = ""
    provenance_sig: str = ""
    TYPE = "result"

    def payload(self) -> dict:
        return {
            "type": self.TYPE,
            "seq": self.seq,
            "client": self.client,
            "timestamp": self.timestamp,
            "result": self.result.to_dict(),
            "sender": self.sender,
            **_attestation_sigs(self),
        }

    @functools.cached_property
    def key(self) -> tuple[str, int]:
        # Cached: the same tuple object keys every table that remembers this request.
        return (self.client, self.timestamp)


@dataclass(frozen=True)
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

    votes: tuple[Prepare | Commit | ResultVote, ...]
    TYPE = "relay"

    def payload(self) -> dict:
        return {"type": self.TYPE, "votes": [encode(vote) for vote in self.votes]}


def _attestation_sigs(message: Reply | ResultVote) -> dict:
    # Left out when empty: replies and votes signed before attestations (or provenance) existed keep their bytes.
    sigs = {}
    if message.statement_sig:
        sigs["statement_sig"] = message.statement_sig
    if message.link_sig:
        sigs["link_sig"] = message.link_sig
    if message.provenance_sig:
        sigs["provenance_sig"] = message.provenance_sig
    return sigs


Message = Union[
    Request, PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Fetch, StateTransfer, ResultVote, Reply,
    Hello, VoteFetch, Status, Relay,
]


def batch_digest(batch: tuple[Request, ...]) -> str:
    return digest([request.digest() for request in batch])


def signed(message: Message, sign) -> Message:
    """Return `message` carrying the signature `sign(payload)`."""
    return replace(message, sig=sign(message.payload()))


def encode(message: Message | Challenge) -> dict:
    if isinstance(message, (Challenge, Relay)):
        return message.payload()
    # Payloads of view changes hold whole encoded messages already.
    wire: dict[str, Any] = {**message.payload(), "sig": message.sig}
    if isinstance(message, PrePrepare):
        wire["batch"] = [encode(request) for request in message.batch]
    return wire


# --- decoding ------------------------------------------------------------


def _field(data: dict, name: str) -> Any:
    if name not in data:
        raise MessageError(f"missing field {name!r}")
    return data[name]


def _int(data: dict, name: str) -> int:
    value = _field(data, name)
    if type(value) is not int or value < 0 or value >= 2**63:
        raise MessageError(f"{name} must be a non-negative 63-bit integer")
    return value


def _text(data: dict, name: str, pattern: re.Pattern | None = None, limit: int = MAX_TEXT) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or len(value) > limit:
        raise MessageError(f"{name} must be a string of at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise MessageError(f"{name} is not well formed")
    if pattern is _NAME:
        # A client's name is in every key of the tables that remember an hour of its
        # requests: one string object for them all, not one per decoded message.
        return sys.intern(value)
    return value


def _optional_text(data: dict, name: str) -> str | None:
    return None if data.get(name) is None else _text(data, name)


def _operation(data: Any) -> Operation:
    if not isinstance(data, dict):
        raise MessageError("operation must be an object")
    return Operation(
        repository=_text(data, "repository", _NAME),
        branch=_text(data, "branch", limit=255),
        commit=_optional_text(data, "commit"),
    )


def _spec(data: Any) -> Spec:
    if not isinstance(data, dict):
        raise MessageError("spec must be an object")
    return Spec(
        path=_text(data, "path", _SPEC_PATH), sha256=_text(data, "sha256", _HEX64), image=_text(data, "image", _IMAGE)
    )


def _result(data: Any) -> Result:
    if not isinstance(data, dict):
        raise MessageError("result must be an object")
    status = _text(data, "status")
    if status not in STATUSES:
        raise MessageError(f"unknown status {status!r}")
    exit_code = data.get("exit_code")
    if exit_code is not None and (type(exit_code) is not int or not -(2**31) <= exit_code < 2**31):
        raise MessageError("exit_code must be an integer or null")
    spec = None if data.get("spec") is None else _spec(data["spec"])
    artifacts = None if data.get("artifacts") is None else _text(data, "artifacts", SHA256_DIGEST)
    return Result(
        status, exit_code, _optional_text(data, "commit"), _text(data, "reason"), spec=spec, artifacts=artifacts
    )


def _optional_sig(data: dict, name: str) -> str:
    return "" if name not in data else _text(data, name, _SIG)


def _decode_request(data: dict) -> Request:
    return Request(
        client=_text(data, "client", _NAME),
        timestamp=_int(data, "timestamp"),
        operation=_operation(_field(data, "operation")),
        sig=_text(data, "sig", _SIG),
    )


def _list(data: dict, name: str, limit: int, minimum: int = 0) -> list:
    value = _field(data, name)
    if not isinstance(value, list) or not minimum <= len(value) <= limit:
        raise MessageError(f"{name} must be a list of {minimum} to {limit} items")
    return value


def _nested(value: Any, cls):
    if not isinstance(value, dict) or value.get("type") != cls.TYPE:
        raise MessageError(f"expected a {cls.TYPE} message")
    return _DECODERS[cls.TYPE](value)


def _decode_preprepare(data: dict) -> PrePrepare:
    # An empty batch is the null request a new primary uses to fill a gap (§4.4).
    batch = _list(data, "batch", MAX_BATCH)
    requests = [_nested(item, Request) for item in batch]
    return PrePrepare(
        view=_int(data, "view"),
        seq=_int(data, "seq"),
        digest=_text(data, "digest", _HEX64),
        sender=_int(data, "sender"),
        batch=tuple(requests),
        sig=_text(data, "sig", _SIG),
    )


def _decode_vote(cls):
    def decode_vote(data: dict):
        return cls(
            view=_int(data, "view"),
            seq=_int(data, "seq"),
            digest=_text(data, "digest", _HEX64),
            sender=_int(data, "sender"),
            sig=_text(data, "sig", _SIG),
        )

    return decode_vote


def _decode_checkpoint(data: dict) -> Checkpoint:
    return Checkpoint(
        seq=_int(data, "seq"),
        state_digest=_text(data, "state_digest", _HEX64),
        sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
    )


def _decode_certificate(data: Any) -> PreparedCertificate:
    if not isinstance(data, dict):
        raise MessageError("a prepared certificate must be an object")
    return PreparedCertificate(
        preprepare=_nested(_field(data, "preprepare"), PrePrepare),
        prepares=tuple(_nested(item, Prepare) for item in _list(data, "prepares", MAX_VOTES)),
    )


def _decode_view_change(data: dict) -> ViewChange:
    return ViewChange(
        view=_int(data, "view"),
        stable_seq=_int(data, "stable_seq"),
        checkpoint_proof=tuple(_nested(item, Checkpoint) for item in _list(data, "checkpoint_proof", MAX_VOTES)),
        prepared=tuple(_decode_certificate(item) for item in _list(data, "prepared", MAX_LOG)),
        sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
    )


def _decode_new_view(data: dict) -> NewView:
    return NewView(
        view=_int(data, "view"),
        view_changes=tuple(_nested(item, ViewChange) for item in _list(data, "view_changes", MAX_VOTES)),
        preprepares=tuple(_nested(item, PrePrepare) for item in _list(data, "preprepares", MAX_LOG)),
        sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
    )


def _decode_fetch(data: dict) -> Fetch:
    return Fetch(
        from_seq=_int(data, "from_seq"), view=_int(data, "view"), sender=_int(data, "sender"), sig=_text(data, "sig", _SIG)
    )


def _decode_entry(data: Any) -> LedgerEntry:
    if not isinstance(data, dict):
        raise MessageError("a ledger entry must be an object")
    return LedgerEntry(
        seq=_int(data, "seq"),
        batch=tuple(_nested(item, Request) for item in _list(data, "batch", MAX_BATCH)),
    )


def _decode_committed(data: Any) -> CommittedCertificate:
    if not isinstance(data, dict):
        raise MessageError("a committed certificate must be an object")
    return CommittedCertificate(
        preprepare=_nested(_field(data, "preprepare"), PrePrepare),
        commits=tuple(_nested(item, Commit) for item in _list(data, "commits", MAX_VOTES)),
    )


def _decode_state(data: dict) -> StateTransfer:
    return StateTransfer(
        stable_seq=_int(data, "stable_seq"),
        checkpoint_proof=tuple(_nested(item, Checkpoint) for item in _list(data, "checkpoint_proof", MAX_VOTES)),
        entries=tuple(_decode_entry(item) for item in _list(data, "entries", MAX_LOG)),
        certificates=tuple(_decode_committed(item) for item in _list(data, "certificates", MAX_LOG)),
        new_view=None if data.get("new_view") is None else _nested(data["new_view"], NewView),
        sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
    )


def _decode_status(data: dict) -> Status:
    return Status(
        view=_int(data, "view"), last_executed=_int(data, "last_executed"), sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
    )


def _decode_vote_fetch(data: dict) -> VoteFetch:
    keys = []
    for item in _list(data, "keys", MAX_VOTE_FETCH, minimum=1):
        if not isinstance(item, list) or len(item) != 2:
            raise MessageError("a vote-fetch key must be [client, timestamp]")
        keys.append((_text({"client": item[0]}, "client", _NAME), _int({"timestamp": item[1]}, "timestamp")))
    return VoteFetch(keys=tuple(keys), sender=_int(data, "sender"), sig=_text(data, "sig", _SIG))


def _decode_result_vote(data: dict) -> ResultVote:
    return ResultVote(
        seq=_int(data, "seq"),
        client=_text(data, "client", _NAME),
        timestamp=_int(data, "timestamp"),
        result=_result(_field(data, "result")),
        sender=_int(data, "sender"),
        sig=_text(data, "sig", _SIG),
        statement_sig=_optional_sig(data, "statement_sig"),
        link_sig=_optional_sig(data, "link_sig"),
        provenance_sig=_optional_sig(data, "provenance_sig"),
    )


def _decode_reply(data: dict) -> Reply:
    return Reply(
        view=_int(data, "view"),
        timestamp=_int(data, "timestamp"),
        client=_text(data, "client", _NAME),
        sender=_int(data, "sender"),
        result=_result(_field(data, "result")),
        sig=_text(data, "sig", _SIG),
        statement_sig=_optional_sig(data, "statement_sig"),
        link_sig=_optional_sig(data, "link_sig"),
        provenance_sig=_optional_sig(data, "provenance_sig"),
    )


_RELAYED = {Prepare.TYPE: Prepare, Commit.TYPE: Commit, ResultVote.TYPE: ResultVote}


def _decode_relay(data: dict) -> Relay:
    votes = []
    for item in _list(data, "votes", MAX_VOTES, minimum=1):
        kind = _RELAYED.get(item.get("type")) if isinstance(item, dict) else None
        if kind is None:
            raise MessageError("a relay carries only prepare, commit and result votes")
        votes.append(_nested(item, kind))
    return Relay(votes=tuple(votes))


def _decode_challenge(data: dict) -> Challenge:
    return Challenge(challenge=_text(data, "challenge", _CHALLENGE))


def _decode_hello(data: dict) -> Hello:
    return Hello(
        client=_text(data, "client", _NAME),
        node=_int(data, "node"),
        challenge=_text(data, "challenge", _CHALLENGE),
        sig=_text(data, "sig", _SIG),
    )


_DECODERS = {
    Request.TYPE: _decode_request,
    PrePrepare.TYPE: _decode_preprepare,
    Prepare.TYPE: _decode_vote(Prepare),
    Commit.TYPE: _decode_vote(Commit),
    Checkpoint.TYPE: _decode_checkpoint,
    ViewChange.TYPE: _decode_view_change,
    NewView.TYPE: _decode_new_view,
    Fetch.TYPE: _decode_fetch,
    StateTransfer.TYPE: _decode_state,
    ResultVote.TYPE: _decode_result_vote,
    VoteFetch.TYPE: _decode_vote_fetch,
    Status.TYPE: _decode_status,
    Reply.TYPE: _decode_reply,
    Hello.TYPE: _decode_hello,
    Challenge.TYPE: _decode_challenge,
    Relay.TYPE: _decode_relay,
}


def decode(data: Any) -> Message | Challenge:
    """Turn a parsed JSON frame into a message, or raise MessageError."""
    if not isinstance(data, dict):
        raise MessageError("a message must be a JSON object")
    kind = data.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise MessageError(f"unknown message type {str(data.get('type'))[:32]!r}")
    return decoder(data)
