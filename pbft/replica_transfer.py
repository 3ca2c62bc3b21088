"""State transfer (OSDI'99 §4.3, §5.3.2): asking peers for what a lagging replica missed,
answering them, and adopting only what 2f+1 signatures prove."""

from __future__ import annotations

import logging

from pbft.effects import Broadcast, SendTo, ServeFetch, Store
from pbft.encoding import digest
from pbft.ledger import LedgerReader
from pbft.messages import (
    Fetch,
    StateTransfer,
    Status,
    batch_digest,
    signed,
)
from pbft.viewchange import (
    checkpoint_proof_problem,
    committed_certificate_problem,
)

logger = logging.getLogger(__name__)


class LedgerCatchUp:
    """Part of `pbft.replica.Replica`; the state it uses is set up there."""

    def _maybe_fetch(self) -> None:
        """Ask peers for what we missed, once trusted evidence has shown us behind for a while."""
        if not self.catch_up.should_ask(self.now, self.last_executed, self.view):
            return
        logger.warning(
            "node=%d view=%d phase=fetch from=%d vouched_seq=%d vouched_view=%d",
            self.id, self.view, self.last_executed + 1, self.catch_up.target_seq(), self.catch_up.target_view(),
        )
        self._outbox.append(Broadcast(self._fetch()))

    def _maybe_announce(self) -> None:
        """Idle for a while, say where we are, and say again our CHECKPOINTs that are not
        stable yet: ones lost in a partition would otherwise hold the window shut for good
        (a primary at H issues nothing, so nothing executes and nobody checkpoints again)."""
        if self.changing_view or not self.catch_up.should_announce(self.now, self.settings.status_interval_s):
            return
        status = signed(Status(self.view, self.last_executed, self.id), self.auth.sign)
        self._outbox.append(Broadcast(status))
        for seq in sorted(self.checkpoints.own):
            own = self.checkpoints.votes.get(seq, {}).get(self.id)
            if seq > self.low_watermark and own is not None:
                self._outbox.append(Broadcast(own))

    def _on_status(self, message: Status) -> str | None:
        """A peer says where it is: a claim like any other, believed once f+1 make it."""
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        self.catch_up.claim_view(message.sender, message.view)
        self.catch_up.claim_seq(message.sender, message.last_executed, executed=True)
        return None

    def _fetch(self) -> Fetch:
        return signed(Fetch(self.last_executed + 1, self.view, self.id), self.auth.sign)

    def _on_fetch(self, message: Fetch) -> str | None:
        if message.sender == self.id:
            return "ignore_fetch_unknown_sender"
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        newer_view = message.view < self.view and self.last_new_view is not None
        if message.from_seq > self.last_executed and not newer_view:
            return "ignore_fetch_nothing_newer"
        # Answering reads the ledger: one peer is answered once per half interval, but for
        # its ask for the chunk after the last one it got, answered at once. A faulty peer
        # that raises from_seq by one with each ask gets no more than an honest laggard.
        served_to, served_at = self.fetch_served.get(message.sender, (0, float("-inf")))
        next_chunk = served_to < message.from_seq <= self.last_executed
        if not next_chunk and self.now < served_at + self.settings.fetch_interval_s / 2:
            return "ignore_fetch_too_soon"
        self.fetch_served[message.sender] = (served_to, self.now)
        self._outbox.append(ServeFetch(message))
        return None

    def answer_fetch(self, fetch: Fetch, ledger: LedgerReader) -> None:
        """Send `fetch.sender` one chunk of the ledger from `fetch.from_seq`, ending at a stable
        checkpoint with its proof; the chunk that reaches h also carries committed
        certificates for what this replica executed above h."""
        end = self._chunk_end(fetch.from_seq, ledger)
        # What the answer covers: up to its checkpoint, or with the certificates of the last
        # chunk everything we executed (see _on_fetch).
        self.fetch_served[fetch.sender] = (end if end < self.low_watermark else self.last_executed, self.now)
        proof = self.stable_proof if end == self.low_watermark else ledger.stable_proof(end)
        assert proof is not None, "the store lists a proof it cannot return"
        certificates = []
        if end == self.low_watermark:
            for seq in range(max(fetch.from_seq, self.low_watermark + 1), self.last_executed + 1):
                certificate = self.log.committed_certificate(seq)
                if certificate is None:
                    break
                certificates.append(certificate)
        message = StateTransfer(
            end,
            proof,
            tuple(ledger.ledger_entries(fetch.from_seq, end)) if fetch.from_seq <= end else (),
            tuple(certificates),
            self.last_new_view if fetch.view < self.view else None,
            self.id,
        )
        self._outbox.append(SendTo(fetch.sender, signed(message, self.auth.sign)))

    def _chunk_end(self, from_seq: int, ledger: LedgerReader) -> int:
        """The furthest kept stable checkpoint within `transfer_chunk` batches of `from_seq`
        (or the nearest one beyond, if none is that close); h when it is close enough."""
        if from_seq > self.low_watermark:
            return self.low_watermark
        kept = ledger.stable_proof_seqs(from_seq, self.low_watermark - 1) + [self.low_watermark]
        close = [seq for seq in kept if seq - from_seq < self.settings.transfer_chunk]
        return close[-1] if close else kept[0]

    def _on_state_transfer(self, message: StateTransfer) -> str | None:
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        adopted = message.stable_seq > self.last_executed
        if adopted:
            reason = self._adopt_ledger(message)
            if reason is not None:
                return reason
        elif message.stable_seq > self.low_watermark:
            reason = self._adopt_proof(message)
            if reason is not None:
                return reason
        new_view = message.new_view
        if new_view is not None and self.not_entered(new_view.view):
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
            slot = self.log.slot(seq)
            if not slot.committed:
                # 2f+1 commits prove the decision at seq, whatever view we are in now.
                slot.preprepare = cert.preprepare
                slot.commits = {commit.sender: commit for commit in cert.commits}
                slot.prepared = slot.committed = True
                self._outbox.append(Store(cert.preprepare))
                self._outbox.extend(Store(commit) for commit in cert.commits)
        self._execute_ready()
        if adopted and self.catch_up.target_seq() > self.last_executed:
            # One chunk of several: ask the node that sent it for the next one at once.
            self._outbox.append(SendTo(message.sender, self._fetch()))
        return None

    def _adopt_proof(self, message: StateTransfer) -> str | None:
        """We executed up to a checkpoint but missed the CHECKPOINTs that make it stable, so
        our window cannot move: the proof a peer sent does it, if it vouches for our digest."""
        problem = checkpoint_proof_problem(message.checkpoint_proof, message.stable_seq, self.members, self.auth)
        if problem is not None:
            return f"ignore_state_{problem}"
        self.checkpoints.adopt_proof(message.stable_seq, message.checkpoint_proof)
        self._outbox.extend(Store(checkpoint) for checkpoint in message.checkpoint_proof)
        self._maybe_stable(message.stable_seq)
        return None

    def _adopt_ledger(self, message: StateTransfer) -> str | None:
        """Take the batches up to a stable checkpoint we missed, without running their builds."""
        problem = checkpoint_proof_problem(message.checkpoint_proof, message.stable_seq, self.members, self.auth)
        if problem is not None:
            return f"ignore_state_{problem}"
        self.catch_up.proven(message.stable_seq)
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
        self.checkpoints.computed(seq, self.state_digest)
        self.checkpoints.adopt_proof(seq, message.checkpoint_proof)
        self._outbox.extend(Store(checkpoint) for checkpoint in message.checkpoint_proof)
        self._maybe_stable(seq)
        logger.warning("node=%d view=%d seq=%d phase=state-transfer from=%d", self.id, self.view, seq, message.sender)
        return None

