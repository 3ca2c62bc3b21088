"""The state-transfer exchange between replicas (OSDI'99 §4.3, §5.3.2): the STATUS a
quiet node says, the FETCH a node that is behind sends, the STATE answer to it, and the
checks a STATE's proof, entries and certificates pass before they are adopted.

It owns the evidence of being behind (`pbft.catchup`), what is served and adopted
(`pbft.transfer`) and which network each peer says it runs (`pbft.networks.NetworkClaims`),
and reads the parts it decides on: the checkpoints, the epochs, the view, the log and the
network document. It never moves the replica's core: it decides, builds the messages and
returns the effects, and the replica executes what is adopted, makes checkpoints stable
and runs what became ready (`pbft.replica`), so the order of effects stays the replica's.

The authenticator and the replica's position (its clock, how far it executed, its state
digest) come with each call, not at construction: they change under it (a node's key can be
replaced, `pbft.epochs`), and a value read when asked cannot go stale.
"""

from __future__ import annotations

import logging
from typing import Iterable

from pbft.authenticator import Authenticator
from pbft.catchup import CatchUp
from pbft.checkpoints import Checkpoints
from pbft.effects import Broadcast, Effect, SendTo, Store
from pbft.epochs import Epochs
from pbft.ledger import LedgerReader
from pbft.message_log import MessageLog
from pbft.messages import CommittedCertificate, Fetch, LedgerEntry, StateTransfer, Status, ViewChange, signed
from pbft.networks import NetworkClaims, NetworkState
from pbft.slot import ReplicaSettings
from pbft.transfer import LedgerTransfer
from pbft.viewchange import checkpoint_proof_problem, committed_certificate_problem
from pbft.views import Mode, Views

logger = logging.getLogger(__name__)


