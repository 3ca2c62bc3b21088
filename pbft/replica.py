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
from typing import Callable, Mapping

from pbft.admission import Admission
from pbft.authenticator import Authenticator
from pbft.checkpoints import Checkpoints
from pbft.clients import ClientTable
from pbft.effects import (
    Broadcast, Effect, Execute, KeepStableProof, KeepVoteHorizon, NetworkChanged, ResendReply, SendTo, ServeFetch, Store,
)
from pbft.durable import DurableState
from pbft.storage import Loaded
from pbft.encoding import digest
from pbft.epochs import Epochs
from pbft.horizon import Horizon, VoteHorizon
from pbft.ledger import LedgerReader
from pbft.message_log import MessageLog
from pbft.networkchange import document_digest
from pbft.networks import NetworkState, applied_reason
from pbft.build import Result
from pbft.messages import (
    MAX_BATCH_BYTES, MAX_REQUEST_BYTES, Checkpoint, Commit, Fetch, Message, NewView, PrePrepare, Prepare, PreparedCertificate, Relay, Request, ResultVote, StateTransfer, Status, VerdictProof, ViewChange, VoteFetch, batch_bytes, batch_digest, describe, signed,
)
from pbft.relay import VoteRelay
from pbft.resend import PrePrepareResend
from pbft.statetransfer import StateSync
from pbft.views import Mode, Views
from pbft.quorum import commit_quorum, matching, prepare_quorum
from pbft.slot import GENESIS_STATE, ReplicaSettings, Slot, vote_digests
from pbft.membership import Membership
from pbft.viewchange import NewViewPlan, carrying_batches_once, new_view_of, plan_new_view
from pbft.changerule import ChangeRule, membership
from pbft.ci.answers import NO_FILES, Answers
from pbft.ci.ordered import OrderedBuild
from pbft.ci.ports import Ports
from pbft.ci.verdicts import Verdicts

logger = logging.getLogger(__name__)


