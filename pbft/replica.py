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
from types import MappingProxyType
from typing import Mapping

from pbft.attestation import Signed
from pbft.authenticator import Authenticator
from pbft.catchup import CatchUp
from pbft.checkpoints import Checkpoints
from pbft.clients import ClientTable
from pbft.effects import (
    Broadcast,
    BuildLearnt,
    Effect,
    Execute,
    KeepStableProof,
    RecordVerdict,
    ResendReply,
    SendReply,
    SendTo,
    ServeVotes,
    Store,
)
from pbft.encoding import digest
from pbft.message_log import MessageLog
from pbft.messages import (
    MAX_VOTE_FETCH,
    MAX_VOTES,
    Checkpoint,
    Commit,
    Fetch,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Relay,
    Reply,
    Request,
    Result,
    ResultVote,
    StateTransfer,
    Status,
    ViewChange,
    VoteFetch,
    batch_digest,
    signed,
)
from pbft.provenance import Provenance
from pbft.quorum import commit_quorum, matching, prepare_quorum
from pbft.replica_persistence import Persistence
from pbft.replica_transfer import LedgerCatchUp
from pbft.replica_viewchange import ViewChanges
from pbft.slot import (
    GENESIS_STATE,
    ReplicaSettings,
    Slot,
    vote_digests,
)
from pbft.viewchange import LatestViewChanges, Membership
from pbft.votes import ResultVotes

logger = logging.getLogger(__name__)
NO_FILES: Mapping[str, str] = MappingProxyType({})


