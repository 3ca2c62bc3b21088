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
from typing import Callable, Mapping

from pbft.attestation import Signed
from pbft.authenticator import Authenticator
from pbft.cancels import Cancels, cancel_result, cancelled_result, target_of
from pbft.deliveries import Deliveries, duplicate_result
from pbft.checkpoints import Checkpoints
from pbft.clients import ClientTable
from pbft.effects import (
    Broadcast,
    BuildLearnt,
    Effect,
    Execute,
    KeepStableProof,
    KeepVoteHorizon,
    NetworkChanged,
    RecordVerdict,
    ResendReply,
    SendReply,
    SendTo,
    ServeFetch,
    ServeVotes,
    StopBuild,
    Store,
)
from pbft.durable import DurableState
from pbft.storage import Loaded
from pbft.encoding import digest
from pbft.epochs import Epochs
from pbft.horizon import Horizon, VoteHorizon
from pbft.ledger import LedgerReader
from pbft.message_log import MessageLog
from pbft.networkchange import NetworkChange, document_digest
from pbft.networks import NetworkState, applied_reason, membership_changes
from pbft.build import Result
from pbft.builders import Standby, picked
from pbft.messages import (
    Checkpoint, Commit, Fetch, MAX_VOTE_FETCH, Message, NewView, PrePrepare, Prepare, PreparedCertificate, Relay, Reply, Request, ResultVote, StateTransfer, Status, ViewChange, VoteFetch, batch_digest, signed,
)
from pbft.provenance import Provenance
from pbft.relay import VoteRelay
from pbft.statetransfer import StateSync
from pbft.views import Mode, Views
from pbft.quorum import commit_quorum, matching, prepare_quorum
from pbft.slot import (
    GENESIS_STATE,
    ReplicaSettings,
    Slot,
    vote_digests,
)
from pbft.membership import Membership
from pbft.viewchange import (
    NewViewPlan,
    plan_new_view,
)
from pbft.votes import ResultVotes
from pbft.ci.ordered import OrderedBuild

logger = logging.getLogger(__name__)
NO_FILES: Mapping[str, str] = MappingProxyType({})


def membership(document: dict | None, settings: ReplicaSettings) -> Membership:
    """The nodes a network document names, with their keys and f; without a document, nodes
    0..n-1 of `settings`, whose keys the authenticator holds."""
    if document is None:
        return Membership.of(((node, "") for node in range(settings.n)), settings.f, settings.log_window)
    return Membership.of(((node["id"], node["public_key"]) for node in document["nodes"]), document["f"],
                         settings.log_window)


