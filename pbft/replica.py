"""The PBFT replica as a deterministic state machine (OSDI'99 §4).

No I/O, no clock, no randomness: the driver feeds in decoded messages and
build results, and takes out effects (`pbft.effects`). Every message's
signature is verified here, so the same checks hold whichever transport or
test harness feeds the replica. A message that fails a check is dropped and
`receive` returns the reason (`ignore_<message>_<reason>`); it never raises.
Our own mistakes trip asserts instead.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from pbft.crypto import Authenticator
from pbft.effects import Broadcast, Effect, Execute, SendReply, SendTo
from pbft.encoding import digest
from pbft.messages import (
    Checkpoint,
    Commit,
    Message,
    PrePrepare,
    Prepare,
    Reply,
    Request,
    Result,
    batch_digest,
    signed,
)
from pbft.quorum import commit_quorum, matching, prepare_quorum

logger = logging.getLogger(__name__)

GENESIS_STATE = "0" * 64


@dataclass(frozen=True)
class ReplicaSettings:
    node_id: int
    n: int
    f: int
    checkpoint_interval: int = 128
    log_window: int = 256
    batch_max: int = 64
    pipeline_depth: int = 8
    max_buffered: int = 4096

    def __post_init__(self) -> None:
        assert self.n >= 3 * self.f + 1, "PBFT needs n >= 3f+1"
        assert 0 <= self.node_id < self.n
        assert self.log_window >= self.checkpoint_interval > 0
        assert self.batch_max > 0 and self.pipeline_depth > 0


@dataclass
class Slot:
    """Everything this replica knows about one sequence number in its view."""

    preprepare: PrePrepare | None = None
    prepares: dict[int, str] = field(default_factory=dict)  # sender -> digest
    commits: dict[int, str] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False


class Replica:
    def __init__(self, settings: ReplicaSettings, auth: Authenticator) -> None:
        self.settings = settings
        self.auth = auth
        self.id = settings.node_id
        self.view = 0
        self.low_watermark = 0  # h: sequence number of the last stable checkpoint
        self.last_executed = 0
        self.next_seq = 0  # highest sequence number this replica assigned as primary
        self.state_digest = GENESIS_STATE  # hash chain over executed batches
        self.slots: dict[int, Slot] = {}
        self.pending: deque[Request] = deque()  # primary: requests waiting for a sequence number
        self.pending_keys: set[tuple[str, int]] = set()
        self.forwarded: set[tuple[str, int]] = set()  # backup: requests sent on to the primary
        # Exactly-once: every executed request, with its reply once the build finished.
        self.executed: dict[tuple[str, int], Reply | None] = {}
        self.checkpoints: dict[int, dict[int, str]] = {}  # seq -> sender -> state digest
        self.own_checkpoints: dict[int, str] = {}
        self.future: deque[Message] = deque(maxlen=settings.max_buffered)
        self._outbox: list[Effect] = []

    # --- derived values -----------------------------------------------

    @property
    def f(self) -> int:
        return self.settings.f

    @property
    def high_watermark(self) -> int:
        return self.low_watermark + self.settings.log_window

    def primary(self, view: int | None = None) -> int:
        return (self.view if view is None else view) % self.settings.n

    @property
    def is_primary(self) -> bool:
        return self.primary() == self.id

    def in_window(self, seq: int) -> bool:
        return self.low_watermark < seq <= self.high_watermark

    def take_effects(self) -> list[Effect]:
        effects, self._outbox = self._outbox, []
        return effects

    # --- inputs -------------------------------------------------------

    def receive(self, message: Message) -> str | None:
        """Handle one decoded message; return why it was dropped, or None."""
        handler = {
            Request: self._on_request,
            PrePrepare: self._on_preprepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
        }.get(type(message))
        if handler is None:
            reason = f"ignore_{message.TYPE}_unexpected"
        else:
            reason = handler(message)
        if reason is not None:
            logger.warning("node=%d view=%d dropped %s: %s", self.id, self.view, _describe(message), reason)
        self._check_invariants()
        return reason

    def execution_finished(self, request: Request, result: Result) -> None:
        """A build started by an Execute effect has an outcome: reply to its client."""
        assert request.key in self.executed, "result for a request that was never executed"
        if self.executed[request.key] is not None:
            return
        reply = signed(Reply(self.view, request.timestamp, request.client, self.id, result), self.auth.sign)
        self.executed[request.key] = reply
        self._outbox.append(SendReply(reply))

    # --- requests (§4.1, §4.2) -----------------------------------------

    def _on_request(self, request: Request) -> str | None:
        if not self.auth.verify_client(request.client, request.payload(), request.sig):
            return "ignore_request_bad_signature"
        if request.key in self.executed:
            reply = self.executed[request.key]
            if reply is None:
                return "ignore_request_executing"
            # A retransmission: the client lost our reply, so send it again.
            self._outbox.append(SendReply(reply))
            return None
        if not self.is_primary:
            if request.key in self.forwarded:
                return "ignore_request_already_forwarded"
            self.forwarded.add(request.key)
            self._outbox.append(SendTo(self.primary(), request))
            return None
        if request.key in self.pending_keys or self._is_ordered(request):
            return "ignore_request_already_ordered"
        self.pending.append(request)
        self.pending_keys.add(request.key)
        self._issue_preprepares()
        return None

    def _is_ordered(self, request: Request) -> bool:
        return any(
            slot.preprepare is not None and request in slot.preprepare.batch
            for seq, slot in self.slots.items()
            if seq > self.last_executed
        )

    def _issue_preprepares(self) -> None:
        """Assign sequence numbers while the pipeline has room; batch the rest (§4.2)."""
        while (
            self.pending
            and self.next_seq - self.last_executed < self.settings.pipeline_depth
            and self.next_seq + 1 <= self.high_watermark
        ):
            batch = []
            while self.pending and len(batch) < self.settings.batch_max:
                request = self.pending.popleft()
                self.pending_keys.discard(request.key)
                batch.append(request)
            self.next_seq += 1
            preprepare = signed(
                PrePrepare(self.view, self.next_seq, batch_digest(tuple(batch)), self.id, tuple(batch)),
                self.auth.sign,
            )
            slot = self._slot(preprepare.seq)
            slot.preprepare = preprepare
            logger.info(
                "node=%d view=%d seq=%d phase=pre-prepare digest=%s requests=%d",
                self.id, self.view, preprepare.seq, preprepare.digest[:8], len(batch),
            )
            self._outbox.append(Broadcast(preprepare))
            self._advance(preprepare.seq)

    # --- three phases (§4.2) ------------------------------------------

    def _on_preprepare(self, message: PrePrepare) -> str | None:
        if message.sender != self.primary(message.view):
            return "ignore_preprepare_not_from_primary"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_preprepare_bad_signature"
        reason = self._check_view_and_window("preprepare", message)
        if reason is not None or self._buffer_if_future(message):
            return reason
        if message.digest != batch_digest(message.batch):
            return "ignore_preprepare_wrong_digest"
        for request in message.batch:
            if not self.auth.verify_client(request.client, request.payload(), request.sig):
                return "ignore_preprepare_bad_request_signature"
        slot = self._slot(message.seq)
        if slot.preprepare is not None:
            if slot.preprepare.digest != message.digest:
                return "ignore_preprepare_conflicting_digest"
            return "ignore_preprepare_duplicate"
        slot.preprepare = message
        for request in message.batch:
            self.forwarded.discard(request.key)
        prepare = signed(Prepare(self.view, message.seq, message.digest, self.id), self.auth.sign)
        slot.prepares[self.id] = message.digest
        logger.info(
            "node=%d view=%d seq=%d phase=prepare digest=%s", self.id, self.view, message.seq, message.digest[:8]
        )
        self._outbox.append(Broadcast(prepare))
        self._advance(message.seq)
        return None

    def _on_prepare(self, message: Prepare) -> str | None:
        reason = self._check_vote("prepare", message)
        if reason is None and message.sender == self.primary(message.view):
            reason = "ignore_prepare_from_primary"
        if reason is not None or self._buffer_if_future(message):
            return reason
        return self._record_vote(self._slot(message.seq).prepares, "prepare", message)

    def _on_commit(self, message: Commit) -> str | None:
        reason = self._check_vote("commit", message)
        if reason is not None or self._buffer_if_future(message):
            return reason
        return self._record_vote(self._slot(message.seq).commits, "commit", message)

    def _check_vote(self, kind: str, message: Prepare | Commit) -> str | None:
        if not 0 <= message.sender < self.settings.n:
            return f"ignore_{kind}_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return f"ignore_{kind}_bad_signature"
        return self._check_view_and_window(kind, message)

    def _check_view_and_window(self, kind: str, message: PrePrepare | Prepare | Commit) -> str | None:
        if message.view < self.view:
            return f"ignore_{kind}_old_view"
        if not self.in_window(message.seq):
            return f"ignore_{kind}_out_of_window"
        return None

    def _buffer_if_future(self, message: PrePrepare | Prepare | Commit) -> bool:
        """Keep a message of a view this replica has not entered yet, in a bounded buffer."""
        if message.view > self.view:
            self.future.append(message)
            return True
        return False

    def _record_vote(self, votes: dict[int, str], kind: str, message: Prepare | Commit) -> str | None:
        if message.sender in votes:
            return None if votes[message.sender] == message.digest else f"ignore_{kind}_sender_changed_digest"
        votes[message.sender] = message.digest
        self._advance(message.seq)
        return None

    def _slot(self, seq: int) -> Slot:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot()
        return slot

    def _advance(self, seq: int) -> None:
        """Move one sequence number through prepared and committed-local, then execute."""
        slot = self.slots[seq]
        preprepare = slot.preprepare
        if preprepare is None:
            return
        if not slot.prepared and matching(slot.prepares, preprepare.digest) >= prepare_quorum(self.f):
            slot.prepared = True
            slot.commits[self.id] = preprepare.digest
            logger.info(
                "node=%d view=%d seq=%d phase=commit digest=%s", self.id, self.view, seq, preprepare.digest[:8]
            )
            self._outbox.append(Broadcast(signed(Commit(self.view, seq, preprepare.digest, self.id), self.auth.sign)))
        if slot.prepared and not slot.committed and matching(slot.commits, preprepare.digest) >= commit_quorum(self.f):
            slot.committed = True
            logger.info(
                "node=%d view=%d seq=%d phase=committed digest=%s", self.id, self.view, seq, preprepare.digest[:8]
            )
            self._execute_ready()

    # --- execution, in sequence order (§4.2) ---------------------------

    def _execute_ready(self) -> None:
        while True:
            slot = self.slots.get(self.last_executed + 1)
            if slot is None or not slot.committed:
                return
            assert slot.preprepare is not None
            seq = self.last_executed + 1
            fresh = []
            for request in slot.preprepare.batch:
                if request.key in self.executed:
                    continue
                self.executed[request.key] = None
                fresh.append(request)
            self.last_executed = seq
            self.state_digest = digest([self.state_digest, seq, slot.preprepare.digest])
            logger.info(
                "node=%d view=%d seq=%d phase=execute digest=%s builds=%d",
                self.id, self.view, seq, slot.preprepare.digest[:8], len(fresh),
            )
            self._outbox.append(Execute(self.view, seq, tuple(fresh)))
            if seq % self.settings.checkpoint_interval == 0:
                self._take_checkpoint(seq)
            if self.is_primary:
                self._issue_preprepares()

    # --- checkpoints and garbage collection (§4.3) ---------------------

    def _take_checkpoint(self, seq: int) -> None:
        self.own_checkpoints[seq] = self.state_digest
        checkpoint = signed(Checkpoint(seq, self.state_digest, self.id), self.auth.sign)
        self.checkpoints.setdefault(seq, {})[self.id] = self.state_digest
        logger.info("node=%d view=%d seq=%d phase=checkpoint digest=%s", self.id, self.view, seq, self.state_digest[:8])
        self._outbox.append(Broadcast(checkpoint))
        self._maybe_stable(seq)

    def _on_checkpoint(self, message: Checkpoint) -> str | None:
        if not 0 <= message.sender < self.settings.n:
            return "ignore_checkpoint_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_checkpoint_bad_signature"
        if message.seq <= self.low_watermark or message.seq % self.settings.checkpoint_interval:
            return "ignore_checkpoint_stale"
        if message.seq > self.high_watermark + self.settings.log_window:
            return "ignore_checkpoint_out_of_window"
        votes = self.checkpoints.setdefault(message.seq, {})
        if message.sender in votes:
            return "ignore_checkpoint_duplicate"
        votes[message.sender] = message.state_digest
        self._maybe_stable(message.seq)
        return None

    def _maybe_stable(self, seq: int) -> None:
        """A checkpoint is stable once 2f+1 nodes, this one included, vouch for our digest."""
        own = self.own_checkpoints.get(seq)
        if own is None or matching(self.checkpoints.get(seq, {}), own) < commit_quorum(self.f):
            return
        self.low_watermark = seq
        for old in [s for s in self.slots if s <= seq]:
            del self.slots[old]
        for old in [s for s in self.checkpoints if s < seq]:
            del self.checkpoints[old]
        for old in [s for s in self.own_checkpoints if s < seq]:
            del self.own_checkpoints[old]
        logger.info("node=%d view=%d seq=%d phase=stable digest=%s", self.id, self.view, seq, own[:8])
        if self.is_primary:
            self._issue_preprepares()

    # --- invariants ----------------------------------------------------

    def _check_invariants(self) -> None:
        assert self.low_watermark <= self.last_executed <= self.high_watermark
        assert all(self.in_window(seq) for seq in self.slots)
        for slot in self.slots.values():
            if slot.committed:
                assert slot.prepared and slot.preprepare is not None


def _describe(message: Message) -> str:
    parts = [message.TYPE]
    for name in ("view", "seq", "sender", "client", "timestamp"):
        if hasattr(message, name):
            parts.append(f"{name}={getattr(message, name)}")
    return " ".join(parts)