class StateSync:
    def __init__(
        self, settings: ReplicaSettings, checkpoints: Checkpoints, epochs: Epochs, views: Views, log: MessageLog,
        network: NetworkState,
    ) -> None:
        self.id = settings.node_id
        self.status_interval_s = settings.status_interval_s
        self.log_window = settings.log_window
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.views = views
        self.log = log
        self.network = network
        # What peers vouch for beyond our state, and when to ask them.
        self.catch_up = CatchUp(settings.f, settings.fetch_interval_s)
        # What we serve of our ledger, and what we adopted of peers' without building it.
        self.transfer = LedgerTransfer(settings.fetch_interval_s, settings.transfer_chunk, settings.transfer_bytes)
        # Which network document each peer says it runs: those that run another are named.
        self.networks = NetworkClaims()

    @property
    def epoch(self) -> int:
        return self.epochs.current.start

    # --- asking -----------------------------------------------------------

    def asks(self, auth: Authenticator, now: float, last_executed: int) -> list[Effect]:
        """Ask peers for what we missed, once trusted evidence has shown us behind for a while."""
        if not self.catch_up.should_ask(now, last_executed, self.views.view):
            return []
        logger.warning(
            "node=%d view=%d phase=fetch from=%d vouched_seq=%d vouched_view=%d",
            self.id, self.views.view, last_executed + 1, self.catch_up.target_seq(), self.catch_up.target_view(),
        )
        return [Broadcast(self.fetch(auth, last_executed))]

    def ask_next(self, sender: int, auth: Authenticator, last_executed: int) -> list[Effect]:
        """After a chunk of several: ask the node that sent it for the next one at once."""
        if self.catch_up.target_seq() > last_executed:
            return [SendTo(sender, self.fetch(auth, last_executed))]
        return []

    def fetch(self, auth: Authenticator, last_executed: int) -> Fetch:
        # Waiting for the checkpoint that begins the next epoch, ask for the chunk that ends there.
        from_seq = self.epochs.pending.start if self.epochs.pending is not None else last_executed + 1
        return signed(Fetch(from_seq, self.views.view, self.id, epoch=self.epoch), auth.sign)

    def announcements(self, auth: Authenticator, now: float, last_executed: int) -> list[Effect]:
        """Idle for a while, say where we are, and say again our CHECKPOINTs that are not
        stable yet: ones lost in a partition would otherwise hold the window shut for good
        (a primary at H issues nothing, so nothing executes and nobody checkpoints again)."""
        if self.views.mode is Mode.CHANGING or not self.catch_up.should_announce(now, self.status_interval_s):
            return []
        status = signed(Status(self.views.view, last_executed, self.id, network=self.network.digest, epoch=self.epoch),
                        auth.sign)
        effects: list[Effect] = [Broadcast(status)]
        for seq in sorted(self.checkpoints.own):
            own = self.checkpoints.votes.get(seq, {}).get(self.id)
            if seq > self.checkpoints.stable_seq and own is not None:
                effects.append(Broadcast(own))
        return effects

    # --- claims -----------------------------------------------------------

    def status_claims(self, message: Status, last_executed: int) -> None:
        """A peer says where it is (signature checked): a claim like any other, believed once f+1 make it."""
        self.claim_network(message.sender, message.network, message.last_executed, last_executed)
        if message.epoch == self.epoch:  # views count from 0 in each epoch
            self.catch_up.claim_view(message.sender, message.view)
        self.catch_up.claim_seq(message.sender, message.last_executed, executed=True)

    def claim_network(self, sender: int, network: str, seq: int, last_executed: int) -> None:
        """`sender` signed that it ran the document `network` after executing `seq`."""
        ours = self.network.digest_at(seq, last_executed)
        if self.networks.claim(sender, network, ours):
            logger.warning("node=%d view=%d node %d runs another network configuration: %s, this node %s",
                           self.id, self.views.view, sender, network[:16] or "none", (ours or "")[:16] or "none")

    # --- serving ----------------------------------------------------------

    def fetch_problem(self, message: Fetch, now: float, last_executed: int) -> str | None:
        """Why a FETCH (signature checked) is not answered now, or None: it is served."""
        # Answering reads the ledger: rate-limited per peer (`pbft.transfer`).
        newer_view = (message.epoch == self.epoch and message.view < self.views.view
                      and self.views.last_new_view is not None)
        problem = self.transfer.fetch_problem(message.sender, message.from_seq, last_executed, newer_view, now)
        return None if problem is None else f"ignore_fetch_{problem}"

    def answer(self, fetch: Fetch, ledger: LedgerReader, auth: Authenticator, now: float,
               last_executed: int) -> StateTransfer:
        """One chunk of the ledger from `fetch.from_seq`, ending at a stable checkpoint with its
        proof; the chunk that reaches h also carries committed certificates for what this
        replica executed above h."""
        low_watermark = self.checkpoints.stable_seq
        end = self.transfer.chunk_end(fetch.from_seq, low_watermark, ledger)
        # A chunk ends at an epoch's start: its proof is the old members', which the asker checks
        # with the members it knows; past it, the new ones sign (`pbft.epochs`).
        boundary = self.epochs.boundary_within(fetch.from_seq, end)
        if boundary is not None:
            end = boundary
        end, entries = self.transfer.entries_to(fetch.from_seq, end, ledger)
        # What the answer covers: up to its checkpoint, or with the certificates of the last
        # chunk everything we executed (see fetch_problem).
        self.transfer.answered(fetch.sender, end if end < low_watermark else last_executed, now)
        proof = self.checkpoints.stable_proof if end == low_watermark else ledger.stable_proof(end)
        assert proof is not None, "the store lists a proof it cannot return"
        certificates = []
        if end == low_watermark:
            for seq in range(max(fetch.from_seq, low_watermark + 1), last_executed + 1):
                certificate = self.log.committed_certificate(seq)
                if certificate is None:
                    break
                certificates.append(certificate)
        message = StateTransfer(
            end,
            proof,
            tuple(entries),
            tuple(certificates),
            self.views.last_new_view if fetch.epoch == self.epoch and fetch.view < self.views.view else None,
            self.id,
        )
        return signed(message, auth.sign)

    # --- adopting ---------------------------------------------------------

    def _proof_problem(self, message: StateTransfer | ViewChange, auth: Authenticator) -> str | None:
        return checkpoint_proof_problem(message.checkpoint_proof, message.stable_seq,
                                        self.epochs.members_at(message.stable_seq), auth)

    def vouched_entries(
        self, message: StateTransfer, auth: Authenticator, last_executed: int, state_digest: str
    ) -> tuple[str | None, list[LedgerEntry]]:
        """The batches we missed up to the checkpoint a STATE's proof vouches for (none if we
        executed that far), to be taken without running their builds; or why not."""
        problem = self._proof_problem(message, auth)
        if problem is not None:
            return f"ignore_state_{problem}", []
        if message.stable_seq <= last_executed:
            return None, []
        self.catch_up.proven(message.stable_seq)
        problem, entries = self.transfer.entries_problem(
            message.entries, last_executed, state_digest, message.stable_seq,
            message.checkpoint_proof[0].state_digest,
        )
        return (None if problem is None else f"ignore_state_{problem}"), entries

    def adopt_proof(self, message: StateTransfer | ViewChange,
                    reached: tuple[str, tuple[int, str]] | None = None) -> list[Effect]:
        """Take the checked proof of `message.stable_seq`: the checkpoint we reached there by
        adopting the entries up to it (`reached`: our state digest and verdict log head there), or
        executed ourselves but missed the CHECKPOINTs that make it stable, so that our window could
        not move. The replica then sees whether it became stable."""
        if reached is not None:
            (state_digest, (log_size, log_root)) = reached
            self.checkpoints.computed(message.stable_seq, (state_digest, self.network.digest, log_size, log_root))
        self.checkpoints.adopt_proof(message.stable_seq, message.checkpoint_proof)
        return [Store(checkpoint) for checkpoint in message.checkpoint_proof]

    def epoch_proof(self, message: ViewChange, auth: Authenticator) -> list[Effect] | None:
        """The proof a VIEW-CHANGE of the epoch we wait to begin carries of the checkpoint that
        begins it, signed by the old members, taken (None: it is no such proof, or not one we
        can take). The CHECKPOINTs we lacked may be lost for good (the others began the epoch
        and vote no more there), and views of the old epoch and of the new one never meet. Its
        sender may be unknown to us (a node that joins there): the proof speaks for itself."""
        pending = self.epochs.pending
        if pending is None or message.epoch != pending.start or message.stable_seq != pending.start:
            return None
        if message.stable_seq not in self.checkpoints.own or message.stable_seq <= self.checkpoints.stable_seq:
            return None  # not executed here yet: the others' state transfer brings it
        if self._proof_problem(message, auth) is not None:
            return None
        return self.adopt_proof(message)

    def adopt_certificates(
        self, certificates: Iterable[CommittedCertificate], auth: Authenticator, last_executed: int
    ) -> tuple[str | None, list[Effect]]:
        """Put the committed certificates of a STATE into the log window, each checked, up to the
        first that fails (why, or None), with what to store of those taken."""
        effects: list[Effect] = []
        low_watermark = self.checkpoints.stable_seq
        for cert in certificates:
            seq = cert.preprepare.seq
            if seq <= last_executed or not low_watermark < seq <= low_watermark + self.log_window:
                continue
            problem = committed_certificate_problem(cert, self.epochs.members, auth, self.epoch)
            if problem is not None:
                return f"ignore_state_{problem}", effects
            slot = self.log.slot(seq)
            if not slot.committed:
                # 2f+1 commits prove the decision at seq, whatever view we are in now.
                slot.preprepare = cert.preprepare
                slot.commits = {commit.sender: commit for commit in cert.commits}
                slot.prepared = slot.committed = True
                effects.append(Store(cert.preprepare))
                effects.extend(Store(commit) for commit in cert.commits)
        return None, effects
