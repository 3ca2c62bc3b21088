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
from pbft.effects import Broadcast, Effect, Execute, SendReply, SendTo, ServeFetch, Store
from pbft.encoding import digest
from pbft.messages import (
    Checkpoint,
    Commit,
    CommittedCertificate,
    Fetch,
    LedgerEntry,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCertificate,
    Reply,
    Request,
    Result,
    ResultVote,
    StateTransfer,
    ViewChange,
    batch_digest,
    decode,
    encode,
    signed,
)
from pbft.quorum import commit_quorum, matching, prepare_quorum, reply_quorum
from pbft.viewchange import (
    Membership,
    NewViewPlan,
    checkpoint_proof_problem,
    committed_certificate_problem,
    plan_new_view,
    view_change_problem,
)

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
    view_change_timeout_s: float = 4.0  # T: doubled for each consecutive view change
    fetch_interval_s: float = 1.0  # how long a lagging replica waits before asking peers for state
    # Exactly-once bookkeeping forgets a client's requests this much older than
    # its newest executed one, so memory does not grow with requests served.
    request_expiry_s: float = 3600.0

    def __post_init__(self) -> None:
        assert self.n >= 3 * self.f + 1, "PBFT needs n >= 3f+1"
        assert 0 <= self.node_id < self.n
        assert self.log_window >= self.checkpoint_interval > 0
        assert self.batch_max > 0 and self.pipeline_depth > 0


@dataclass
class Slot:
    """Everything this replica knows about one sequence number in its view."""

    preprepare: PrePrepare | None = None
    # Signed votes by sender: prepares make up the certificate a view change carries.
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False