class Replica:
    """One PBFT node: a router over parts that each keep their own state and can be
    read alone (as etcd/raft splits raftLog, tracker and quorum): the message log
    (`pbft.message_log`), checkpoints (`pbft.checkpoints`), view changes
    (`pbft.views`, with the certificates of `pbft.viewchange`), the client table
    (`pbft.clients`), state transfer with its catch-up evidence (`pbft.statetransfer`),
    relayed votes (`pbft.relay`), result votes (`pbft.votes`) and cancels (`pbft.cancels`).
    The rules that move between them live here; it inherits from nothing."""

    def __init__(
        self, settings: ReplicaSettings, auth: Authenticator, network: dict | None = None,
        check_network: Callable[[dict], str | None] | None = None,
    ) -> None:
        """`network` is the network document the node starts with (shared/networkdoc.py);
        without one, the replica runs the digest `settings.network` and refuses every change.
        `check_network` says what makes a changed document one every node can run, beyond
        the core's own rules (`pbft.networks`): a pure function, the same on every node."""
        self.settings = settings
        self.auth = auth
        self.id = settings.node_id
        self.last_executed = 0
        self.next_seq = 0  # highest sequence number this replica assigned as primary
        self.state_digest = GENESIS_STATE  # hash chain over executed batches
        self.log = MessageLog()
        self.clients = ClientTable(
            int(settings.request_expiry_s * 1_000_000), settings.max_requests_per_client, settings.max_open_per_client
        )
        self.checkpoints = Checkpoints(settings.checkpoint_interval, settings.log_window)
        # The network document this node runs (changed only by the order).
        self.network = NetworkState(network, document_digest(network) if network is not None else settings.network)
        self.check_network = check_network or (lambda document: None)
        # Messages of views not entered yet, and RESULTs of builds not ordered yet: kept
        # per sender, so that one faulty node's flood cannot push out anybody else's.
        self.future: dict[int, deque[Message]] = {}
        self.early_votes: dict[int, deque[ResultVote]] = {}
        self.result_votes = ResultVotes(self._members_at, settings.vote_retry_s)
        # Builds the order gave f+1 other members to build (`pbft.builders`): ours if they disagree or fall silent.
        self.standby = Standby(settings.standby_s)
        # Builds the order cancelled: applied where each cancel executes (`pbft.cancels`).
        self.cancels = Cancels()
        # The deliveries the order took, each built once (`pbft.deliveries`).
        self.deliveries = Deliveries()
        self.votes_served_at: dict[int, float] = {}
        self.now = 0.0
        # The members of each stretch of the order (`pbft.epochs`): the current one's sign and count.
        self.epochs = Epochs(membership(self.network.document, settings))
        self.checkpoints.quorum = self.members.quorum
        # The view, its mode and timer, and the view changes on the way to the next (§4.4).
        self.views = Views(self.id, self.members, settings.view_change_timeout_s)
        self.relay = VoteRelay(settings.relay_votes, settings.relay_fallback_s)
        # State transfer (`pbft.statetransfer`): it owns what peers vouch for beyond our state
        # (catch_up), what we serve of our ledger and adopted of theirs unbuilt (transfer), and
        # which network each peer says it runs (networks); the rules here read and feed them too.
        self.sync = StateSync(settings, self.checkpoints, self.epochs, self.views, self.log, self.network)
        self.catch_up, self.transfer, self.networks = self.sync.catch_up, self.sync.transfer, self.sync.networks
        # How far our PRE-PREPAREs and PREPAREs may leave unsynced (`pbft.horizon`).
        self.horizon = VoteHorizon()
        self._outbox: list[Effect] = []
        self._replay_due = False  # a view started or the window moved: buffered messages may be ready
        self._entered_view: int | None = None  # the view this run entered by a NEW-VIEW, if any
        self._change_issued_at = 0  # as primary: the last batch issued that holds a network change
        self.sign_as_member()  # the document it starts with may name the key that replaced its own

    # --- derived values -----------------------------------------------

    @property
    def members(self) -> Membership:
        return self.epochs.members

    @property
    def epoch(self) -> int:
        """The epoch this replica works in: where the membership it runs began (`pbft.epochs`)."""
        return self.epochs.current.start

    @property
    def member(self) -> bool:
        """Whether this node is one of the current members: a node that is not (one that was
        removed, or one that joins and has not reached the change that adds it) signs no vote."""
        return self.id in self.members

    def _members_at(self, seq: int) -> Membership:
        return self.epochs.members_at(seq)

    @property
    def f(self) -> int:
        return self.members.f

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

    @property
    def view(self) -> int:
        return self.views.view

    @property
    def mode(self) -> Mode:
        """NORMAL: working in our view; CHANGING: our VIEW-CHANGE is out, we wait for the NEW-VIEW."""
        return self.views.mode

    @property
    def view_confirmed(self) -> bool:
        """Whether this node knows its view to be the network's: it entered it by a NEW-VIEW
        in this run, or f+1 other nodes showed they work in it (one of them honest). A node
        restored from its store, or just started, does not know it yet: its peers may have
        moved on while it was down."""
        if self.mode is Mode.CHANGING:
            return False
        return self._entered_view == self.view or self.catch_up.in_view(self.view) >= self.f + 1

    @property
    def changing_view(self) -> bool:  # for readers outside the core: tests and the simulator
        return self.views.mode is Mode.CHANGING

    def primary(self, view: int | None = None) -> int:
        return self.views.primary(view)

    @property
    def is_primary(self) -> bool:
        return self.views.is_primary

    def _buffer(self, buffers: dict[int, deque], sender: int, message: Message) -> None:
        buffer = buffers.get(sender)
        if buffer is None:
            buffer = buffers[sender] = deque(maxlen=self.settings.per_sender_buffer)
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
        if self.views.timer_expired(self.now):
            self._timer_expired()
        elif self.views.resend_due(self.now):
            self._send_view_change()
        else:
            self._maybe_join_lone_view_change()
        self._replay_ready()
        self._outbox.extend(self.relay.flush(self.primary(), self.is_primary))
        self._fall_back_to_all_to_all()
        self._outbox.extend(self.sync.asks(self.auth, self.now, self.last_executed))
        for key in self.standby.overdue(self.now):
            self._build_standing_by(key, f"a chosen builder's result is {self.standby.standby_s:g} s late")
        self._build_learnt_still_open()  # before the ask that would move the answer deadline on
        self._ask_for_votes()
        self._outbox.extend(self.sync.announcements(self.auth, self.now, self.last_executed))
        self._check_invariants()

    def execution_finished(
        self, request: Request, result: Result, seq: int, artifact_files: Mapping[str, str] = NO_FILES
    ) -> None:
        """A build started by an Execute effect at `seq` has an outcome: reply to its
        client, and tell the other nodes, so that every ledger can certify it.

        `artifact_files` are the build's artifacts, path to "sha256:<hex>", as this
        node's executor found them; only their manifest's digest is in `result`.
        A build whose cancel executed here before its result came ends `cancelled`,
        whatever it reports (`pbft.cancels`)."""
        executed = self.clients.executed
        if executed.get(request.key) is not None:
            return
        if request.key in self.cancels:  # a cancel is remembered as long as its own request
            result, artifact_files = cancelled_result(), NO_FILES
        if request.key not in executed:
            assert self.clients.expired(request.key), "result for a request that was never executed"
            if self.id in self._members_at(seq):
                # Its client's floor rose past it while it built or waited for a slot (its client
                # had max_requests_per_client newer ones executed at a checkpoint), and its client
                # may still wait: reply all the same, once, as a build's end comes once and a
                # restart runs no forgotten build again (`builds_to_rerun`). No RESULT vote: the
                # verdicts forgot it too.
                self._outbox.append(SendReply(self._reply(request, result, artifact_files)[0]))
            return
        self._answer(seq, request, result, artifact_files)

    def _reply(self, request: Request, result: Result, artifact_files: Mapping[str, str]) -> tuple[Reply, str, str, str]:
        """This node's signed reply to `request`, with the signatures it carries (statement,
        link, provenance) for the RESULT vote to carry too."""
        statement_sig, link_sig = self._sign_attestation(request, result)
        provenance_sig = self._sign_provenance(request, result, artifact_files)
        reply = signed(
            Reply(self.view, request.timestamp, request.client, self.id, result, statement_sig=statement_sig,
                  link_sig=link_sig, provenance_sig=provenance_sig, network=self.network.digest,
                  builders=self.result_votes.chosen.get(request.key, ())),
            self.auth.sign,
        )
        return reply, statement_sig, link_sig, provenance_sig

    def _answer(self, seq: int, request: Request, result: Result, artifact_files: Mapping[str, str] = NO_FILES) -> None:
        """Sign and send this node's reply and RESULT vote for the executed request at `seq`."""
        executed = self.clients.executed
        assert executed.get(request.key, False) is None, "a reply for a request not owed one"
        if self.id not in self._members_at(seq):
            # Not a member where it was ordered (removed before, or joined after): no word of ours counts.
            executed[request.key] = True
            return
        reply, statement_sig, link_sig, provenance_sig = self._reply(request, result, artifact_files)
        executed[request.key] = True  # the reply itself is kept by the store (SendReply)
        self._outbox.append(SendReply(reply))
        vote = signed(
            ResultVote(seq, request.client, request.timestamp, result, self.id, statement_sig=statement_sig,
                       link_sig=link_sig, provenance_sig=provenance_sig),
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
            # Forgotten: never executed again. If it was, the store may hold the reply this node
            # sent, perhaps after it was forgotten (`execution_finished`): the client lost it.
            self._outbox.append(ResendReply(request.client, request.timestamp))
            return "ignore_request_expired"
        if request.key in clients.executed:
            if clients.executed[request.key] is None:
                if request.key in self.transfer.learnt_unbuilt:
                    # The client still waits for matching replies, and one of the nodes that
                    # built it may have lied in its reply (or not built it): build it after all.
                    self._build_learnt(request.key)
                    return None
                if request.key in self.standby and not self.standby.open(request.key):
                    # Likewise for a build the order gave f+1 others, once its verdict is decided
                    # here: one may have told its peers one result and the client another. (Before
                    # that, a client resends a build that runs long every client_retransmit_s.)
                    self._build_standing_by(request.key, "its client sent it again after the verdict")
                    return None
                return "ignore_request_no_reply_yet"
            # A retransmission: the client lost our reply, so send it again, from the store.
            self._outbox.append(ResendReply(request.client, request.timestamp))
            return None
        if not clients.wait(request):
            return "ignore_request_client_has_too_many_open"
        if self.mode is Mode.CHANGING:
            return None  # handed to the new primary once the view is in place
        if not self.is_primary:
            if self.views.timer_deadline is None:
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
            and self.mode is Mode.NORMAL
            and self.epochs.pending is None
            and self.last_executed >= self.views.stable_seq
            and self.last_executed >= self._change_issued_at
            and self.next_seq - self.last_executed < self.settings.pipeline_depth
            and self.next_seq + 1 <= self.high_watermark
        ):
            batch = self.clients.next_batch(self.settings.batch_max)
            self.next_seq += 1
            if any(request.operation.change is not None for request in batch):
                # It may change the membership: nothing past it until it executed (`pbft.epochs`).
                self._change_issued_at = self.next_seq
            self._cover_vote(self.next_seq)
            preprepare = signed(
                PrePrepare(self.view, self.next_seq, batch_digest(batch), self.id, batch, epoch=self.epoch),
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
        reason = self._epoch_problem("preprepare", message)
        if reason is not None:
            return reason or None
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
        if not self.is_primary and self.member and self._may_vote(message.seq):
            self._cover_vote(message.seq)
            prepare = signed(Prepare(self.view, message.seq, message.digest, self.id, epoch=self.epoch), self.auth.sign)
            slot.prepares[self.id] = prepare
            self._outbox.append(Store(prepare))
            logger.info(
                "node=%d view=%d seq=%d phase=prepare digest=%s", self.id, self.view, message.seq, message.digest[:8]
            )
            self._send_vote(prepare)
        self._advance(message.seq)

    def _may_vote(self, seq: int) -> bool:
        """Not inside the horizon a reboot may have taken votes of ours from (`pbft.horizon`)."""
        if self.horizon.may_vote(self.epoch, self.view, seq):
            return True
        logger.warning("node=%d view=%d seq=%d phase=prepare withheld: a reboot may have taken a vote of ours here",
                       self.id, self.view, seq)
        return False

    def _cover_vote(self, seq: int) -> None:
        moved = self.horizon.cover(self.epoch, self.view, seq, self.high_watermark)
        if moved is not None:
            self._outbox.append(KeepVoteHorizon(moved.epoch, moved.view, moved.through))

    def _on_prepare(self, message: Prepare) -> str | None:
        if self._moves_nothing(message):
            return None
        reason = self._check_vote("prepare", message)
        if reason is None and message.sender == self.primary(message.view):
            reason = "ignore_prepare_from_primary"
        if reason is not None or self._buffer_if_future(message):
            return reason or None
        return self._record_vote(self.log.slot(message.seq).prepares, "prepare", message)

    def _on_commit(self, message: Commit) -> str | None:
        if self._moves_nothing(message):
            return None
        reason = self._check_vote("commit", message)
        if reason is not None or self._buffer_if_future(message):
            return reason or None
        return self._record_vote(self.log.slot(message.seq).commits, "commit", message)

    def _moves_nothing(self, vote: Prepare | Commit) -> bool:
        """Whether `vote` is of our view for a slot already past its phase: a PREPARE once
        the slot prepared, a COMMIT once it committed-local. Such a vote can change nothing
        here (the votes that moved the slot are kept), so it is neither checked nor kept:
        at n = 16 that spares each node a few signature checks per request. A backup of a
        relaying network still takes a vote sent straight to it, which says that its
        sender gave up waiting for the relay (`_joined_all_to_all`)."""
        if vote.view != self.view or self.mode is Mode.CHANGING:
            return False
        if self.relay.to_primary(self.is_primary) and not self.relay.taking_in:
            return False
        slot = self.slots.get(vote.seq)
        if slot is None or slot.preprepare is None:
            return False
        return slot.committed if isinstance(vote, Commit) else slot.prepared

    def _check_vote(self, kind: str, message: Prepare | Commit) -> str | None:
        """Why a vote is not one to count now ("" for one kept for the epoch about to begin), or None."""
        epoch_problem = self._epoch_problem(kind, message)
        if epoch_problem is not None:
            return epoch_problem
        return self._node_signature_problem(message) or self._check_view_and_window(kind, message)

    def _epoch_problem(self, kind: str, message: PrePrepare | Prepare | Commit) -> str | None:
        """Why a message of the three phases is not of the epoch we work in (`pbft.epochs`), or
        None; "" for one of the epoch about to begin, kept for it once its members signed it."""
        pending = self.epochs.pending
        if message.epoch == self.epoch:
            # (One at or below the epoch's start is below the window: h is at least the start.)
            if pending is not None and message.seq > pending.start:
                return f"ignore_{kind}_after_membership_change"
            return None
        if message.epoch < self.epoch:
            return f"ignore_{kind}_old_epoch"
        if pending is None or message.epoch != pending.start or message.seq <= pending.start:
            return f"ignore_{kind}_future_epoch"
        if pending.members.signature_problem(message, self.auth) is not None:
            return f"ignore_{kind}_future_epoch_bad_signature"
        self._buffer(self.future, message.sender, message)
        return ""

    def _node_signature_problem(self, message: Message) -> str | None:
        """Why `message` is not signed by the configured node it names as sender, or None."""
        problem = self.members.signature_problem(message, self.auth)
        return None if problem is None else f"ignore_{message.TYPE}_{problem}"

    def _past_member_signature_problem(self, message: Message) -> str | None:
        """As `_node_signature_problem`, but the sender may be a member of an epoch this node
        still keeps (`pbft.epochs.MAX_PAST`) rather than of the current one."""
        problem = self._node_signature_problem(message)
        if problem is None or not problem.endswith("_unknown_sender"):
            return problem
        for epoch in reversed(self.epochs.past):
            if message.sender in epoch.members.key_of:
                found = epoch.members.signature_problem(message, self.auth)
                return None if found is None else f"ignore_{message.TYPE}_{found}"
        return problem

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
        if self.views.not_entered(message.view) or message.seq > self.high_watermark:
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
                if message.epoch > self.epoch:  # of the epoch about to begin (`_epoch_problem`)
                    kept.append(message)
                    continue
                if message.epoch < self.epoch or message.view < self.view or message.seq <= self.low_watermark:
                    continue
                (kept if self.views.not_entered(message.view) or message.seq > self.high_watermark else ready).append(message)
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
        if not slot.prepared and matching(vote_digests(slot.prepares), preprepare.digest) >= prepare_quorum(self.members.n, self.f):
            slot.prepared = True
            proof = tuple(vote for vote in slot.prepares.values() if vote.digest == preprepare.digest)
            self.log.prepared_certs[seq] = PreparedCertificate(preprepare, proof)
            if self.member:  # a node outside the membership follows the votes and signs none
                self._commit(seq, preprepare, proof)
        committed_votes = matching(vote_digests(slot.commits), preprepare.digest)
        if slot.prepared and not slot.committed and committed_votes >= commit_quorum(self.members.n, self.f):
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

    def _commit(self, seq: int, preprepare: PrePrepare, proof: tuple[Prepare, ...]) -> None:
        slot = self.slots[seq]
        commit = signed(Commit(self.view, seq, preprepare.digest, self.id, epoch=self.epoch), self.auth.sign)
        slot.commits[self.id] = commit
        self._outbox.append(Store(commit))
        logger.info("node=%d view=%d seq=%d phase=commit digest=%s", self.id, self.view, seq, preprepare.digest[:8])
        if self.relaying and self.is_primary:
            # The quorum that prepared us prepares every backup. It leaves before this step
            # is on disk (`pbft.effects.leaves_unsaved`); our commit needs the disk first,
            # and is no backup's to wait for: it rides in the commits' relay.
            self._outbox.append(Broadcast(Relay(proof)))
        else:
            self._send_vote(commit)

    # --- relayed votes (`pbft.relay`) ------------------------------------

    @property
    def relaying(self) -> bool:
        return self.relay.enabled

    def _send_vote(self, vote: Prepare | Commit) -> None:
        """Broadcast our vote, or in a relaying network hand it to the primary, which passes a quorum on."""
        self._outbox.append(self.relay.send_vote(vote, self.slots[vote.seq], self.now, self.primary(), self.is_primary))

    def _on_relay(self, relay: Relay) -> str | None:
        """Take in each relayed vote as if it had come alone. Votes we hold already (our own
        among them) are skipped before their signature is checked: they tell us nothing."""
        first_problem = None
        with self.relay.unpacking():
            for vote in relay.votes:
                if vote.sender == self.id or self._holds(vote):
                    continue
                problem = self._handle(vote)
                first_problem = first_problem or problem
        return first_problem

    def _joined_all_to_all(self, vote: Prepare | Commit) -> None:
        slot = self.slots.get(vote.seq)
        if self.relay.joins_all_to_all(vote, slot, self.view, self.primary(vote.view), self.is_primary):
            self._outbox.extend(self.relay.go_all_to_all(slot, self.id, self.view))

    def _fall_back_to_all_to_all(self) -> None:
        """Slots whose relay is overdue go back to all-to-all voting (see relay_fallback_s)."""
        if not self.relay.to_primary(self.is_primary) or self.mode is Mode.CHANGING:
            return
        for slot in self.relay.overdue(self.slots.values(), self.now):
            self._outbox.extend(self.relay.go_all_to_all(slot, self.id, self.view))

    def _holds(self, vote: Prepare | Commit | ResultVote) -> bool:
        if isinstance(vote, ResultVote):
            return vote.key in self.result_votes and self.result_votes.has_vote(vote.key, vote.sender)
        slot = self.slots.get(vote.seq)
        if slot is None:
            return False
        held = (slot.prepares if isinstance(vote, Prepare) else slot.commits).get(vote.sender)
        return held == vote

    def _queue_for_relay(self, vote: ResultVote) -> None:
        self._outbox.extend(self.relay.queue_result(vote, self.primary(), self.is_primary))

    # --- execution, in sequence order (§4.2) ---------------------------

    def _execute_ready(self) -> None:
        while True:
            slot = self.slots.get(self.last_executed + 1)
            if slot is None or not slot.committed or self.epochs.pending is not None:
                return
            assert slot.preprepare is not None
            self._append_to_ledger(slot.preprepare.seq, slot.preprepare.digest, slot.preprepare.batch, build=True)
            if self.is_primary:
                self._issue_preprepares()

    def _append_to_ledger(self, seq: int, batch_id: str, batch: tuple[Request, ...], *, build: bool) -> None:
        """Execute one batch: the only place last_executed and the state digest move forward one step.

        Cancels in it take effect here, built or learnt alike (`pbft.cancels`): each one's
        target is cancelled before anything of the batch starts, so a target in the same
        batch, before or after its cancel, is never built."""
        assert seq == self.last_executed + 1
        # A node outside the membership that orders `seq` (removed, or not joined yet) follows
        # the order and builds nothing: none of its results would count.
        member = self.id in self._members_at(seq)
        build = build and member
        fresh = tuple(request for request in batch if self.clients.execute(request))
        targets = [target for target in map(self.cancels.add, fresh) if target is not None]
        duplicates = [request for request in fresh if self.deliveries.add(request)]
        answers = {request.key: self._order_answer(seq, request) for request in fresh}
        answers.update((request.key, duplicate_result(request.operation.delivery)) for request in duplicates)
        answered = tuple(request for request in fresh if answers[request.key] is not None)
        owed = tuple(request for request in fresh if answers[request.key] is None)
        members = self._members_at(seq)
        chosen = {r.key: picked(self.network.document, r.operation.repository, seq, members.ids, members.f) for r in owed}
        for request in fresh:
            self.result_votes.ordered(request.key, seq, chosen.get(request.key, ()))
        # What the order gave other members to build, this member stands by for, built here or
        # learnt by state transfer alike (`pbft.builders`).
        standing_by = tuple(r for r in owed if chosen[r.key] and self.id not in chosen[r.key]) if member else ()
        for request in standing_by:
            self.standby.wait(seq, request, chosen[request.key])
            self.result_votes.expect(request.key, self.now, at_once=not build)
        if not build and member:
            for request in owed:
                if request not in standing_by:
                    self.result_votes.expect(request.key, self.now, at_once=True)
                    self.transfer.learnt(seq, request)
        self.last_executed = seq
        self.catch_up.progressed(self.now)
        self.state_digest = digest([self.state_digest, seq, batch_id])
        built = tuple(r for r in owed if r not in standing_by) if build else ()
        learnt = tuple(r for r in owed if r not in built)
        logger.info(
            "node=%d view=%d seq=%d phase=execute digest=%s builds=%d",
            self.id, self.view, seq, batch_id[:8], len(built),
        )
        network, document = self.network.document_at(seq) or ("", None)
        self._outbox.append(Execute(self.view, seq, batch_id, batch, built, self.state_digest, learnt, answered,
                                    tuple((key, builders) for key, builders in chosen.items() if builders),
                                    network, document))
        # After the batch's Execute: the votes may decide a verdict, or make this node build
        # what it stood by for, and the store records either for a build it executed.
        self._release_early_votes(batch)
        for request in answered:
            self._answer(seq, request, answers[request.key])
            if request.key in self.cancels:
                self._settle_cancelled(request.key)  # overtaken by its cancel: never built anywhere
        for target in targets:
            self._cancel(seq, target)
        self.views.progressed(self.now, self.clients.waiting)
        if self.checkpoints.due(seq):
            self._forget_expired_requests()
            self._take_checkpoint(seq)

    def _ordered(self, seq: int, request: Request) -> OrderedBuild:
        """A build learnt, stood by for or run again after a restart, as one just executed is
        given to the driver: with the document in force at `seq` and its picked builders."""
        return OrderedBuild.at(seq, request, self.network.document_at(seq), self.result_votes.chosen.get(request.key, ()))

    def _build_standing_by(self, key: tuple[str, int], why: str) -> None:
        waiting = self.standby.take(key)
        logger.info("node=%d view=%d seq=%d build=%s-%d stood by, building it: %s",
                    self.id, self.view, waiting.seq, key[0], key[1], why)
        self._outbox.append(BuildLearnt(self._ordered(waiting.seq, waiting.request)))

    def _check_standby(self, key: tuple[str, int]) -> None:
        """Build now what we stand by for if its chosen builders' results differ, or one
        carries artifacts (agreed by 2f+1)."""
        waiting = self.standby.waiting[key]
        said = [vote.result for sender, vote in self.result_votes.votes.get(key, {}).items() if sender in waiting.chosen]
        if len({result.agreed_key() for result in said}) > 1:
            self._build_standing_by(key, "the chosen builders' results differ")
        elif any(result.artifacts is not None for result in said):
            self._build_standing_by(key, "its artifacts are agreed by 2f+1")

    def _order_answer(self, seq: int, request: Request) -> Result | None:
        """The result the order alone gives `request`, or None for a build to run: a cancel's
        (`pbft.cancels`) and a network change's (`pbft.networks`), which take effect here."""
        change = request.operation.change
        if change is not None:
            problem, new_members = self._change_problem(seq, change)
            if problem is not None:
                logger.warning("node=%d view=%d seq=%d network change refused: %s", self.id, self.view, seq, problem)
                return Result("error", None, None, f"network change refused: {problem}")
            self.network.apply(seq, change, self.network.signers(change, self.auth.verify_key))
            self.checkpoints.boundary(seq)
            if new_members:
                self._pend_epoch(seq)
            logger.warning("node=%d view=%d seq=%d network configuration %s runs from here, signed by %s",
                           self.id, self.view, seq, self.network.digest[:16], ", ".join(self.network.signed_by))
            self._outbox.append(NetworkChanged(seq, self.network.document, self.network.digest))
            return Result("success", 0, None, applied_reason(self.network.digest, seq, self.network.signed_by))
        return self._standing_answer(request)

    def _change_problem(self, seq: int, change: NetworkChange) -> tuple[str | None, bool]:
        """Why the change executed at `seq` is refused (None: it applies), and whether it changes
        the membership: one such change per batch, the next one's members being the first's to
        agree on (`pbft.epochs`)."""
        problem = self.network.problem(change, self.auth.verify_key, self.check_network,
                                       membership=self.settings.changes_membership)
        if problem is not None:
            return problem, False
        if not membership_changes(self.network.document, change.parsed()):
            return None, False
        if self.epochs.pending is not None or self.epochs.boundaries[-1:] == [seq]:
            return "another change of the membership executed at this sequence number: submit it again", False
        return None, True

    def _pend_epoch(self, seq: int) -> None:
        """A change of the membership executed at `seq`: the next epoch begins once the
        checkpoint at `seq` is stable here (`pbft.epochs`); nothing above `seq` is ordered
        until then, so what this node held above it goes."""
        self.epochs.pend(seq, membership(self.network.document, self.settings))
        self.log.drop_above(seq)
        logger.warning("node=%d view=%d seq=%d membership changes: n=%d f=%d from the checkpoint here",
                       self.id, self.view, seq, self.epochs.pending.members.n, self.epochs.pending.members.f)

    def sign_as_member(self) -> None:
        """Sign with the key the members give this node (a change may have replaced it); the
        driver calls it again once it has given the authenticator a key made meanwhile."""
        key = self.members.key_of.get(self.id)
        if key and not self.auth.sign_as(key):
            logger.critical("node=%d epoch=%d holds no private key for its public key %s: no member will take "
                            "what it signs", self.id, self.epoch, key[:16])

    def _restore_epoch(self) -> None:
        """After a restart: the parts that depend on the members are those of the epoch the
        replayed changes put this replica in."""
        if self.epoch == 0:
            return
        self.sign_as_member()
        previous = self.epochs.past[-1].members if self.epochs.past else None
        self.views.previous, self.views.members, self.views.epoch = previous, self.members, self.epoch
        self.checkpoints.quorum = self.members.quorum
        self.catch_up.members_changed(self.members.f, self.members.ids)

    def _begin_epoch(self) -> None:
        """The checkpoint that ends the epoch is stable: the next one begins, in its view 0."""
        joined = not self.member
        self.epochs.begin()
        members, start = self.members, self.epoch
        self.views.begin_epoch(members, start, self.now)
        self.checkpoints.quorum = members.quorum
        self.catch_up.members_changed(members.f, members.ids)
        self.log.new_view()
        self.log.drop_above(start)
        self.sign_as_member()
        self.clients.unqueue_all()
        self.clients.forwarded.clear()
        self.next_seq = max(self.next_seq if self.next_seq <= start else start, self.last_executed)
        self._entered_view = 0
        self._replay_due = True
        logger.warning("node=%d epoch=%d begins: n=%d f=%d primary=%d%s", self.id, start, members.n, members.f,
                       self.primary(), "" if self.member else " (this node is not a member)")
        if joined and self.member:
            # Votes went to the members only: ask for those of every build it followed without.
            for key in list(self.result_votes.votes):
                self.result_votes.expect(key, self.now)
        self._hand_over_waiting(())

    def _standing_answer(self, request: Request) -> Result | None:
        """What the order answers a request that is no network change (`_order_answer`), as
        often as it is asked: a cancel's result, or `cancelled` for a build its cancel overtook."""
        # A change is answered where it executes, in the same step: it is never a build left
        # unfinished or unbuilt.
        assert request.operation.change is None, "a network change is answered where it executes"
        if request.operation.cancels is not None:
            if target_of(request) is None:
                return Result("error", None, None, "a cancel must name an earlier build of its own client")
            return cancel_result(request.operation.cancels)
        return cancelled_result() if request.key in self.cancels else None

    def _cancel(self, seq: int, target: tuple[str, int]) -> None:
        """The cancel executed at `seq` cancels `target`: stop its build if it runs here (its
        result is then `cancelled`), answer it `cancelled` at once if this node learnt it by
        state transfer or stood by for it and never built it (the client may need this node's
        reply: a node that builds nothing still answers what the order decides), and make its
        verdict `cancelled`."""
        if target not in self.result_votes:
            # Not executed yet (it is answered `cancelled` when it is), or forgotten: its client
            # had max_requests_per_client newer ones executed at a checkpoint, perhaps while it
            # waited here for a slot. Stopped, it ends `cancelled` (`execution_finished`).
            if self.clients.expired(target):
                self._outbox.append(StopBuild(seq, *target))
            return
        if self.clients.executed.get(target, False) is None:
            if target in self.transfer.learnt_unbuilt:
                target_seq, request = self.transfer.take(target)
                self._answer(target_seq, request, cancelled_result())
            elif target in self.standby:
                waiting = self.standby.take(target)  # chosen builders build it, or built it: not us
                self._answer(waiting.seq, waiting.request, cancelled_result())
            else:
                self._outbox.append(StopBuild(seq, *target))
        self._settle_cancelled(target)

    def _settle_cancelled(self, key: tuple[str, int]) -> None:
        result = cancelled_result()
        if self.result_votes.settle(key, "cancelled", result):
            target_seq = self.result_votes.seq[key]
            logger.info("node=%d view=%d seq=%d build=%s-%d verdict=cancelled", self.id, self.view, target_seq, *key)
            self._outbox.append(RecordVerdict(target_seq, key[0], key[1], "cancelled", result.agreed()))

    def _forget_expired_requests(self) -> None:
        """Done at checkpoint boundaries, as a function of the ledger alone, so every
        honest replica forgets the same requests (and their votes) at the same point.
        A build forgotten before its verdict reached us stays open in no table: the
        ledger says so ("expired") rather than "pending" for ever."""
        forgotten = self.clients.forget_expired()
        self.transfer.forget(forgotten)
        for key in forgotten:
            self.standby.drop(key)
        self.cancels.forget(forgotten)
        self.deliveries.forget(forgotten)
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
        reason = self._result_signature_problem(message)
        if reason is not None:
            return reason
        if message.key in self.result_votes:
            return None if self._count_vote(message) else "ignore_result_not_first_vote"
        if self.clients.expired(message.key):
            return "ignore_result_expired"
        # A faster node finished a build we have not ordered yet: keep it, bounded.
        self._buffer(self.early_votes, message.sender, message)
        return None

    def _result_signature_problem(self, message: ResultVote) -> str | None:
        """Why a RESULT is not signed by a member: of the epoch that ordered its build, with the
        key it had there or has now (a node removed or re-keyed since still votes on the builds
        ordered before), or of this epoch for a build not ordered here yet."""
        seq = self.result_votes.seq.get(message.key)
        reason = self._node_signature_problem(message)
        if reason is None or seq is None:
            return reason
        then = self._members_at(seq).signature_problem(message, self.auth)
        return None if then is None else reason

    def _count_vote(self, vote: ResultVote) -> bool:
        if vote.sender not in self._members_at(self.result_votes.seq[vote.key]):
            return False  # a node that joined after the build was ordered: not one of its voters
        kept, decided, evidence = self.result_votes.add(vote)
        if kept:
            self._outbox.append(Store(vote))
            if self.relaying and self.is_primary:
                self._queue_for_relay(vote)
        if evidence is not None:
            # Every member learns it, and leaves the sender out of the picked builders' agreement (docs/faults.md).
            logger.warning("node=%d view=%d seq=%d build=%s evidence: node %d signed two results", self.id, self.view,
                           vote.seq, vote.key, vote.sender)
            self._outbox.extend(Broadcast(signed_vote) for signed_vote in evidence)
        if self.standby.open(vote.key):
            if decided is not None:
                self.standby.decided(vote.key)
            elif kept:
                self.standby.vote(vote.key, vote.sender, self.now)
                self._check_standby(vote.key)
            elif evidence is not None and vote.sender in self.standby.waiting[vote.key].chosen:
                self._build_standing_by(vote.key, f"chosen builder {vote.sender} signed two results")
        if decided is not None:
            state, result = decided
            seq = self.result_votes.seq[vote.key]
            logger.info("node=%d view=%d seq=%d build=%s verdict=%s", self.id, self.view, seq, vote.key, state)
            self._outbox.append(RecordVerdict(seq, vote.client, vote.timestamp, state, result))
        return kept or evidence is not None

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
        decide (2f+1 matching) once two of our asks were answered and the answers had their
        time (or four went out): the nodes that built them may be too few without us. Asking
        first spares a node that caught up on hours of history from building what was
        certified long ago."""
        while (key := self.transfer.oldest_open()) is not None:
            still_open = self.result_votes.open_after_asking(key, times=2, now=self.now)
            if still_open is None:
                return  # its answers may still come: the oldest is built first, once they had their time
            self.transfer.stop_waiting(key)
            if still_open:
                self._build_learnt(key)

    def _build_learnt(self, key: tuple[str, int]) -> None:
        seq, request = self.transfer.take(key)
        logger.info("node=%d view=%d seq=%d build=%s-%d learnt by state transfer: building it",
                    self.id, self.view, seq, key[0], key[1])
        self._outbox.append(BuildLearnt(self._ordered(seq, request)))

    def _on_vote_fetch(self, message: VoteFetch) -> str | None:
        """Send a peer every signed vote we hold for the builds it asks about (each is
        checkable on its own), at most once per quarter retry period per peer (an
        honest one asks at most every half period)."""
        # A node the order removed still owes replies for the builds ordered while it was a
        # member: it asks for their votes as a member of the epoch they were ordered in.
        reason = self._past_member_signature_problem(message)
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
        self.checkpoints.computed(seq, self.state_digest, self.network.digest)
        if self.id not in self.epochs.members_at(seq):
            self._maybe_stable(seq)  # a node that is no member of the epoch signs none of its checkpoints
            return
        checkpoint = signed(Checkpoint(seq, self.state_digest, self.id, network=self.network.digest), self.auth.sign)
        self.checkpoints.add(checkpoint, self.last_executed)
        self._outbox.append(Store(checkpoint))
        logger.info("node=%d view=%d seq=%d phase=checkpoint digest=%s", self.id, self.view, seq, self.state_digest[:8])
        self._outbox.append(Broadcast(checkpoint))
        self._maybe_stable(seq)

    def _on_checkpoint(self, message: Checkpoint) -> str | None:
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        self.sync.claim_network(message.sender, message.network, message.seq, self.last_executed)
        # A signed checkpoint says its sender executed this far; f+1 of them must agree
        # before that counts, so it is taken even beyond the range kept below.
        self.catch_up.claim_seq(message.sender, message.seq, executed=True)
        problem = self.checkpoints.add(message, self.last_executed)
        if problem is not None:
            return f"ignore_checkpoint_{problem}"
        self._outbox.append(Store(message))
        self._maybe_stable(message.seq)
        return None

    def _maybe_stable(self, seq: int) -> None:
        """A checkpoint is stable once 2f+1 nodes, this one included, vouch for our digest."""
        if not self.checkpoints.try_stable(seq):
            return
        logger.info("node=%d view=%d seq=%d phase=stable digest=%s", self.id, self.view, seq, self.checkpoints.own[seq][0][:8])
        self.log.collect_garbage(seq)
        self._outbox.append(KeepStableProof(seq, self.stable_proof))
        self._replay_due = True
        if self.epochs.pending is not None and seq >= self.epochs.pending.start:
            self._begin_epoch()
        if self.is_primary:
            self._issue_preprepares()

    # --- view changes (§4.4, §4.5.2; `pbft.views`) ------------------------

    def _start_timer(self) -> None:
        """Time the oldest request we wait for (or, changing views, the wait for NEW-VIEW)."""
        waited = next(iter(self.clients.waiting), None) if self.mode is Mode.NORMAL else None
        self.views.start_timer(self.now, waited)

    def _timer_expired(self) -> None:
        """The request we wait for did not execute in time: suspect the primary (§4.4), unless
        f+1 nodes show that the stall is ours. A node that merely lags behind peers that
        went on (or that missed the NEW-VIEW of a view they are working in) catches up
        instead; a view change it started alone would leave it out of the network."""
        if not self.member:
            self.views.stop_timer()  # a node outside the membership suspects no primary
            return
        changing = self.mode is Mode.CHANGING
        if self.catch_up.behind(self.last_executed) or (changing and self.catch_up.target_view() >= self.view):
            logger.warning("node=%d view=%d timer expired while behind its peers: catching up", self.id, self.view)
            self._start_timer()
            if changing:
                self._send_view_change()  # peers in this view answer with its NEW-VIEW
            return
        logger.warning("node=%d view=%d timer expired", self.id, self.view)
        self._start_view_change(self.view + 1)

    def _start_view_change(self, view: int) -> None:
        self.views.move_to(view)
        self.clients.unqueue_all()
        self._send_view_change()
        self._maybe_start_new_view_timer()
        self._maybe_send_new_view(view)

    def _send_view_change(self) -> None:
        if not self.member:
            return
        message = signed(
            ViewChange(self.view, self.low_watermark, self.stable_proof, self.log.prepared_above(self.low_watermark), self.id,
                       epoch=self.epoch),
            self.auth.sign,
        )
        self.views.said(message, self.now)
        logger.warning(
            "node=%d view=%d phase=view-change stable=%d prepared=%d",
            self.id, self.view, self.low_watermark, len(message.prepared),
        )
        self._outbox.append(Broadcast(message))

    def _maybe_join_lone_view_change(self) -> None:
        """Idle, join a peer that asks alone for the next view (`Views.lone_view_change`)."""
        idle = (
            not self.clients.waiting and not self.clients.pending
            and max(self.slots, default=0) <= self.last_executed
            and not self.catch_up.behind(self.last_executed)
        )
        view = self.views.lone_view_change(self.now, idle)
        if view is not None:
            logger.warning("node=%d view=%d idle: joining a peer's lone VIEW-CHANGE for view %d", self.id, self.view, view)
            self._start_view_change(view)

    def _maybe_start_new_view_timer(self) -> None:
        if self.views.quorum_wants_our_view():
            self._start_timer()

    def _on_view_change(self, message: ViewChange) -> str | None:
        if message.epoch != self.epoch:
            # A VIEW-CHANGE of the epoch we wait to begin may carry the proof of the checkpoint that
            # begins it, which we may never get otherwise (`pbft.statetransfer.StateSync.epoch_proof`).
            stores = self.sync.epoch_proof(message, self.auth)
            if stores is not None:
                self._outbox.extend(stores)
                self._maybe_stable(message.stable_seq)
            if message.epoch != self.epoch:
                return "ignore_view-change_of_another_epoch"
        if message.view == self.view and self.mode is Mode.NORMAL:
            return self._serve_new_view(message)
        problem = self.views.take_view_change(message, self.auth)
        if problem is not None:
            return f"ignore_view-change_{problem}"
        # A verified 2f+1 checkpoint proof: we may be behind it.
        self.catch_up.proven(message.stable_seq)
        self._maybe_start_new_view_timer()
        join = self.views.view_to_join()
        if join is not None:
            self._start_view_change(join)
        self._maybe_send_new_view(message.view)
        return None

    def _serve_new_view(self, message: ViewChange) -> str | None:
        """A node still asks for the view we are in: it missed the NEW-VIEW, so send it again."""
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        new_view = self.views.new_view_to_serve(message.sender, self.now)
        if isinstance(new_view, str):
            return f"ignore_view-change_{new_view}"
        self._outbox.append(SendTo(message.sender, new_view))
        return None

    def _maybe_send_new_view(self, view: int) -> None:
        """As primary of `view`, announce it once 2f+1 view changes (ours included) are in."""
        chosen = self.views.new_view_quorum(view)
        if chosen is None:
            return
        plan = plan_new_view(chosen, view, self.members, self.epoch)
        preprepares = tuple(
            signed(PrePrepare(view, seq, old.digest, self.id, old.batch, epoch=self.epoch), self.auth.sign)
            for seq, old in sorted(plan.batches.items())
        )
        message = signed(NewView(view, chosen, preprepares, self.id, epoch=self.epoch), self.auth.sign)
        self._outbox.append(Broadcast(message))
        self._enter_view(message, plan)

    def _on_new_view(self, message: NewView) -> str | None:
        problem, plan = self.views.new_view_problem(message, self.auth)
        if problem is not None:
            return f"ignore_new-view_{problem}"
        self._enter_view(message, plan)
        return None

    def _enter_view(self, new_view: NewView, plan: NewViewPlan) -> None:
        self.views.enter(new_view, plan)
        self._entered_view = new_view.view
        self._outbox.append(Store(new_view))
        self.clients.forwarded.clear()
        self._adopt_checkpoint(plan)
        self.catch_up.proven(plan.stable_seq)
        self.log.new_view()
        preprepares = new_view.preprepares
        # Never issue at or below the view's stable checkpoint, even if we are behind it.
        self.next_seq = max([pp.seq for pp in preprepares] + [self.low_watermark, plan.stable_seq])
        logger.warning(
            "node=%d view=%d phase=new-view primary=%d reissued=%d",
            self.id, self.view, self.primary(), len(preprepares),
        )
        for pp in preprepares:
            if self.in_window(pp.seq):
                self._accept_preprepare(pp)
        self._replay_due = True
        self._hand_over_waiting(preprepares)

    def _adopt_checkpoint(self, plan: NewViewPlan) -> None:
        """Move up to the new view's stable checkpoint when our own state matches it."""
        if plan.stable_seq <= self.low_watermark or plan.stable_seq not in self.checkpoints.own:
            return
        self.checkpoints.adopt_proof(plan.stable_seq, plan.checkpoint_proof)
        self._maybe_stable(plan.stable_seq)

    def _hand_over_waiting(self, preprepares: tuple[PrePrepare, ...]) -> None:
        """Requests that clients sent us and that did not execute go to the new primary."""
        reissued = {request.key for pp in preprepares for request in pp.batch}
        open_requests = self.clients.still_open(reissued)
        if self.is_primary:
            for request in open_requests:
                self.clients.queue(request)
            self._issue_preprepares()
        else:
            for request in open_requests:
                self.clients.forwarded.add(request.key)
                self._outbox.append(SendTo(self.primary(), request))
            if self.clients.waiting:
                self._start_timer()

    # --- state transfer (§4.3, §5.3.2; `pbft.statetransfer`) ----------

    def _on_status(self, message: Status) -> str | None:
        """A peer says where it is: a claim like any other, believed once f+1 make it."""
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        self.sync.status_claims(message, self.last_executed)
        return None

    def run_network(self, document: dict) -> None:
        """From now on this node runs `document`, which an operator reloaded (SIGHUP) into a
        network the order never changed: its next CHECKPOINT, STATUS and replies name it, and
        its peers name this node until they run it too."""
        self.network.reload(document, self.last_executed)

    def _on_fetch(self, message: Fetch) -> str | None:
        if message.sender == self.id:
            return "ignore_fetch_unknown_sender"
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        reason = self.sync.fetch_problem(message, self.now, self.last_executed)
        if reason is None:
            self._outbox.append(ServeFetch(message))
        return reason

    def answer_fetch(self, fetch: Fetch, ledger: LedgerReader) -> None:
        """Send `fetch.sender` one chunk of the ledger from `fetch.from_seq` (`pbft.statetransfer`)."""
        answer = self.sync.answer(fetch, ledger, self.auth, self.now, self.last_executed)
        self._outbox.append(SendTo(fetch.sender, answer))

    def _on_state_transfer(self, message: StateTransfer) -> str | None:
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        adopted = message.stable_seq > self.last_executed
        if adopted or message.stable_seq > self.low_watermark:
            # Take the batches up to a stable checkpoint we missed, without running their builds;
            # or, executed that far, the proof that makes our checkpoint there stable.
            reason, entries = self.sync.vouched_entries(message, self.auth, self.last_executed, self.state_digest)
            if reason is not None:
                return reason
            for entry in entries:
                self._append_to_ledger(entry.seq, batch_digest(entry.batch), entry.batch, build=False)
            self._outbox.extend(self.sync.adopt_proof(message, self.state_digest if adopted else None))
            self._maybe_stable(message.stable_seq)
            if adopted:
                logger.warning("node=%d view=%d seq=%d phase=state-transfer from=%d",
                               self.id, self.view, message.stable_seq, message.sender)
        new_view = message.new_view
        if new_view is not None and self.views.not_entered(new_view.view):
            reason = self._on_new_view(new_view)
            if reason is not None:
                return f"ignore_state_{reason}"
        reason, stores = self.sync.adopt_certificates(message.certificates, self.auth, self.last_executed)
        self._outbox.extend(stores)
        if reason is not None:
            return reason
        self._execute_ready()
        if adopted:
            self._outbox.extend(self.sync.ask_next(message.sender, self.auth, self.last_executed))
        return None

    # --- crash recovery (`pbft.durable`) --------------------------------

    def durable_state(self) -> DurableState:
        return DurableState(
            view=self.view,
            changing_view=self.changing_view,
            view_changes_in_a_row=self.views.in_a_row,
            low_watermark=self.low_watermark,
            last_executed=self.last_executed,
            next_seq=self.next_seq,
            view_stable_seq=self.views.stable_seq,
            state_digest=self.state_digest,
            stable_proof=self.stable_proof,
            client_floor=dict(self.clients.floor),
            client_latest=dict(self.clients.latest),
            vote_horizon_epoch=self.horizon.durable.epoch,
            vote_horizon_view=self.horizon.durable.view,
            vote_horizon=self.horizon.durable.through,
            silent_horizon_epoch=self.horizon.silent.epoch,
            silent_horizon_view=self.horizon.silent.view,
            silent_horizon=self.horizon.silent.through,
        )

    def restore(self, loaded: Loaded, now: float = 0.0, rebooted: bool = False) -> Replica:
        """Rebuild this replica, just made with the document the node starts with, from what
        its driver persisted before a crash (`loaded`, `pbft.storage.Loaded`, taken whole), each
        part from its own share; return it.

        `loaded.messages` are the protocol messages it stored (its own and those it
        accepted); they were verified before they were stored. `loaded.cancels` are the
        executed cancel requests above their client's floor, with their sequence
        numbers: replayed in ledger order, they cancel again what they cancelled
        before the stop (`pbft.cancels`). `loaded.deliveries` are the executed requests above
        their client's floor that name a delivery: whether the next one of a delivery is a
        duplicate depends on those alone (`pbft.deliveries`). `loaded.changes` are every network
        change the ledger executed, with their sequence numbers: replayed in ledger order from
        the document the node starts with, by the rule that applied or refused each one, they
        give the document the node ran before the stop. `loaded.chosen` names the builders the
        order picked for executed builds of repositories with `builders: f+1` (`pbft.builders`):
        their verdicts count by them, and this node stands by again for those it did not build.
        `rebooted`: the machine restarted since the store was written, so steps written and not
        fsynced may be lost: the replica keeps silent inside its vote horizon (`pbft.horizon`).
        Nothing is sent while restoring but our VIEW-CHANGE again if we were changing views: the
        replica resumes where it was and asks its peers for anything it missed.
        """
        replica, settings, auth, state = self, self.settings, self.auth, loaded.state
        messages, executed, learnt, cancels, deliveries, changes, chosen = (
            loaded.messages, loaded.executed, loaded.learnt, loaded.cancels, loaded.deliveries, loaded.changes,
            loaded.chosen,
        )
        for seq, change in changes:  # in ledger order (`pbft.storage.Loaded.changes`)
            replayed = change.operation.change
            assert replayed is not None and seq <= state.last_executed, "a change the ledger did not execute"
            problem, new_members = replica._change_problem(seq, replayed)
            if problem is not None:
                continue
            replica.network.apply(seq, replayed, replica.network.signers(replayed, auth.verify_key))
            if seq > state.low_watermark:
                replica.checkpoints.boundary(seq)
            if new_members:
                replica.epochs.pend(seq, membership(replica.network.document, settings))
                if seq <= state.low_watermark:  # its checkpoint was stable: the epoch had begun
                    replica.epochs.begin()
        replica._restore_epoch()
        replica.now = replica.catch_up.last_progress_at = now
        by_type: dict[type, list[Message]] = {}
        for message in messages:
            by_type.setdefault(type(message), []).append(message)
        replica.views.restore(
            state.view, state.changing_view, state.view_changes_in_a_row, state.view_stable_seq,
            [new_view for new_view in by_type.get(NewView, []) if new_view.epoch == replica.epoch],
        )
        replica.last_executed, replica.next_seq, replica.state_digest = state.last_executed, state.next_seq, state.state_digest
        replica.horizon.restore(
            Horizon(state.vote_horizon_epoch, state.vote_horizon_view, state.vote_horizon),
            Horizon(state.silent_horizon_epoch, state.silent_horizon_view, state.silent_horizon), rebooted,
        )
        silent = replica.horizon.silent
        if replica.is_primary and replica.mode is Mode.NORMAL and silent.covers(replica.epoch, replica.view, replica.next_seq):
            # PRE-PREPAREs of ours a power cut took may be out there: issue none where they may be.
            replica.next_seq = silent.through
        replica.checkpoints.restore(state.low_watermark, state.stable_proof, by_type.get(Checkpoint, []), replica.id,
                                    state.last_executed)
        replica.clients.floor, replica.clients.latest = dict(state.client_floor), dict(state.client_latest)
        # Exactly-once: what the ledger executed (key -> (seq, replied)), built here or learnt,
        # less what expired; and the votes on those builds, counted by the same rule as live.
        for key, (seq, replied) in executed.items():
            if not replica.clients.expired(key):
                replica.clients.remember(key, True if replied else None)
                replica.result_votes.ordered(key, seq, (chosen or {}).get(key, ()))
        for vote in by_type.get(ResultVote, []):
            if vote.key in replica.result_votes:
                replica.result_votes.add(vote)
        for _, cancel in sorted(cancels, key=lambda entry: entry[0]):
            if cancel.key in replica.clients.executed:
                target = replica.cancels.add(cancel)
                if target is not None and target in replica.result_votes:
                    # Its votes alone would make it certified or disputed again; the ledger's
                    # row is written again too, the same (a store from before cancels were
                    # replicated lacks it).
                    replica._settle_cancelled(target)
        for _, named in deliveries:
            if named.key in replica.clients.executed:
                replica.deliveries.add(named)
        # Only the epoch it works in, and nothing past a change of the membership not in force yet.
        pending = replica.epochs.pending
        three_phases = [m for kind in (PrePrepare, Prepare, Commit) for m in by_type.get(kind, [])
                        if m.epoch == replica.epoch and (pending is None or m.seq <= pending.start)]
        replica.log.restore(three_phases, replica.in_window, replica.id, replica.members.n, replica.f,
                            replica.view if replica.mode is Mode.NORMAL else None)
        if replica.mode is Mode.CHANGING:
            # Peers forgot nothing, but the view changes we had collected are
            # gone: say ours again and wait for 2f+1 before timing anything.
            replica._send_view_change()
        # Requests learnt by state transfer and not built yet: built if their verdict is still
        # open after two asks, or when their client sends them again, as before the stop.
        for seq, request in learnt:
            if replica.clients.executed.get(request.key, False) is not None or request.operation.change is not None:
                continue  # answered, or a network change: applied where it executed, never built
            answer = replica._standing_answer(request)
            if replica.id not in replica._members_at(seq):
                continue  # ordered where this node was no member: it builds none of those
            builders = replica.result_votes.chosen.get(request.key, ())
            if answer is None and builders and replica.id not in builders:
                waiting = replica.standby.wait(seq, request, builders)
                if request.key in replica.result_votes.decided:
                    waiting.decided = True
                elif any(replica.result_votes.has_vote(request.key, node) for node in builders):
                    waiting.first_vote_at = now  # the wait for the others starts again
            elif answer is None:
                replica.transfer.learnt(seq, request)
            else:  # a store from before such requests were answered as they executed
                replica._answer(seq, request, answer)
        # Peers may have moved on while we were down: ask them once at start, and
        # ask for the votes of every build whose verdict we do not know yet.
        replica.catch_up.ask_at_once = True
        for key in list(replica.result_votes.votes):
            replica.result_votes.expect(key, now)
        replica._execute_ready()
        replica._check_invariants()
        return replica

    def builds_to_rerun(self, unfinished: list[tuple[int, Request]]) -> list[OrderedBuild]:
        """Of the builds a killed process left unfinished, those this replica still owes a reply
        and must build again (`_ordered`). One whose cancel executed before the stop is answered
        `cancelled` now, never run again (nor is a cancel a store from before replicated cancels kept)."""
        rerun = []
        for seq, request in unfinished:
            if self.clients.executed.get(request.key, False) is not None or request.operation.change is not None:
                continue
            if self.id not in self._members_at(seq):
                # Ordered where this node was no member: it owes no reply, and builds nothing (what
                # the order answered there, a duplicate of a delivery say, has no reply stored).
                self.clients.executed[request.key] = True
                continue
            answer = self._standing_answer(request)
            if answer is None:
                rerun.append(self._ordered(seq, request))
            else:
                self._answer(seq, request, answer)
        return rerun

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
        assert self.mode is Mode.CHANGING or self.next_seq >= self.views.stable_seq or not self.is_primary
        self.views.check_invariants()
        self.transfer.check_invariants()
        self.cancels.check_invariants()
        self.deliveries.check_invariants()


def _describe(message: Message) -> str:
    parts = [message.TYPE]
    for name in ("view", "seq", "sender", "client", "timestamp"):
        if hasattr(message, name):
            parts.append(f"{name}={getattr(message, name)}")
    return " ".join(parts)