class Replica(ViewChanges, LedgerCatchUp, Persistence):
    """One PBFT node: a router over parts that each keep their own state and can be
    read alone (as etcd/raft splits raftLog, tracker and quorum): the message log
    (`pbft.message_log`), checkpoints (`pbft.checkpoints`), view changes
    (`pbft.viewchange`), the client table (`pbft.clients`), catch-up evidence
    (`pbft.catchup`) and result votes (`pbft.votes`). The rules that move
    between them live here and in the mixins for view changes, state transfer
    and persistence."""

    def __init__(self, settings: ReplicaSettings, auth: Authenticator) -> None:
        self.settings = settings
        self.auth = auth
        self.id = settings.node_id
        self.view = 0
        self.last_executed = 0
        self.next_seq = 0  # highest sequence number this replica assigned as primary
        self.state_digest = GENESIS_STATE  # hash chain over executed batches
        self.log = MessageLog()
        self.clients = ClientTable(
            int(settings.request_expiry_s * 1_000_000), settings.max_requests_per_client, settings.max_open_per_client
        )
        self.checkpoints = Checkpoints(settings.f, settings.checkpoint_interval, settings.log_window)
        # Messages of views not entered yet, and RESULTs of builds not ordered yet: kept
        # per sender, so that one faulty node's flood cannot push out anybody else's.
        self.future: dict[int, deque[Message]] = {}
        self.early_votes: dict[int, deque[ResultVote]] = {}
        # View change state (§4.4): while changing, only checkpoints and view-change traffic count.
        self.changing_view = False
        # Each node's latest VIEW-CHANGE, ours included: what a new view needs, and bounded by n.
        self.view_changes = LatestViewChanges()
        self.new_view_served_at: dict[int, float] = {}
        self.result_votes = ResultVotes(settings.n, settings.f, settings.vote_retry_s)
        self.votes_served_at: dict[int, float] = {}
        self.view_changes_in_a_row = 0
        self.now = 0.0
        self.timer_deadline: float | None = None
        self.timer_request: tuple[str, int] | None = None  # the waiting request the timer runs for (§4.4)
        self.view_change_resend_at = 0.0
        # State transfer: what peers vouch for beyond our state, and when to ask them.
        self.catch_up = CatchUp(settings.f, settings.fetch_interval_s)
        # The stable checkpoint the current view started from (min-s, §4.4): a primary
        # that has not executed that far yet catches up before it issues anything.
        self.view_stable_seq = 0
        self.last_new_view: NewView | None = None  # what started our view, for peers left behind
        self.fetch_served: dict[int, tuple[int, float]] = {}  # sender -> (seq the last answer reached, when)
        self.members = Membership(settings.n, settings.f, settings.log_window)
        # RESULTs to send at the next tick in one RELAY: our own, and as primary of a relaying
        # network every kept one (see _flush_relay_queue).
        self.relay_queue: list[ResultVote] = []
        # Requests learnt by state transfer and not built here (seq, request), and those of
        # them whose verdict we have not seen decided yet, in ledger order: each is built
        # after all if its verdict is still open once we asked the peers for votes twice,
        # or when its client sends it again (it lacks matching replies). Both forget with
        # the client table.
        self.learnt_unbuilt: dict[tuple[str, int], tuple[int, Request]] = {}
        self.learnt_open: dict[tuple[str, int], tuple[int, Request]] = {}
        self._relaying_in = False  # taking in the votes of a relay, not votes sent straight to us
        self._outbox: list[Effect] = []
        self._replay_due = False  # a view started or the window moved: buffered messages may be ready

    # --- derived values -----------------------------------------------

    @property
    def f(self) -> int:
        return self.settings.f

    @property
    def low_watermark(self) -> int:
        """h: the sequence number of the last stable checkpoint."""
        return self.checkpoints.stable_seq

    @property
    def stable_proof(self) -> tuple[Checkpoint, ...]:
        return self.checkpoints.stable_proof

    @property
    def slots(self) -> dict[int, Slot]:
        return self.log.slots

    @property
    def high_watermark(self) -> int:
        return self.low_watermark + self.settings.log_window

    def primary(self, view: int | None = None) -> int:
        return (self.view if view is None else view) % self.settings.n

    @property
    def is_primary(self) -> bool:
        return self.primary() == self.id

    def not_entered(self, view: int) -> bool:
        """`view` is one this replica has not entered: a later one, or the one it is changing to."""
        return view > self.view or (view == self.view and self.changing_view)

    def would_move(self, view: int) -> bool:
        """Changing to `view` would move this replica on: a later view, or a change away from this one."""
        return view > self.view or (view == self.view and not self.changing_view)

    @property
    def per_sender_buffer(self) -> int:
        return max(16, self.settings.max_buffered // self.settings.n)

    def _buffer(self, buffers: dict[int, deque], sender: int, message: Message) -> None:
        buffer = buffers.get(sender)
        if buffer is None:
            buffer = buffers[sender] = deque(maxlen=self.per_sender_buffer)
        buffer.append(message)

    def _served_recently(self, served_at: dict[int, float], sender: int, interval_s: float) -> bool:
        """Whether `sender` was answered less than `interval_s` ago; if not, it is answered now."""
        if self.now < served_at.get(sender, float("-inf")) + interval_s:
            return True
        served_at[sender] = self.now
        return False

    def buffered(self, buffers: dict[int, deque]) -> list[Message]:
        """Everything in per-sender buffers such as `future` or `early_votes`, sender by sender."""
        return [message for sender in sorted(buffers) for message in buffers[sender]]

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
        reason = self._handle(message)
        self._replay_ready()
        self.catch_up.update(self.now, self.last_executed, self.view)
        self._check_invariants()
        return reason

    def _handle(self, message: Message) -> str | None:
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
            VoteFetch: self._on_vote_fetch,
            Status: self._on_status,
            Relay: self._on_relay,
        }.get(type(message))
        if handler is None:
            reason = f"ignore_{message.TYPE}_unexpected"
        else:
            reason = handler(message)
        if reason is not None:
            logger.warning("node=%d view=%d dropped %s: %s", self.id, self.view, _describe(message), reason)
        return reason

    def tick(self, now: float) -> None:
        """Advance the clock; a backup whose timer expired moves to the next view (§4.4)."""
        self.now = max(self.now, now)
        if self.timer_deadline is not None and self.now >= self.timer_deadline:
            self._timer_expired()
        elif self.changing_view and self.now >= self.view_change_resend_at:
            self._send_view_change()
        self._replay_ready()
        self._flush_relay_queue()
        self._fall_back_to_all_to_all()
        self._maybe_fetch()
        self._ask_for_votes()
        self._build_learnt_still_open()
        self._maybe_announce()
        self._check_invariants()

    def execution_finished(
        self, request: Request, result: Result, seq: int, artifact_files: Mapping[str, str] = NO_FILES
    ) -> None:
        """A build started by an Execute effect at `seq` has an outcome: reply to its
        client, and tell the other nodes, so that every ledger can certify it.

        `artifact_files` are the build's artifacts, path to "sha256:<hex>", as this
        node's executor found them; only their manifest's digest is in `result`."""
        executed = self.clients.executed
        if request.key not in executed:
            assert self.clients.expired(request.key), "result for a request that was never executed"
            return
        if executed[request.key] is not None:
            return
        statement_sig, link_sig = self._sign_attestation(request, result)
        provenance_sig = self._sign_provenance(request, result, artifact_files)
        reply = signed(
            Reply(self.view, request.timestamp, request.client, self.id, result, "", statement_sig, link_sig,
                  provenance_sig),
            self.auth.sign,
        )
        executed[request.key] = True  # the reply itself is kept by the store (SendReply)
        self._outbox.append(SendReply(reply))
        vote = signed(
            ResultVote(seq, request.client, request.timestamp, result, self.id, "", statement_sig, link_sig,
                       provenance_sig),
            self.auth.sign,
        )
        self._count_vote(vote)
        if not (self.relaying and self.is_primary):  # a relaying primary queues it with the votes it kept
            self._queue_for_relay(vote)
        self.result_votes.expect(request.key, self.now)

    def _sign_attestation(self, request: Request, result: Result) -> tuple[str, str]:
        """This node's DSSE signature of the build's in-toto statement and its signature of
        its in-toto link (`pbft.attestation`); none for a result that names no commit.
        They travel in the reply and the vote, so the client's f+1 replies and every
        ledger's votes hold an attestation that anyone with the public keys can check."""
        attestation = Signed(request.operation, result)
        if not attestation.exists:
            return "", ""
        return self.auth.sign_bytes(attestation.pae()), self.auth.sign_bytes(attestation.link_bytes())

    def _sign_provenance(self, request: Request, result: Result, artifact_files: Mapping[str, str]) -> str:
        """This node's DSSE signature of the SLSA provenance of the build's artifacts
        (`pbft.provenance`); none for a build without artifacts, for files whose manifest
        is not the result's, or in a replica that was not told the network's builder id."""
        if not self.settings.builder_id or result.artifacts is None:
            return ""
        provenance = Provenance(
            request.operation, result, artifact_files,
            client=request.client, timestamp=request.timestamp, builder_id=self.settings.builder_id,
        )
        if not provenance.exists:
            logger.warning(
                "node=%d build=%s-%d no provenance signed: its %d artifact files are not the manifest %s",
                self.id, request.client, request.timestamp, len(artifact_files), result.artifacts[:19],
            )
            return ""
        return self.auth.sign_bytes(provenance.pae())

    # --- requests (§4.1, §4.2) -----------------------------------------

    def _on_request(self, request: Request) -> str | None:
        if not self.auth.verify_client(request.client, request.payload(), request.sig):
            return "ignore_request_bad_signature"
        clients = self.clients
        if request.key not in clients.executed and clients.expired(request.key):
            return "ignore_request_expired"
        if request.key in clients.executed:
            if clients.executed[request.key] is None:
                if request.key in self.learnt_unbuilt:
                    # The client still waits for matching replies, and one of the nodes that
                    # built it may have lied in its reply (or not built it): build it after all.
                    self._build_learnt(request.key)
                    return None
                return "ignore_request_no_reply_yet"
            # A retransmission: the client lost our reply, so send it again, from the store.
            self._outbox.append(ResendReply(request.client, request.timestamp))
            return None
        if not clients.wait(request):
            return "ignore_request_client_has_too_many_open"
        if self.changing_view:
            return None  # handed to the new primary once the view is in place
        if not self.is_primary:
            if self.timer_deadline is None:
                self._start_timer()
            if request.key in clients.forwarded:
                return "ignore_request_already_forwarded"
            clients.forwarded.add(request.key)
            self._outbox.append(SendTo(self.primary(), request))
            return None
        if self._is_ordered(request) or not clients.queue(request):
            return "ignore_request_already_ordered"
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
            self.clients.pending
            and not self.changing_view
            and self.last_executed >= self.view_stable_seq
            and self.next_seq - self.last_executed < self.settings.pipeline_depth
            and self.next_seq + 1 <= self.high_watermark
        ):
            batch = self.clients.next_batch(self.settings.batch_max)
            self.next_seq += 1
            preprepare = signed(
                PrePrepare(self.view, self.next_seq, batch_digest(batch), self.id, batch),
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
        reason = self._node_signature_problem(message) or self._check_view_and_window("preprepare", message)
        if reason is not None or self._buffer_if_future(message):
            return reason
        if message.digest != batch_digest(message.batch):
            return "ignore_preprepare_wrong_digest"
        for request in message.batch:
            if not self.auth.verify_client(request.client, request.payload(), request.sig):
                return "ignore_preprepare_bad_request_signature"
        slot = self.log.slot(message.seq)
        if slot.preprepare is not None:
            if slot.preprepare.digest != message.digest:
                return "ignore_preprepare_conflicting_digest"
            return "ignore_preprepare_duplicate"
        self._accept_preprepare(message)
        return None

    def _accept_preprepare(self, message: PrePrepare) -> None:
        slot = self.log.slot(message.seq)
        slot.preprepare = message
        self._outbox.append(Store(message))
        if not self.is_primary:
            prepare = signed(Prepare(self.view, message.seq, message.digest, self.id), self.auth.sign)
            slot.prepares[self.id] = prepare
            self._outbox.append(Store(prepare))
            logger.info(
                "node=%d view=%d seq=%d phase=prepare digest=%s", self.id, self.view, message.seq, message.digest[:8]
            )
            self._send_vote(prepare)
        self._advance(message.seq)

    def _on_prepare(self, message: Prepare) -> str | None:
        if self._moves_nothing(message):
            return None
        reason = self._check_vote("prepare", message)
        if reason is None and message.sender == self.primary(message.view):
            reason = "ignore_prepare_from_primary"
        if reason is not None or self._buffer_if_future(message):
            return reason
        return self._record_vote(self.log.slot(message.seq).prepares, "prepare", message)

    def _on_commit(self, message: Commit) -> str | None:
        if self._moves_nothing(message):
            return None
        reason = self._check_vote("commit", message)
        if reason is not None or self._buffer_if_future(message):
            return reason
        return self._record_vote(self.log.slot(message.seq).commits, "commit", message)

    def _moves_nothing(self, vote: Prepare | Commit) -> bool:
        """Whether `vote` is of our view for a slot already past its phase: a PREPARE once
        the slot prepared, a COMMIT once it committed-local. Such a vote can change nothing
        here (the votes that moved the slot are kept), so it is neither checked nor kept:
        at n = 16 that spares each node a few signature checks per request. A backup of a
        relaying network still takes a vote sent straight to it, which says that its
        sender gave up waiting for the relay (`_joined_all_to_all`)."""
        if vote.view != self.view or self.changing_view:
            return False
        if self.relaying and not self._relaying_in and not self.is_primary:
            return False
        slot = self.slots.get(vote.seq)
        if slot is None or slot.preprepare is None:
            return False
        return slot.committed if isinstance(vote, Commit) else slot.prepared

    def _check_vote(self, kind: str, message: Prepare | Commit) -> str | None:
        return self._node_signature_problem(message) or self._check_view_and_window(kind, message)

    def _node_signature_problem(self, message: Message) -> str | None:
        """Why `message` is not signed by the configured node it names as sender, or None."""
        problem = self.members.signature_problem(message, self.auth)
        return None if problem is None else f"ignore_{message.TYPE}_{problem}"

    def _check_view_and_window(self, kind: str, message: PrePrepare | Prepare | Commit) -> str | None:
        if message.view < self.view:
            return f"ignore_{kind}_old_view"
        # Signed and of our view or a later one: a claim of where its sender is. Claims
        # beyond our window count too (a node far behind sees nothing else), since
        # CatchUp keeps one per sender and believes a value only when f+1 senders reach it.
        self.catch_up.claim_view(message.sender, message.view)
        if isinstance(message, Commit):
            self.catch_up.claim_seq(message.sender, message.seq, executed=False)
        # Up to one window beyond H is a checkpoint we have not made stable yet, as a
        # slower node often has not: keep those for later rather than learn them by
        # state transfer and never build them.
        if not self.low_watermark < message.seq <= self.high_watermark + self.settings.log_window:
            return f"ignore_{kind}_out_of_window"
        return None

    def _buffer_if_future(self, message: PrePrepare | Prepare | Commit) -> bool:
        """Keep a message of a view this replica has not entered yet, or just above its
        window, in a bounded per-sender buffer; `_replay_ready` hands it back in time."""
        if self.not_entered(message.view) or message.seq > self.high_watermark:
            self._buffer(self.future, message.sender, message)
            return True
        return False

    def _replay_ready(self) -> None:
        """At the end of a step in which a view started or the window moved, take back the
        buffered messages whose view and window have come, and drop those now stale.
        (Doing it within the step would execute batches in the middle of another change.)"""
        if not self._replay_due:
            return
        self._replay_due = False
        ready = []
        for sender, buffer in self.future.items():
            kept = deque(maxlen=buffer.maxlen)
            for message in buffer:
                if message.view < self.view or message.seq <= self.low_watermark:
                    continue
                (kept if self.not_entered(message.view) or message.seq > self.high_watermark else ready).append(message)
            self.future[sender] = kept
        for message in ready:
            self._handle(message)
        self._replay_ready()  # what they did may have moved the window again

    def _record_vote(self, votes: dict, kind: str, message: Prepare | Commit) -> str | None:
        if message.sender in votes:
            if votes[message.sender].digest != message.digest:
                return f"ignore_{kind}_sender_changed_digest"
            # Held already (a primary may relay it to us first, and withhold the slot's
            # commits from its sender alone): its sender still waits for us in this slot.
            self._joined_all_to_all(message)
            return None
        votes[message.sender] = message
        self._outbox.append(Store(message))
        self._joined_all_to_all(message)
        self._advance(message.seq)
        return None

    def _advance(self, seq: int) -> None:
        """Move one sequence number through prepared and committed-local, then execute."""
        slot = self.slots[seq]
        preprepare = slot.preprepare
        if preprepare is None:
            return
        if not slot.prepared and matching(vote_digests(slot.prepares), preprepare.digest) >= prepare_quorum(self.f):
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == preprepare.digest)
            self.log.prepared_certs[seq] = PreparedCertificate(preprepare, proof)
            commit = signed(Commit(self.view, seq, preprepare.digest, self.id), self.auth.sign)
            slot.commits[self.id] = commit
            self._outbox.append(Store(commit))
            logger.info(
                "node=%d view=%d seq=%d phase=commit digest=%s", self.id, self.view, seq, preprepare.digest[:8]
            )
            if self.relaying and self.is_primary:
                # The quorum that prepared us prepares every backup. It leaves before this step
                # is on disk (`pbft.effects.leaves_unsaved`); our commit needs the disk first,
                # and is no backup's to wait for: it rides in the commits' relay.
                self._outbox.append(Broadcast(Relay(proof)))
            else:
                self._send_vote(commit)
        committed_votes = matching(vote_digests(slot.commits), preprepare.digest)
        if slot.prepared and not slot.committed and committed_votes >= commit_quorum(self.f):
            slot.committed = True
            if self.relaying and self.is_primary:
                # The prepares again, for a backup that lost their relay: held ones cost nothing.
                certificate = self.log.prepared_certs.get(seq)
                prepared = certificate.prepares if certificate is not None else ()
                quorum = tuple(vote for vote in slot.commits.values() if vote.digest == preprepare.digest)
                self._outbox.append(Broadcast(Relay((*prepared, *quorum))))
            logger.info(
                "node=%d view=%d seq=%d phase=committed digest=%s", self.id, self.view, seq, preprepare.digest[:8]
            )
            self._execute_ready()

    # --- relayed votes ----------------------------------------------------

    @property
    def relaying(self) -> bool:
        return self.settings.relay_votes

    def _send_vote(self, vote: Prepare | Commit) -> None:
        """Broadcast our vote, or in a relaying network hand it to the primary, which passes a quorum on."""
        slot = self.slots[vote.seq]
        if self.relaying and not self.is_primary and not slot.all_to_all:
            slot.voted_at = self.now
            self._outbox.append(SendTo(self.primary(), vote))
        else:
            self._outbox.append(Broadcast(vote))

    def _on_relay(self, relay: Relay) -> str | None:
        """Take in each relayed vote as if it had come alone. Votes we hold already (our own
        among them) are skipped before their signature is checked: they tell us nothing."""
        first_problem = None
        self._relaying_in = True
        try:
            for vote in relay.votes:
                if vote.sender == self.id or self._holds(vote):
                    continue
                problem = self._handle(vote)
                first_problem = first_problem or problem
        finally:
            self._relaying_in = False
        return first_problem

    def _joined_all_to_all(self, vote: Prepare | Commit) -> None:
        """A backup's vote that came straight from it: it gave up waiting for the primary's
        relay of this slot, so we vote to everyone in it too, or it would wait in vain."""
        if self.relaying and not self._relaying_in and not self.is_primary and vote.sender != self.primary(vote.view):
            slot = self.slots.get(vote.seq)
            if slot is not None and not slot.all_to_all and vote.view == self.view:
                self._go_all_to_all(slot)

    def _fall_back_to_all_to_all(self) -> None:
        """Slots whose relay is overdue go back to all-to-all voting (see relay_fallback_s)."""
        if not self.relaying or self.is_primary or self.changing_view:
            return
        for slot in self.slots.values():
            if (
                not slot.committed and not slot.all_to_all and slot.voted_at is not None
                and self.now - slot.voted_at >= self.settings.relay_fallback_s
            ):
                self._go_all_to_all(slot)

    def _go_all_to_all(self, slot: Slot) -> None:
        slot.all_to_all = True
        for vote in (slot.prepares.get(self.id), slot.commits.get(self.id)):
            if vote is not None and vote.view == self.view:
                self._outbox.append(Broadcast(vote))

    def _holds(self, vote: Prepare | Commit | ResultVote) -> bool:
        if isinstance(vote, ResultVote):
            return vote.key in self.result_votes and self.result_votes.has_vote(vote.key, vote.sender)
        slot = self.slots.get(vote.seq)
        if slot is None:
            return False
        held = (slot.prepares if isinstance(vote, Prepare) else slot.commits).get(vote.sender)
        return held == vote

    def _queue_for_relay(self, vote: ResultVote) -> None:
        self.relay_queue.append(vote)
        if len(self.relay_queue) >= MAX_VOTES:
            self._flush_relay_queue()

    def _flush_relay_queue(self) -> None:
        """Send the RESULTs queued since the last tick, as one frame: verdicts in node ledgers
        are not on any client's path, so they can wait for company. A peer then takes in one
        frame per tick, not one per build and node. A backup of a relaying network sends its
        own to the primary, which passes them on with the others at its next tick; every
        other node sends to all."""
        if self.relay_queue:
            relay, self.relay_queue = Relay(tuple(self.relay_queue)), []
            if self.relaying and not self.is_primary:
                self._outbox.append(SendTo(self.primary(), relay))
            else:
                self._outbox.append(Broadcast(relay))

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
        fresh = tuple(request for request in batch if self.clients.execute(request))
        for request in fresh:
            self.result_votes.ordered(request.key, seq)
            if not build:
                self.result_votes.expect(request.key, self.now, at_once=True)
                self.learnt_unbuilt[request.key] = self.learnt_open[request.key] = (seq, request)
        self._release_early_votes(batch)
        self.last_executed = seq
        self.catch_up.progressed(self.now)
        self.state_digest = digest([self.state_digest, seq, batch_id])
        logger.info(
            "node=%d view=%d seq=%d phase=execute digest=%s builds=%d",
            self.id, self.view, seq, batch_id[:8], len(fresh) if build else 0,
        )
        built, learnt = (fresh, ()) if build else ((), fresh)
        self._outbox.append(Execute(self.view, seq, batch_id, batch, built, self.state_digest, learnt))
        self._restart_timer_after_progress()
        if self.checkpoints.due(seq):
            self._forget_expired_requests()
            self._take_checkpoint(seq)

    def _forget_expired_requests(self) -> None:
        """Done at checkpoint boundaries, as a function of the ledger alone, so every
        honest replica forgets the same requests (and their votes) at the same point.
        A build forgotten before its verdict reached us stays open in no table: the
        ledger says so ("expired") rather than "pending" for ever."""
        forgotten = self.clients.forget_expired()
        for key in forgotten:
            self.learnt_unbuilt.pop(key, None)
            self.learnt_open.pop(key, None)
        for (client, timestamp), seq in self.result_votes.forget(forgotten):
            logger.warning("node=%d view=%d seq=%d build=%s-%d verdict=expired", self.id, self.view, seq, client, timestamp)
            self._outbox.append(RecordVerdict(seq, client, timestamp, "expired", None))

    # --- certified results ------------------------------------------------

    def _on_result_vote(self, message: ResultVote) -> str | None:
        """Count another node's RESULT towards the build's verdict. A vote that agrees
        with a certified verdict changes nothing: it is neither checked nor kept (nor, by
        a relaying primary, passed on); one against it is, to show the dissent."""
        if self.result_votes.confirms(message):
            return None
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        if message.key in self.result_votes:
            return None if self._count_vote(message) else "ignore_result_not_first_vote"
        if self.clients.expired(message.key):
            return "ignore_result_expired"
        # A faster node finished a build we have not ordered yet: keep it, bounded.
        self._buffer(self.early_votes, message.sender, message)
        return None

    def _count_vote(self, vote: ResultVote) -> bool:
        kept, decided = self.result_votes.add(vote)
        if kept:
            self._outbox.append(Store(vote))
            if self.relaying and self.is_primary:
                self._queue_for_relay(vote)
        if decided is not None:
            state, result = decided
            seq = self.result_votes.seq[vote.key]
            logger.info("node=%d view=%d seq=%d build=%s verdict=%s", self.id, self.view, seq, vote.key, state)
            self._outbox.append(RecordVerdict(seq, vote.client, vote.timestamp, state, result))
        return kept

    def _release_early_votes(self, batch: tuple[Request, ...]) -> None:
        keys = {request.key for request in batch if request.key in self.result_votes}
        for sender, votes in self.early_votes.items():
            if any(vote.key in keys for vote in votes):
                for vote in votes:
                    if vote.key in keys:
                        self._count_vote(vote)
                self.early_votes[sender] = deque((v for v in votes if v.key not in keys), maxlen=votes.maxlen)

    def _ask_for_votes(self) -> None:
        keys = self.result_votes.due(self.now, MAX_VOTE_FETCH)
        if keys:
            # Every peer: any one of them may be the only one that heard the vote we lack.
            logger.info("node=%d view=%d phase=vote-fetch builds=%d", self.id, self.view, len(keys))
            self._outbox.append(Broadcast(signed(VoteFetch(tuple(keys), self.id), self.auth.sign)))

    def _build_learnt_still_open(self) -> None:
        """Build, oldest first, the learnt requests whose verdict the peers' votes did not
        decide (2f+1 matching) by the second time we asked: the nodes that built them may
        be too few without us. Asking first spares a node that caught up on hours of
        history from building what was certified long ago."""
        while self.learnt_open:
            key = next(iter(self.learnt_open))
            still_open = self.result_votes.open_after_asking(key, times=2)
            if still_open is None:
                return  # not asked twice yet: the oldest is built first, once it has been
            del self.learnt_open[key]
            if still_open:
                self._build_learnt(key)

    def _build_learnt(self, key: tuple[str, int]) -> None:
        seq, request = self.learnt_unbuilt.pop(key)
        self.learnt_open.pop(key, None)
        logger.info("node=%d view=%d seq=%d build=%s-%d learnt by state transfer: building it",
                    self.id, self.view, seq, key[0], key[1])
        self._outbox.append(BuildLearnt(seq, request))

    def _on_vote_fetch(self, message: VoteFetch) -> str | None:
        """Send a peer every signed vote we hold for the builds it asks about (each is
        checkable on its own), at most once per quarter retry period per peer (an
        honest one asks at most every half period)."""
        reason = self._node_signature_problem(message)
        if reason is not None or message.sender == self.id:
            return reason or "ignore_vote-fetch_from_self"
        if self._served_recently(self.votes_served_at, message.sender, self.settings.vote_retry_s / 4):
            return "ignore_vote-fetch_too_soon"
        keys = tuple(key for key in message.keys if key in self.result_votes)
        if keys:
            self._outbox.append(ServeVotes(message.sender, keys))
        return None

    # --- checkpoints and garbage collection (§4.3) ---------------------

    def _take_checkpoint(self, seq: int) -> None:
        self.checkpoints.computed(seq, self.state_digest)
        checkpoint = signed(Checkpoint(seq, self.state_digest, self.id), self.auth.sign)
        self.checkpoints.add(checkpoint)
        self._outbox.append(Store(checkpoint))
        logger.info("node=%d view=%d seq=%d phase=checkpoint digest=%s", self.id, self.view, seq, self.state_digest[:8])
        self._outbox.append(Broadcast(checkpoint))
        self._maybe_stable(seq)

    def _on_checkpoint(self, message: Checkpoint) -> str | None:
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        if self.checkpoints.due(message.seq):
            # A signed checkpoint says its sender executed this far; f+1 of them must agree
            # before that counts, so it is taken even beyond the range kept below.
            self.catch_up.claim_seq(message.sender, message.seq, executed=True)
        problem = self.checkpoints.add(message)
        if problem is not None:
            return f"ignore_checkpoint_{problem}"
        self._outbox.append(Store(message))
        self._maybe_stable(message.seq)
        return None

    def _maybe_stable(self, seq: int) -> None:
        """A checkpoint is stable once 2f+1 nodes, this one included, vouch for our digest."""
        if not self.checkpoints.try_stable(seq):
            return
        logger.info("node=%d view=%d seq=%d phase=stable digest=%s", self.id, self.view, seq, self.checkpoints.own[seq][:8])
        self.log.collect_garbage(seq)
        self._outbox.append(KeepStableProof(seq, self.stable_proof))
        self._replay_due = True
        if self.is_primary:
            self._issue_preprepares()

    # --- invariants ----------------------------------------------------

    def _check_invariants(self) -> None:
        low, high = self.low_watermark, self.high_watermark
        assert low <= self.last_executed <= high
        slots = self.slots
        # Run after every step over up to log_window slots: bounds from min/max, not a call per slot.
        assert not slots or (low < min(slots) and max(slots) <= high)
        for slot in slots.values():
            if slot.committed:
                assert slot.prepared and slot.preprepare is not None


def _describe(message: Message) -> str:
    parts = [message.TYPE]
    for name in ("view", "seq", "sender", "client", "timestamp"):
        if hasattr(message, name):
            parts.append(f"{name}={getattr(message, name)}")
    return " ".join(parts)