def _digests(votes: dict[int, Prepare] | dict[int, Commit]) -> dict[int, str]:
    return {sender: vote.digest for sender, vote in votes.items()}


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
        # Requests a client sent us directly that have not executed yet: a
        # backup's view-change timer runs while this is not empty (§4.4).
        self.waiting: dict[tuple[str, int], Request] = {}
        # Exactly-once: every executed request, with its reply once the build finished.
        self.executed: dict[tuple[str, int], Reply | None] = {}
        self.checkpoints: dict[int, dict[int, Checkpoint]] = {}  # seq -> sender -> signed checkpoint
        self.own_checkpoints: dict[int, str] = {}
        self.stable_proof: tuple[Checkpoint, ...] = ()  # 2f+1 checkpoints proving low_watermark
        self.prepared_certs: dict[int, PreparedCertificate] = {}  # seq -> latest certificate
        self.future: deque[Message] = deque(maxlen=settings.max_buffered)
        self.early_votes: deque[ResultVote] = deque(maxlen=settings.max_buffered)
        # View change state (§4.4): while changing, only checkpoints and view-change traffic count.
        self.changing_view = False
        self.view_changes: dict[int, dict[int, ViewChange]] = {}  # view -> sender -> message
        self.view_changes_in_a_row = 0
        self.now = 0.0
        self.timer_deadline: float | None = None
        self.view_change_resend_at = 0.0
        # Exactly-once beyond memory: per client, timestamps at or below the floor are done.
        self.client_floor: dict[str, int] = {}
        self.client_latest: dict[str, int] = {}
        # State transfer: the highest sequence number any verified message named,
        # when this replica last executed something, and when it may ask again.
        self.highest_seen = 0  # from commits and checkpoints: others prepared or executed this far
        self.highest_seen_view = 0
        self.last_progress_at = 0.0
        self.next_fetch_at = 0.0
        self.fetches_without_progress = 0
        self.last_new_view: NewView | None = None  # what started our view, for peers left behind
        self.fetch_served_at: dict[int, float] = {}
        self.members = Membership(settings.n, settings.f, settings.log_window)
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

    def receive(self, message: Message, now: float | None = None) -> str | None:
        """Handle one decoded message; return why it was dropped, or None."""
        if now is not None:
            self.now = max(self.now, now)
        handler = {
            Request: self._on_request,
            PrePrepare: self._on_preprepare,
            Prepare: self._on_prepare,
            Commit: self._on_commit,
            Checkpoint: self._on_checkpoint,
            ViewChange: self._on_view_change,
            NewView: self._on_new_view,
            Fetch: self._on_fetch,
            StateTransfer: self._on_state_transfer,
            ResultVote: self._on_result_vote,
        }.get(type(message))
        if handler is None:
            reason = f"ignore_{message.TYPE}_unexpected"
        else:
            reason = handler(message)
        if reason is not None:
            logger.warning("node=%d view=%d dropped %s: %s", self.id, self.view, _describe(message), reason)
        self._check_invariants()
        return reason

    def tick(self, now: float) -> None:
        """Advance the clock; a backup whose timer expired moves to the next view (§4.4)."""
        self.now = max(self.now, now)
        if self.timer_deadline is not None and self.now >= self.timer_deadline:
            logger.warning("node=%d view=%d timer expired", self.id, self.view)
            self._start_view_change(self.view + 1)
        elif self.changing_view and self.now >= self.view_change_resend_at:
            self._send_view_change()
        self._maybe_fetch()
        self._check_invariants()

    def execution_finished(self, request: Request, result: Result, seq: int) -> None:
        """A build started by an Execute effect at `seq` has an outcome: reply to its
        client, and tell the other nodes, so that every ledger can certify it."""
        if request.key not in self.executed:
            assert self._expired(request), "result for a request that was never executed"
            return
        if self.executed[request.key] is not None:
            return
        reply = signed(Reply(self.view, request.timestamp, request.client, self.id, result), self.auth.sign)
        self.executed[request.key] = reply
        self._outbox.append(SendReply(reply))
        vote = signed(ResultVote(seq, request.client, request.timestamp, result, self.id), self.auth.sign)
        self._outbox.append(Store(vote))
        self._outbox.append(Broadcast(vote))

    # --- requests (§4.1, §4.2) -----------------------------------------

    def _on_request(self, request: Request) -> str | None:
        if not self.auth.verify_client(request.client, request.payload(), request.sig):
            return "ignore_request_bad_signature"
        if request.key not in self.executed and self._expired(request):
            return "ignore_request_expired"
        if request.key in self.executed:
            reply = self.executed[request.key]
            if reply is None:
                return "ignore_request_no_reply_yet"
            # A retransmission: the client lost our reply, so send it again.
            self._outbox.append(SendReply(reply))
            return None
        self.waiting[request.key] = request
        if self.changing_view:
            return None  # handed to the new primary once the view is in place
        if not self.is_primary:
            if self.timer_deadline is None:
                self._start_timer()
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
            and not self.changing_view
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
            logger.info(
                "node=%d view=%d seq=%d phase=pre-prepare digest=%s requests=%d",
                self.id, self.view, preprepare.seq, preprepare.digest[:8], len(batch),
            )
            self._outbox.append(Broadcast(preprepare))
            self._accept_preprepare(preprepare)

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
        self._accept_preprepare(message)
        return None

    def _accept_preprepare(self, message: PrePrepare) -> None:
        slot = self._slot(message.seq)
        slot.preprepare = message
        self._outbox.append(Store(message))
        if not self.is_primary:
            prepare = signed(Prepare(self.view, message.seq, message.digest, self.id), self.auth.sign)
            slot.prepares[self.id] = prepare
            self._outbox.append(Store(prepare))
            logger.info(
                "node=%d view=%d seq=%d phase=prepare digest=%s", self.id, self.view, message.seq, message.digest[:8]
            )
            self._outbox.append(Broadcast(prepare))
        self._advance(message.seq)

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
        self.highest_seen_view = max(self.highest_seen_view, message.view)
        if isinstance(message, Commit):
            self.highest_seen = max(self.highest_seen, message.seq)
        if message.view < self.view:
            return f"ignore_{kind}_old_view"
        if not self.in_window(message.seq):
            return f"ignore_{kind}_out_of_window"
        return None

    def _buffer_if_future(self, message: PrePrepare | Prepare | Commit) -> bool:
        """Keep a message of a view this replica has not entered yet, in a bounded buffer."""
        if message.view > self.view or (self.changing_view and message.view == self.view):
            self.future.append(message)
            return True
        return False

    def _record_vote(self, votes: dict, kind: str, message: Prepare | Commit) -> str | None:
        if message.sender in votes:
            return None if votes[message.sender].digest == message.digest else f"ignore_{kind}_sender_changed_digest"
        votes[message.sender] = message
        self._outbox.append(Store(message))
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
        if not slot.prepared and matching(_digests(slot.prepares), preprepare.digest) >= prepare_quorum(self.f):
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == preprepare.digest)
            self.prepared_certs[seq] = PreparedCertificate(preprepare, proof)
            commit = signed(Commit(self.view, seq, preprepare.digest, self.id), self.auth.sign)
            slot.commits[self.id] = commit
            self._outbox.append(Store(commit))
            logger.info(
                "node=%d view=%d seq=%d phase=commit digest=%s", self.id, self.view, seq, preprepare.digest[:8]
            )
            self._outbox.append(Broadcast(commit))
        committed_votes = matching(_digests(slot.commits), preprepare.digest)
        if slot.prepared and not slot.committed and committed_votes >= commit_quorum(self.f):
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
            self._append_to_ledger(slot.preprepare.seq, slot.preprepare.digest, slot.preprepare.batch, build=True)
            if self.is_primary:
                self._issue_preprepares()

    def _append_to_ledger(self, seq: int, batch_id: str, batch: tuple[Request, ...], *, build: bool) -> None:
        """Execute one batch: the only place last_executed and the state digest move forward one step."""
        assert seq == self.last_executed + 1
        fresh = []
        for request in batch:
            self.waiting.pop(request.key, None)
            self.forwarded.discard(request.key)
            if request.key in self.executed or self._expired(request):
                continue
            self.executed[request.key] = None
            self.client_latest[request.client] = max(request.timestamp, self.client_latest.get(request.client, 0))
            fresh.append(request)
        self._release_early_votes(batch)
        self.last_executed = seq
        self.last_progress_at = self.now
        self.fetches_without_progress = 0
        self.state_digest = digest([self.state_digest, seq, batch_id])
        logger.info(
            "node=%d view=%d seq=%d phase=execute digest=%s builds=%d",
            self.id, self.view, seq, batch_id[:8], len(fresh) if build else 0,
        )
        self._outbox.append(
            Execute(self.view, seq, batch_id, batch, tuple(fresh) if build else (), self.state_digest)
        )
        self._restart_timer_after_progress()
        if seq % self.settings.checkpoint_interval == 0:
            self._forget_expired_requests()
            self._take_checkpoint(seq)

    def _expired(self, request: Request) -> bool:
        return request.timestamp <= self.client_floor.get(request.client, -1)

    def _forget_expired_requests(self) -> None:
        """Drop exactly-once entries far older than each client's newest request.

        Done at checkpoint boundaries, as a function of the ledger alone, so
        every honest replica forgets the same entries at the same point.
        """
        expiry_us = int(self.settings.request_expiry_s * 1_000_000)
        for client, latest in self.client_latest.items():
            self.client_floor[client] = max(self.client_floor.get(client, -1), latest - expiry_us)
        self.executed = {key: reply for key, reply in self.executed.items() if key[1] > self.client_floor[key[0]]}

    # --- certified results ------------------------------------------------

    def _on_result_vote(self, message: ResultVote) -> str | None:
        """Keep another node's RESULT for the ledger; the store tallies them into a verdict."""
        if not 0 <= message.sender < self.settings.n:
            return "ignore_result_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_result_bad_signature"
        if message.key in self.executed:
            self._outbox.append(Store(message))
        elif message.timestamp <= self.client_floor.get(message.client, -1):
            return "ignore_result_expired"
        else:
            # A faster node finished a build we have not ordered yet: keep it, bounded.
            self.early_votes.append(message)
        return None

    def _release_early_votes(self, batch: tuple[Request, ...]) -> None:
        keys = {request.key for request in batch}
        if not any(vote.key in keys for vote in self.early_votes):
            return
        kept = deque(maxlen=self.settings.max_buffered)
        for vote in self.early_votes:
            if vote.key in keys:
                self._outbox.append(Store(vote))
            else:
                kept.append(vote)
        self.early_votes = kept

    # --- checkpoints and garbage collection (§4.3) ---------------------

    def _take_checkpoint(self, seq: int) -> None:
        self.own_checkpoints[seq] = self.state_digest
        checkpoint = signed(Checkpoint(seq, self.state_digest, self.id), self.auth.sign)
        self.checkpoints.setdefault(seq, {})[self.id] = checkpoint
        self._outbox.append(Store(checkpoint))
        logger.info("node=%d view=%d seq=%d phase=checkpoint digest=%s", self.id, self.view, seq, self.state_digest[:8])
        self._outbox.append(Broadcast(checkpoint))
        self._maybe_stable(seq)

    def _on_checkpoint(self, message: Checkpoint) -> str | None:
        if not 0 <= message.sender < self.settings.n:
            return "ignore_checkpoint_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_checkpoint_bad_signature"
        self.highest_seen = max(self.highest_seen, message.seq)
        if message.seq <= self.low_watermark or message.seq % self.settings.checkpoint_interval:
            return "ignore_checkpoint_stale"
        if message.seq > self.high_watermark + self.settings.log_window:
            return "ignore_checkpoint_out_of_window"
        votes = self.checkpoints.setdefault(message.seq, {})
        if message.sender in votes:
            return "ignore_checkpoint_duplicate"
        votes[message.sender] = message
        self._outbox.append(Store(message))
        self._maybe_stable(message.seq)
        return None

    def _maybe_stable(self, seq: int) -> None:
        """A checkpoint is stable once 2f+1 nodes, this one included, vouch for our digest."""
        own = self.own_checkpoints.get(seq)
        votes = self.checkpoints.get(seq, {})
        if own is None or seq <= self.low_watermark or matching(_state_digests(votes), own) < commit_quorum(self.f):
            return
        self.low_watermark = seq
        self.stable_proof = tuple(vote for vote in votes.values() if vote.state_digest == own)
        for old in [s for s in self.slots if s <= seq]:
            del self.slots[old]
        for old in [s for s in self.prepared_certs if s <= seq]:
            del self.prepared_certs[old]
        for old in [s for s in self.checkpoints if s < seq]:
            del self.checkpoints[old]
        for old in [s for s in self.own_checkpoints if s < seq]:
            del self.own_checkpoints[old]
        logger.info("node=%d view=%d seq=%d phase=stable digest=%s", self.id, self.view, seq, own[:8])
        if self.is_primary:
            self._issue_preprepares()

    # --- state transfer (§4.3, §5.3.2) ---------------------------------

    def _maybe_fetch(self) -> None:
        """Ask peers for what we missed when others are ahead and we have made no progress for a while.

        Unanswered asks back off (doubling), so a node that is only waiting
        for a stalled sequence number does not flood its peers.
        """
        behind = self.highest_seen > self.last_executed or self.highest_seen_view > self.view
        if not behind or self.now < self.next_fetch_at:
            return
        if self.now - self.last_progress_at < self.settings.fetch_interval_s:
            return
        self.next_fetch_at = self.now + self.settings.fetch_interval_s * 2 ** min(self.fetches_without_progress, 5)
        self.fetches_without_progress += 1
        logger.warning(
            "node=%d view=%d phase=fetch from=%d highest_seen=%d highest_view=%d",
            self.id, self.view, self.last_executed + 1, self.highest_seen, self.highest_seen_view,
        )
        fetch = Fetch(self.last_executed + 1, self.view, self.id)
        self._outbox.append(Broadcast(signed(fetch, self.auth.sign)))

    def _on_fetch(self, message: Fetch) -> str | None:
        if not 0 <= message.sender < self.settings.n or message.sender == self.id:
            return "ignore_fetch_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_fetch_bad_signature"
        newer_view = message.view < self.view and self.last_new_view is not None
        if message.from_seq > self.last_executed and not newer_view:
            return "ignore_fetch_nothing_newer"
        # Answering reads the ledger and can be large: one answer per peer per interval.
        if self.now < self.fetch_served_at.get(message.sender, float("-inf")) + self.settings.fetch_interval_s / 2:
            return "ignore_fetch_too_soon"
        self.fetch_served_at[message.sender] = self.now
        self._outbox.append(ServeFetch(message))
        return None

    def answer_fetch(self, fetch: Fetch, entries: list[LedgerEntry]) -> None:
        """Send `fetch.sender` the ledger entries the driver read (from_seq .. h) and
        committed certificates for what this replica executed above h."""
        certificates = []
        for seq in range(max(fetch.from_seq, self.low_watermark + 1), self.last_executed + 1):
            slot = self.slots.get(seq)
            if slot is None or not slot.committed or slot.preprepare is None:
                break
            digest_ = slot.preprepare.digest
            commits = tuple(vote for vote in slot.commits.values() if vote.digest == digest_)
            certificates.append(CommittedCertificate(slot.preprepare, commits))
        message = StateTransfer(
            self.low_watermark,
            self.stable_proof,
            tuple(entry for entry in entries if fetch.from_seq <= entry.seq <= self.low_watermark),
            tuple(certificates),
            self.last_new_view if fetch.view < self.view else None,
            self.id,
        )
        self._outbox.append(SendTo(fetch.sender, signed(message, self.auth.sign)))

    def _on_state_transfer(self, message: StateTransfer) -> str | None:
        if not 0 <= message.sender < self.settings.n:
            return "ignore_state_unknown_sender"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_state_bad_signature"
        if message.stable_seq > self.last_executed:
            reason = self._adopt_ledger(message)
            if reason is not None:
                return reason
        new_view = message.new_view
        if new_view is not None and (new_view.view > self.view or (new_view.view == self.view and self.changing_view)):
            reason = self._on_new_view(new_view)
            if reason is not None:
                return f"ignore_state_{reason}"
        for cert in message.certificates:
            seq = cert.preprepare.seq
            if seq <= self.last_executed or not self.in_window(seq):
                continue
            problem = committed_certificate_problem(cert, self.members, self.auth)
            if problem is not None:
                return f"ignore_state_{problem}"
            slot = self._slot(seq)
            if not slot.committed:
                # 2f+1 commits prove the decision at seq, whatever view we are in now.
                slot.preprepare = cert.preprepare
                slot.commits = {commit.sender: commit for commit in cert.commits}
                slot.prepared = slot.committed = True
                self._outbox.append(Store(cert.preprepare))
                self._outbox.extend(Store(commit) for commit in cert.commits)
        self._execute_ready()
        return None

    def _adopt_ledger(self, message: StateTransfer) -> str | None:
        """Take the batches up to a stable checkpoint we missed, without running their builds."""
        problem = checkpoint_proof_problem(message.checkpoint_proof, message.stable_seq, self.members, self.auth)
        if problem is not None:
            return f"ignore_state_{problem}"
        entries = [entry for entry in message.entries if entry.seq > self.last_executed]
        if [entry.seq for entry in entries] != list(range(self.last_executed + 1, message.stable_seq + 1)):
            return "ignore_state_entries_not_contiguous"
        chained = self.state_digest
        for entry in entries:
            chained = digest([chained, entry.seq, batch_digest(entry.batch)])
        if chained != message.checkpoint_proof[0].state_digest:
            return "ignore_state_entries_do_not_match_checkpoint"
        for entry in entries:
            self._append_to_ledger(entry.seq, batch_digest(entry.batch), entry.batch, build=False)
        seq = message.stable_seq
        self.own_checkpoints[seq] = self.state_digest
        for checkpoint in message.checkpoint_proof:
            self.checkpoints.setdefault(seq, {}).setdefault(checkpoint.sender, checkpoint)
            self._outbox.append(Store(checkpoint))
        self._maybe_stable(seq)
        logger.warning("node=%d view=%d seq=%d phase=state-transfer from=%d", self.id, self.view, seq, message.sender)
        return None

    # --- view change (§4.4, §4.5.2) --------------------------------------

    def _timeout_s(self) -> float:
        return self.settings.view_change_timeout_s * 2 ** min(self.view_changes_in_a_row, 10)

    def _start_timer(self) -> None:
        self.timer_deadline = self.now + self._timeout_s()

    def _restart_timer_after_progress(self) -> None:
        """Executing a request proves the view works: reset the doubling, and keep
        the timer only while other requests are still waiting. Batches learnt
        by state transfer during a view change prove nothing about the next view."""
        if self.changing_view:
            return
        self.view_changes_in_a_row = 0
        self.timer_deadline = None
        if self.waiting and not self.is_primary:
            self._start_timer()

    def _start_view_change(self, view: int) -> None:
        assert view > self.view or (view == self.view and not self.changing_view)
        self.view = view
        self.changing_view = True
        self.view_changes_in_a_row += 1
        self.timer_deadline = None
        for request in self.pending:
            self.waiting.setdefault(request.key, request)
        self.pending.clear()
        self.pending_keys.clear()
        self._send_view_change()
        self._maybe_start_new_view_timer()
        self._maybe_send_new_view(view)

    def _send_view_change(self) -> None:
        """Broadcast our VIEW-CHANGE for the view we are changing to; again every T while we wait,
        since a lost or forgotten one (a peer restarted) would otherwise stall the change."""
        message = signed(
            ViewChange(
                self.view,
                self.low_watermark,
                self.stable_proof,
                tuple(cert for seq, cert in sorted(self.prepared_certs.items()) if seq > self.low_watermark),
                self.id,
            ),
            self.auth.sign,
        )
        self.view_changes.setdefault(self.view, {})[self.id] = message
        self.view_change_resend_at = self.now + self.settings.view_change_timeout_s
        logger.warning(
            "node=%d view=%d phase=view-change stable=%d prepared=%d",
            self.id, self.view, self.low_watermark, len(message.prepared),
        )
        self._outbox.append(Broadcast(message))

    def _maybe_start_new_view_timer(self) -> None:
        """Time the wait for NEW-VIEW only once 2f+1 nodes want this view (§4.5.2): a node
        that alone suspects the primary waits for the others instead of racing ahead
        through views nobody else will join. The wait doubles each time."""
        if (
            self.changing_view
            and self.timer_deadline is None
            and len(self.view_changes.get(self.view, {})) >= commit_quorum(self.f)
        ):
            self._start_timer()

    def _on_view_change(self, message: ViewChange) -> str | None:
        if message.view < self.view or (message.view == self.view and not self.changing_view):
            return "ignore_view-change_stale"
        problem = view_change_problem(message, self.members, self.auth)
        if problem is not None:
            return f"ignore_view-change_{problem}"
        votes = self.view_changes.setdefault(message.view, {})
        if message.sender in votes:
            return "ignore_view-change_duplicate"
        votes[message.sender] = message
        self._maybe_start_new_view_timer()
        # f+1 nodes asking for later views include an honest one: join the
        # smallest of those views rather than wait for our own timer (§4.5.2).
        later = {
            sender: view
            for view, senders in self.view_changes.items()
            if view > self.view or (view == self.view and not self.changing_view)
            for sender in senders
            if sender != self.id
        }
        if len(later) >= reply_quorum(self.f):
            self._start_view_change(min(later.values()))
        self._maybe_send_new_view(message.view)
        return None

    def _maybe_send_new_view(self, view: int) -> None:
        """As primary of `view`, announce it once 2f+1 view changes (ours included) are in."""
        votes = self.view_changes.get(view, {})
        if (
            self.primary(view) != self.id
            or view != self.view
            or not self.changing_view
            or self.id not in votes
            or len(votes) < commit_quorum(self.f)
        ):
            return
        chosen = tuple(votes[sender] for sender in sorted(votes)[: commit_quorum(self.f)])
        if self.id not in {vc.sender for vc in chosen}:
            chosen = (votes[self.id],) + chosen[1:]
        plan = plan_new_view(chosen, view, self.members)
        preprepares = tuple(
            signed(PrePrepare(view, seq, old.digest, self.id, old.batch), self.auth.sign)
            for seq, old in sorted(plan.batches.items())
        )
        message = signed(NewView(view, chosen, preprepares, self.id), self.auth.sign)
        self._outbox.append(Broadcast(message))
        self._enter_view(message, plan)

    def _on_new_view(self, message: NewView) -> str | None:
        if message.view < self.view or (message.view == self.view and not self.changing_view):
            return "ignore_new-view_stale"
        if message.sender != self.primary(message.view):
            return "ignore_new-view_not_from_primary"
        if not self.auth.verify_node(message.sender, message.payload(), message.sig):
            return "ignore_new-view_bad_signature"
        senders = {vc.sender for vc in message.view_changes}
        if len(senders) != len(message.view_changes) or len(senders) < commit_quorum(self.f):
            return "ignore_new-view_too_few_view_changes"
        for vc in message.view_changes:
            if vc.view != message.view:
                return "ignore_new-view_view_change_for_other_view"
            problem = view_change_problem(vc, self.members, self.auth)
            if problem is not None:
                return f"ignore_new-view_{problem}"
        # Recompute what the primary had to re-issue and accept nothing else.
        plan = plan_new_view(message.view_changes, message.view, self.members)
        expected = [(seq, old.digest) for seq, old in sorted(plan.batches.items())]
        if [(pp.seq, pp.digest) for pp in message.preprepares] != expected:
            return "ignore_new-view_wrong_preprepares"
        for pp in message.preprepares:
            if pp.view != message.view or pp.sender != message.sender or pp.digest != batch_digest(pp.batch):
                return "ignore_new-view_malformed_preprepare"
            if not self.auth.verify_node(pp.sender, pp.payload(), pp.sig):
                return "ignore_new-view_bad_preprepare_signature"
        self._enter_view(message, plan)
        return None

    def _enter_view(self, new_view: NewView, plan: NewViewPlan) -> None:
        view, preprepares = new_view.view, new_view.preprepares
        self.last_new_view = new_view
        self._outbox.append(Store(new_view))
        self.view = view
        self.changing_view = False
        self.timer_deadline = None
        self.forwarded.clear()
        for old in [v for v in self.view_changes if v <= view]:
            del self.view_changes[old]
        self._adopt_checkpoint(plan)
        self.slots = {}
        self.next_seq = max([pp.seq for pp in preprepares] + [self.low_watermark])
        logger.warning(
            "node=%d view=%d phase=new-view primary=%d reissued=%d",
            self.id, view, self.primary(), len(preprepares),
        )
        for pp in preprepares:
            if self.in_window(pp.seq):
                self._accept_preprepare(pp)
        replay = [m for m in self.future if m.view == view]
        self.future = deque((m for m in self.future if m.view > view), maxlen=self.settings.max_buffered)
        for message in replay:
            self.receive(message)
        self._hand_over_waiting(preprepares)

    def _adopt_checkpoint(self, plan: NewViewPlan) -> None:
        """Move up to the new view's stable checkpoint when our own state matches it."""
        if plan.stable_seq <= self.low_watermark or self.own_checkpoints.get(plan.stable_seq) is None:
            return
        for checkpoint in plan.checkpoint_proof:
            self.checkpoints.setdefault(plan.stable_seq, {}).setdefault(checkpoint.sender, checkpoint)
        self._maybe_stable(plan.stable_seq)

    def _hand_over_waiting(self, preprepares: tuple[PrePrepare, ...]) -> None:
        """Requests that clients sent us and that did not execute go to the new primary."""
        reissued = {request.key for pp in preprepares for request in pp.batch}
        open_requests = [r for key, r in self.waiting.items() if key not in reissued and key not in self.executed]
        if self.is_primary:
            for request in open_requests:
                if request.key not in self.pending_keys:
                    self.pending.append(request)
                    self.pending_keys.add(request.key)
            self._issue_preprepares()
        else:
            for request in open_requests:
                self.forwarded.add(request.key)
                self._outbox.append(SendTo(self.primary(), request))
            if self.waiting:
                self._start_timer()

    # --- persistence (crash recovery) -----------------------------------

    def durable_state(self) -> dict:
        """What, besides the stored messages and the ledger, a restart needs (JSON-safe)."""
        return {
            "view": self.view,
            "changing_view": self.changing_view,
            "view_changes_in_a_row": self.view_changes_in_a_row,
            "low_watermark": self.low_watermark,
            "last_executed": self.last_executed,
            "next_seq": self.next_seq,
            "state_digest": self.state_digest,
            "stable_proof": [encode(checkpoint) for checkpoint in self.stable_proof],
            "client_floor": self.client_floor,
            "client_latest": self.client_latest,
        }

    @classmethod
    def restore(
        cls,
        settings: ReplicaSettings,
        auth: Authenticator,
        state: dict,
        messages: list[Message],
        executed: dict[tuple[str, int], Reply | None],
        now: float = 0.0,
    ) -> "Replica":
        """Rebuild a replica from what its driver persisted before a crash.

        `messages` are the protocol messages it stored (its own and those it
        accepted); they were verified before they were stored. Nothing is sent
        while restoring: the replica resumes in its view (or view change) and
        asks its peers for anything it missed.
        """
        replica = cls(settings, auth)
        replica.now = replica.last_progress_at = now
        for name in ("view", "changing_view", "view_changes_in_a_row", "low_watermark", "last_executed",
                     "next_seq", "state_digest", "client_floor", "client_latest"):
            setattr(replica, name, state[name])
        replica.stable_proof = tuple(decode(wire) for wire in state["stable_proof"])
        replica.executed = dict(executed)
        by_view: dict[tuple[int, int], Slot] = {}
        for message in messages:
            if isinstance(message, NewView):
                if replica.last_new_view is None or replica.last_new_view.view < message.view:
                    replica.last_new_view = message
            else:
                replica._restore_message(message, by_view)
        for (view, seq), slot in sorted(by_view.items()):
            replica._restore_progress(seq, slot)
            # Only the current view's slots take part in agreement; older ones
            # live on as prepared certificates for the next view change.
            if view == replica.view and not replica.changing_view:
                replica.slots[seq] = slot
        if replica.changing_view:
            # Peers forgot nothing, but the view changes we had collected are
            # gone: say ours again and wait for 2f+1 before timing anything.
            replica._send_view_change()
        # Peers may have moved on while we were down: ask them once at start.
        replica.highest_seen = replica.last_executed + 1
        replica.last_progress_at = now - settings.fetch_interval_s
        replica._execute_ready()
        replica._check_invariants()
        return replica

    def _restore_message(self, message: Message, by_view: dict[tuple[int, int], Slot]) -> None:
        if isinstance(message, Checkpoint):
            if message.seq >= self.low_watermark:
                self.checkpoints.setdefault(message.seq, {})[message.sender] = message
                if message.sender == self.id:
                    self.own_checkpoints[message.seq] = message.state_digest
            return
        if not self.in_window(message.seq):
            return
        slot = by_view.setdefault((message.view, message.seq), Slot())
        if isinstance(message, PrePrepare):
            slot.preprepare = message
        elif isinstance(message, Prepare):
            slot.prepares.setdefault(message.sender, message)
        else:
            slot.commits.setdefault(message.sender, message)

    def _restore_progress(self, seq: int, slot: Slot) -> None:
        """Recompute prepared and committed-local from the restored votes, sending nothing."""
        if slot.preprepare is None:
            return
        wanted = slot.preprepare.digest
        if matching(_digests(slot.prepares), wanted) >= prepare_quorum(self.f) or self.id in slot.commits:
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == wanted)
            if len(proof) >= prepare_quorum(self.f):
                self.prepared_certs[seq] = PreparedCertificate(slot.preprepare, proof)
        slot.committed = slot.prepared and matching(_digests(slot.commits), wanted) >= commit_quorum(self.f)

    # --- invariants ----------------------------------------------------

    def _check_invariants(self) -> None:
        assert self.low_watermark <= self.last_executed <= self.high_watermark
        assert all(self.in_window(seq) for seq in self.slots)
        for slot in self.slots.values():
            if slot.committed:
                assert slot.prepared and slot.preprepare is not None


def _state_digests(votes: dict[int, Checkpoint]) -> dict[int, str]:
    return {sender: vote.state_digest for sender, vote in votes.items()}


def _describe(message: Message) -> str:
    parts = [message.TYPE]
    for name in ("view", "seq", "sender", "client", "timestamp"):
        if hasattr(message, name):
            parts.append(f"{name}={getattr(message, name)}")
    return " ".join(parts)