class Replica:
    """One PBFT node: a router over parts that each keep their own state and can be
    read alone (as etcd/raft splits raftLog, tracker and quorum): the message log
    (`pbft.message_log`), checkpoints (`pbft.checkpoints`), view changes
    (`pbft.views`, with the certificates of `pbft.viewchange`), the client table
    (`pbft.clients`), state transfer with its catch-up evidence (`pbft.statetransfer`),
    relayed votes (`pbft.relay`), and the CI's share: the verdicts on builds
    (`pbft.ci.verdicts`) and what this node builds and answers (`pbft.ci.answers`).
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
        self.now = 0.0
        # The members of each stretch of the order (`pbft.epochs`): the current one's sign and count.
        self.epochs = Epochs(membership(self.network.document, settings))
        # Whether a change the order executes applies (`pbft.changerule`), live and on a restart's replay.
        self.changes = ChangeRule(settings, auth.verify_key, self.network, self.epochs, self.check_network)
        self.checkpoints.quorum = self.members.quorum
        # The view, its mode and timer, and the view changes on the way to the next (§4.4).
        self.views = Views(self.id, self.members, settings.view_change_timeout_s)
        self.relay = VoteRelay(settings.relay_votes, settings.relay_fallback_s)
        self.resend = PrePrepareResend()  # as primary: our PRE-PREPAREs that did not commit
        # State transfer (`pbft.statetransfer`): it owns what peers vouch for beyond our state
        # (catch_up), what we serve of our ledger and adopted of theirs unbuilt (transfer), and
        # which network each peer says it runs (networks); the rules here read and feed them too.
        self.sync = StateSync(settings, self.checkpoints, self.epochs, self.views, self.log, self.network)
        self.catch_up, self.transfer, self.networks = self.sync.catch_up, self.sync.transfer, self.sync.networks
        # The checks a message passes before it is taken, and the early ones it keeps (`pbft.admission`).
        self.admission = Admission(self.auth, self.epochs, self.views, self.checkpoints, self.catch_up,
                                   settings.per_sender_buffer)
        # How far our PRE-PREPAREs and PREPAREs may leave unsynced (`pbft.horizon`).
        self.horizon = VoteHorizon()
        self._outbox: list[Effect] = []
        self._replay_due = False  # a view started or the window moved: buffered messages may be ready
        self._entered_view: int | None = None  # the view this run entered by a NEW-VIEW, if any
        self._change_issued_at = 0  # as primary: the last batch issued that holds a network change
        # The CI's share (`pbft.ci`): the verdicts on builds, and what this node builds and answers.
        # They get the parts they read and a few callables (`pbft.ci.ports`), not this replica:
        # how the order is made stays here. `emit` appends to the outbox of the moment, as
        # `take_effects` swaps the list.
        ports = Ports(
            self.id, settings, auth, self.clients, self.transfer, self.network,
            now=lambda: self.now, view=lambda: self.view, emit=lambda effect: self._outbox.append(effect),
            members_at=self._members_at, signature_problem=self.admission.node_signature_problem,
            past_member_signature_problem=self.admission.past_member_signature_problem,
            primary_relays=lambda: self.relaying and self.is_primary,
            queue_for_relay=lambda vote: self._outbox.extend(self.relay.queue_result(vote, self.primary(), self.is_primary)),
        )
        self.verdicts = Verdicts(ports)
        self.answers = Answers(ports, self.verdicts)
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

    def buffered(self, buffers: dict[int, deque]) -> list[Message]:
        """Everything in per-sender buffers such as `future` or `verdicts.early_votes`, sender by sender."""
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
            ResultVote: self.verdicts.on_result_vote,
            VoteFetch: self.verdicts.on_vote_fetch,
            Status: self._on_status,
            Relay: lambda relay: self.relay.take_in(relay, self.views, self.log, self.verdicts.result_votes, self._handle),
        }.get(type(message))
        if handler is None:
            reason = f"ignore_{message.TYPE}_unexpected"
        else:
            reason = handler(message)
        if reason is not None:
            logger.warning("node=%d view=%d dropped %s: %s", self.id, self.view, describe(message), reason)
        return reason

    def tick(self, now: float, unreachable: frozenset[int] = frozenset()) -> None:
        """Advance the clock (and what the links see, `Views.timer_expired`); a backup whose timer expired moves on (§4.4)."""
        self.now, self.views.unreachable = max(self.now, now), unreachable
        if self.views.timer_expired(self.now):
            self._timer_expired()
        elif self.views.resend_due(self.now):
            self._send_view_change()
        else:
            self._maybe_join_lone_view_change()
        self._replay_ready()
        self._outbox.extend(self.relay.flush(self.primary(), self.is_primary))
        self._outbox.extend(self.relay.fall_back(self.slots, self.views, self.now))
        self._outbox.extend(self.resend.due(self.slots, self.views, self.last_executed + 1, self.next_seq, self.now))
        self._outbox.extend(self.sync.asks(self.auth, self.now, self.last_executed))
        if self.is_primary and self.verdicts.log.due(self.now):
            self._issue_preprepares()  # certified verdicts that no batch of requests came to carry
        overdue = self.verdicts.log.overdue(self.now, self.settings.vote_retry_s)  # timed as a request is (§4.4)
        if overdue is not None and self.member and not self.is_primary and not self.views.changing and self.views.timer_deadline is None:
            self.views.start_timer(self.now, overdue)
        self.verdicts.tick()
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
        self.answers.finished(request, result, seq, artifact_files)

    # --- requests (§4.1, §4.2) -----------------------------------------

    def _on_request(self, request: Request) -> str | None:
        if request.size > MAX_REQUEST_BYTES:
            return "ignore_request_too_large"  # the client refuses to sign one (client.verbs.submit)
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
                    self.verdicts.build_learnt(request.key)
                    return None
                standby = self.verdicts.standby
                if request.key in standby and not standby.open(request.key):
                    # Likewise for a build the order gave f+1 others, once its verdict is decided
                    # here: one may have told its peers one result and the client another. (Before
                    # that, a client resends a build that runs long every client_retransmit_s.)
                    self.verdicts.build_standing_by(request.key, "its client sent it again after the verdict")
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
        return any(slot.preprepare is not None and request in slot.preprepare.batch
                   for seq, slot in self.slots.items() if seq > self.last_executed)

    def _issue_preprepares(self) -> None:
        """Assign sequence numbers while the pipeline has room; batch the rest (§4.2)."""
        # A STATE's certificates may be there; a primary that entered its view behind assigned nothing above what it executed.
        self.next_seq = max(self.log.decided_through(self.next_seq), self.last_executed)
        while (
            (self.clients.pending or self.verdicts.log.due(self.now))
            and self.mode is Mode.NORMAL
            and self.epochs.pending is None
            and self.last_executed >= self.views.stable_seq
            and self.last_executed >= self._change_issued_at
            and self.next_seq - self.last_executed < self.settings.pipeline_depth
            and self.next_seq + 1 <= self.high_watermark
            and (room := min(MAX_BATCH_BYTES, self.log.room(self.last_executed, self.settings.window_bytes))) > 0
        ):
            batch = self.clients.next_batch(self.settings.batch_max, room)
            proofs = self.verdicts.log.propose(room - batch_bytes(batch))
            if not batch and not proofs:
                break  # what waits does not fit the window's room (`ReplicaSettings.window_bytes`)
            self.next_seq += 1
            if any(request.operation.change is not None for request in batch):
                # It may change the membership: nothing past it until it executed (`pbft.epochs`).
                self._change_issued_at = self.next_seq
            self._cover_vote(self.next_seq)
            preprepare = signed(
                PrePrepare(self.view, self.next_seq, batch_digest(batch, proofs), self.id, batch, epoch=self.epoch, verdicts=proofs),
                self.auth.sign,
            )
            logger.info("node=%d view=%d seq=%d phase=pre-prepare digest=%s requests=%d verdicts=%d", self.id, self.view,
                        preprepare.seq, preprepare.digest[:8], len(batch), len(proofs))
            self._outbox.append(Broadcast(preprepare))
            self._accept_preprepare(preprepare)
            self.next_seq = self.log.decided_through(self.next_seq)

    # --- three phases (§4.2) ------------------------------------------

    def _on_preprepare(self, message: PrePrepare) -> str | None:
        reason = self.admission.epoch_problem("preprepare", message)
        if reason is not None:
            return reason or None
        if message.sender != self.primary(message.view):
            return "ignore_preprepare_not_from_primary"
        reason = self.admission.node_signature_problem(message) or self.admission.view_and_window_problem("preprepare", message)
        if reason is not None or self.admission.buffer_if_future(message):
            return reason
        reason = self.admission.batch_problem(message)
        if reason is not None:
            return reason
        held = self.slots[message.seq].preprepare if message.seq in self.slots else None
        if held is not None:
            return "ignore_preprepare_conflicting_digest" if held.digest != message.digest else "ignore_preprepare_duplicate"
        if batch_bytes(message.batch, message.verdicts) > self.log.room(self.last_executed, self.settings.window_bytes):
            return "ignore_preprepare_window_bytes"  # (`ReplicaSettings.window_bytes`); the primary resends it
        self._accept_preprepare(message)
        return None

    def _accept_preprepare(self, message: PrePrepare) -> None:
        slot = self.log.empty_slot(message.seq)
        slot.preprepare = message
        self._outbox.append(Store(message))
        if message.verdicts and not self.is_primary and self.views.timer_deadline is None:
            self._start_timer()  # verdicts alone wait for nothing else: a batch lost to a partition must not stall them
        if not self.is_primary and self.member and self._may_vote(message.seq):
            self._cover_vote(message.seq)
            prepare = signed(Prepare(self.view, message.seq, message.digest, self.id, epoch=self.epoch), self.auth.sign)
            slot.prepares[self.id] = prepare
            self._outbox.append(Store(prepare))
            logger.debug("node=%d view=%d seq=%d phase=prepare digest=%s", self.id, self.view, message.seq,
                         message.digest[:8])
            self._outbox.append(self.relay.send(prepare, self.slots, self.views, self.now))
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
        if self.admission.moves_nothing(message, self.slots.get(message.seq), self.relay):
            return None
        reason = self.admission.check_vote("prepare", message)
        if reason is None and message.sender == self.primary(message.view):
            reason = "ignore_prepare_from_primary"
        if reason is not None or self.admission.buffer_if_future(message):
            return reason or None
        return self._record_vote(self.log.slot(message.seq).prepares, "prepare", message)

    def _on_commit(self, message: Commit) -> str | None:
        if self.admission.moves_nothing(message, self.slots.get(message.seq), self.relay):
            return None
        reason = self.admission.check_vote("commit", message)
        if reason is not None or self.admission.buffer_if_future(message):
            return reason or None
        return self._record_vote(self.log.slot(message.seq).commits, "commit", message)

    def _replay_ready(self) -> None:
        """At the end of a step in which a view started or the window moved, take back the
        buffered messages whose view and window have come, and drop those now stale.
        (Doing it within the step would execute batches in the middle of another change.)"""
        if not self._replay_due:
            return
        self._replay_due = False
        for pp in self.log.lacking(self.views.last_new_view, self.view, self.in_window):  # the window reached them
            self._accept_preprepare(pp)
        for message in self.admission.ready():
            self._handle(message)
        self._replay_ready()  # what they did may have moved the window again

    def _record_vote(self, votes: dict, kind: str, message: Prepare | Commit) -> str | None:
        if message.sender in votes:
            if votes[message.sender].digest != message.digest:
                return f"ignore_{kind}_sender_changed_digest"
            # Held already (a primary may relay it to us first, and withhold the slot's
            # commits from its sender alone): its sender still waits for us in this slot.
            self._outbox.extend(self.relay.joined_all_to_all(message, self.slots, self.views))
            return None
        votes[message.sender] = message
        self._outbox.append(Store(message))
        self._outbox.extend(self.relay.joined_all_to_all(message, self.slots, self.views))
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
            logger.debug("node=%d view=%d seq=%d phase=committed digest=%s", self.id, self.view, seq,
                         preprepare.digest[:8])
            self._execute_ready()

    def _commit(self, seq: int, preprepare: PrePrepare, proof: tuple[Prepare, ...]) -> None:
        slot = self.slots[seq]
        commit = signed(Commit(self.view, seq, preprepare.digest, self.id, epoch=self.epoch), self.auth.sign)
        slot.commits[self.id] = commit
        self._outbox.append(Store(commit))
        logger.debug("node=%d view=%d seq=%d phase=commit digest=%s", self.id, self.view, seq, preprepare.digest[:8])
        if self.relaying and self.is_primary:
            # The quorum that prepared us prepares every backup. It leaves before this step
            # is on disk (`pbft.effects.leaves_unsaved`); our commit needs the disk first,
            # and is no backup's to wait for: it rides in the commits' relay.
            self._outbox.append(Broadcast(Relay(proof)))
        else:
            self._outbox.append(self.relay.send(commit, self.slots, self.views, self.now))

    # --- relayed votes (`pbft.relay`) ------------------------------------

    @property
    def relaying(self) -> bool:
        return self.relay.enabled

    # --- execution, in sequence order (§4.2) ---------------------------

    def _execute_ready(self) -> None:
        while True:
            slot = self.slots.get(self.last_executed + 1)
            if slot is None or not slot.committed or self.epochs.pending is not None:
                return
            assert slot.preprepare is not None and self.log.committed_as_proposed(slot.preprepare.seq, commit_quorum(self.members.n, self.f))
            self._append_to_ledger(slot.preprepare.seq, slot.preprepare.digest, slot.preprepare.batch, slot.preprepare.verdicts, build=True)
            if self.is_primary:
                self._issue_preprepares()

    def _append_to_ledger(self, seq: int, batch_id: str, batch: tuple[Request, ...], verdicts: tuple[VerdictProof, ...], *, build: bool) -> None:
        """Execute one batch: the only place last_executed and the state digest move forward one step.
        What it builds, answers and cancels is the CI's (`pbft.ci.answers`): said before the
        batch's Execute effect, carried out after it."""
        assert seq == self.last_executed + 1
        executed = self.answers.execute(seq, batch, build, self._apply_change, verdicts)
        self.last_executed = seq
        self.catch_up.progressed(self.now)
        self.state_digest = digest([self.state_digest, seq, batch_id])
        logger.info("node=%d view=%d seq=%d phase=execute digest=%s builds=%d logged=%d", self.id, self.view, seq,
                    batch_id[:8], len(executed.built), len(executed.leaves))
        network, document = self.network.document_at(seq) or ("", None)
        self._outbox.append(Execute(self.view, seq, batch_id, batch, executed.built, self.state_digest, executed.learnt,
                                    executed.answered, executed.builders, network, document, verdicts, executed.leaves))
        self.answers.answer_executed(seq, batch, executed)
        self.views.progressed(self.now, self.clients.waiting, self.verdicts.log.overdue(self.now, self.settings.vote_retry_s))
        if not batch and executed.leaves:  # verdicts alone, on an idle network: its head is co-signed at once
            self.checkpoints.boundary(seq)
        if self.checkpoints.due(seq):
            self.answers.forget_expired()
            self._take_checkpoint(seq)

    def _apply_change(self, seq: int, request: Request) -> Result:
        """Apply the network change `request` executed at `seq` (`pbft.networks`), or refuse
        it; return the result the order gives it."""
        change = request.operation.change
        assert change is not None
        problem, new_members = self.changes.problem(seq, change)
        if problem is not None:
            logger.warning("node=%d view=%d seq=%d network change refused: %s", self.id, self.view, seq, problem)
            return Result("error", None, None, f"network change refused: {problem}")
        self.changes.apply(seq, change)
        self.checkpoints.boundary(seq)
        if new_members:
            self._pend_epoch(seq)
        logger.warning("node=%d view=%d seq=%d network configuration %s runs from here, signed by %s",
                       self.id, self.view, seq, self.network.digest[:16], ", ".join(self.network.signed_by))
        self._outbox.append(NetworkChanged(seq, self.network.document, self.network.digest))
        return Result("success", 0, None, applied_reason(self.network.digest, seq, self.network.signed_by))

    def _pend_epoch(self, seq: int) -> None:
        """A change of the membership executed at `seq`: the next epoch begins once the
        checkpoint at `seq` is stable here (`pbft.epochs`); nothing above `seq` is ordered
        until then, so what this node held above it goes."""
        self.epochs.pend(seq, self.changes.pending_members())
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
        self.verdicts.log.unpropose()
        self.clients.forwarded.clear()
        self.next_seq = max(self.next_seq if self.next_seq <= start else start, self.last_executed)
        self._entered_view = 0
        self._replay_due = True
        logger.warning("node=%d epoch=%d begins: n=%d f=%d primary=%d%s", self.id, start, members.n, members.f,
                       self.primary(), "" if self.member else " (this node is not a member)")
        if joined and self.member:
            # Votes went to the members only: ask for those of every build it followed without.
            self.verdicts.ask_again(self.now)
        self._hand_over_waiting(())

    # --- checkpoints and garbage collection (§4.3) ---------------------

    def _take_checkpoint(self, seq: int) -> None:
        log_size, log_root = self.verdicts.log.head()
        checkpoint = Checkpoint(seq, self.state_digest, self.id, network=self.network.digest, log_size=log_size, log_root=log_root)
        self.checkpoints.computed(seq, checkpoint.vouches())
        if self.id not in self.epochs.members_at(seq):
            self._maybe_stable(seq)  # a node that is no member of the epoch signs none of its checkpoints
            return
        checkpoint = signed(checkpoint, self.auth.sign)
        self.checkpoints.add(checkpoint, self.last_executed)
        self._outbox.append(Store(checkpoint))
        logger.info("node=%d view=%d seq=%d phase=checkpoint digest=%s", self.id, self.view, seq, self.state_digest[:8])
        self._outbox.append(Broadcast(checkpoint))
        self._maybe_stable(seq)

    def _on_checkpoint(self, message: Checkpoint) -> str | None:
        reason = self.admission.node_signature_problem(message)
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
        self.verdicts.log.unpropose()
        self._send_view_change()
        if self.views.quorum_wants_our_view():
            self._start_timer()
        self._maybe_send_new_view(view)

    def _send_view_change(self) -> None:
        if not self.member:
            return
        message = signed(
            carrying_batches_once(self.view, self.low_watermark, self.stable_proof, self.log.prepared_above(self.low_watermark),
                                  self.id, self.epoch),
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
        if self.views.quorum_wants_our_view():
            self._start_timer()
        join = self.views.view_to_join()
        if join is not None:
            self._start_view_change(join)
        self._maybe_send_new_view(message.view)
        return None

    def _serve_new_view(self, message: ViewChange) -> str | None:
        """A node still asks for the view we are in: it missed the NEW-VIEW, so send it again."""
        reason = self.admission.node_signature_problem(message)
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
            signed(PrePrepare(view, seq, old.digest, self.id, old.batch, epoch=self.epoch, verdicts=old.verdicts), self.auth.sign)
            for seq, old in sorted(plan.batches.items())
        )
        message = signed(new_view_of(view, chosen, preprepares, self.id, self.epoch), self.auth.sign)
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
        self.log.new_view()
        preprepares = new_view.preprepares
        # Never at or below the view's stable checkpoint, nor where the NEW-VIEW reissues; before adopting it, which may issue.
        self.next_seq = max([pp.seq for pp in preprepares] + [self.low_watermark, plan.stable_seq])
        self._adopt_checkpoint(plan)
        self.catch_up.proven(plan.stable_seq)
        logger.warning(
            "node=%d view=%d phase=new-view primary=%d reissued=%d",
            self.id, self.view, self.primary(), len(preprepares),
        )
        for pp in self.log.lacking(new_view, self.view, self.in_window):
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
        reason = self.admission.node_signature_problem(message)
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
        reason = self.admission.node_signature_problem(message)
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
        reason = self.admission.node_signature_problem(message)
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
                self._append_to_ledger(entry.seq, batch_digest(entry.batch, entry.verdicts), entry.batch, entry.verdicts, build=False)
            self._outbox.extend(self.sync.adopt_proof(message, (self.state_digest, self.verdicts.log.head()) if adopted else None))
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
        return DurableState.of(self)

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
        replica, state = self, loaded.state
        messages, changes = loaded.messages, loaded.changes
        replica.changes.replay(changes, state.last_executed, state.low_watermark, replica.checkpoints.boundary)
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
        # Exactly-once: what the ledger executed, built here or learnt, less what expired; the
        # votes on those builds, and the cancels and deliveries the order took (`pbft.ci`).
        replica.answers.restore(loaded)
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
        # Peers may have moved on while we were down: ask them once at start, and ask for the
        # votes of every build whose verdict we do not know yet. Requests learnt by state
        # transfer and not built yet: built if their verdict is still open after two asks, or
        # when their client sends them again, as before the stop.
        replica.catch_up.ask_at_once = True
        replica.answers.restore_learnt(loaded.learnt, now)
        replica._execute_ready()
        replica._check_invariants()
        return replica

    def builds_to_rerun(self, unfinished: list[tuple[int, Request]]) -> list[OrderedBuild]:
        """Of the builds a killed process left unfinished, those this replica still owes a reply
        and must build again (`pbft.ci.answers.Answers.to_rerun`); a network change is no build."""
        return self.answers.to_rerun([(seq, request) for seq, request in unfinished if request.operation.change is None])

    # --- invariants ----------------------------------------------------

    def _check_invariants(self) -> None:
        if not self.settings.check_invariants:
            return
        low, high = self.low_watermark, self.high_watermark
        assert low <= self.last_executed <= high
        slots = self.slots
        # Run after every step over up to log_window slots: bounds from min/max, not a call per slot.
        assert not slots or (low < min(slots) and max(slots) <= high)
        self.log.check_invariants()
        assert self.mode is Mode.CHANGING or self.next_seq >= self.views.stable_seq or not self.is_primary
        self.views.check_invariants()
        self.transfer.check_invariants()
        self.answers.check_invariants()

