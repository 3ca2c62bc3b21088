"""Admission: the checks a message of the three phases, or any signed message, passes
before the replica takes it (OSDI'99 §4.2).

A vote is taken only if it is of the epoch we work in (`pbft.epochs`), signed by a member
that names itself as its sender, of our view or a later one, and within the window; one of
a view we have not entered yet, or just above the window, is kept for later in a bounded
per-sender buffer, so that one faulty node's flood cannot push out anybody else's. Each
check returns why a message is dropped (`ignore_<message>_<reason>`), or None.

This part owns those buffers (`future`) and reads what the checks depend on: the
authenticator, the epochs, where this node sits in the view (`pbft.views`) and h
(`pbft.checkpoints`). It writes only the claims of where a sender is that every signed
vote makes (`pbft.catchup`). It is handed those, not the replica, and knows the other
parts only by the few things it reads of them (the protocols below), so what admission
reads and writes is all here and no part reaches another.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from pbft.authenticator import Authenticator
from pbft.epochs import Epochs
from pbft.messages import (
    MAX_BATCH_BYTES, MAX_REQUEST_BYTES, Commit, Message, PrePrepare, Prepare, batch_bytes, batch_digest,
)
from pbft.seat import Seat, keep_per_sender
from pbft.slot import Slot


class Window(Protocol):
    """h and the window's length (`pbft.checkpoints.Checkpoints` is one)."""

    @property
    def stable_seq(self) -> int: ...

    @property
    def log_window(self) -> int: ...


class Claims(Protocol):
    """Where senders say they are (`pbft.catchup.CatchUp` is one)."""

    def claim_view(self, sender: int, view: int) -> None: ...

    def claim_seq(self, sender: int, seq: int, *, executed: bool) -> None: ...


class Relaying(Protocol):
    """Whether votes go to the primary, and are being taken in from a relay (`pbft.relay.VoteRelay` is one)."""

    @property
    def taking_in(self) -> bool: ...

    def to_primary(self, is_primary: bool) -> bool: ...


class Admission:
    def __init__(
        self, auth: Authenticator, epochs: Epochs, views: Seat, checkpoints: Window, catch_up: Claims,
        per_sender_buffer: int,
    ) -> None:
        self.auth = auth
        self.epochs = epochs
        self.views = views
        self.checkpoints = checkpoints
        self.catch_up = catch_up
        self.per_sender_buffer = per_sender_buffer
        # Messages of views not entered yet, or just above the window, or of the epoch about
        # to begin: kept per sender until `ready` hands them back.
        self.future: dict[int, deque[Message]] = {}

    @property
    def low_watermark(self) -> int:
        return self.checkpoints.stable_seq

    @property
    def high_watermark(self) -> int:
        return self.checkpoints.stable_seq + self.checkpoints.log_window

    def moves_nothing(self, vote: Prepare | Commit, slot: Slot | None, relay: Relaying) -> bool:
        """Whether `vote` is of our view for a slot already past its phase: a PREPARE once
        the slot prepared, a COMMIT once it committed-local. Such a vote can change nothing
        here (the votes that moved the slot are kept), so it is neither checked nor kept:
        at n = 16 that spares each node a few signature checks per request. A backup of a
        relaying network still takes a vote sent straight to it, which says that its
        sender gave up waiting for the relay (`VoteRelay.joined_all_to_all`)."""
        if vote.view != self.views.view or self.views.changing:
            return False
        if relay.to_primary(self.views.is_primary) and not relay.taking_in:
            return False
        if slot is None or slot.preprepare is None:
            return False
        return slot.committed if isinstance(vote, Commit) else slot.prepared

    def check_vote(self, kind: str, message: Prepare | Commit) -> str | None:
        """Why a vote is not one to count now ("" for one kept for the epoch about to begin), or None."""
        epoch_problem = self.epoch_problem(kind, message)
        if epoch_problem is not None:
            return epoch_problem
        return self.node_signature_problem(message) or self.view_and_window_problem(kind, message)

    def epoch_problem(self, kind: str, message: PrePrepare | Prepare | Commit) -> str | None:
        """Why a message of the three phases is not of the epoch we work in (`pbft.epochs`), or
        None; "" for one of the epoch about to begin, kept for it once its members signed it."""
        pending = self.epochs.pending
        epoch = self.epochs.current.start
        if message.epoch == epoch:
            # (One at or below the epoch's start is below the window: h is at least the start.)
            if pending is not None and message.seq > pending.start:
                return f"ignore_{kind}_after_membership_change"
            return None
        if message.epoch < epoch:
            return f"ignore_{kind}_old_epoch"
        if pending is None or message.epoch != pending.start or message.seq <= pending.start:
            return f"ignore_{kind}_future_epoch"
        if pending.members.signature_problem(message, self.auth) is not None:
            return f"ignore_{kind}_future_epoch_bad_signature"
        self._keep(message)
        return ""

    def node_signature_problem(self, message: Message) -> str | None:
        """Why `message` is not signed by the configured node it names as sender, or None."""
        problem = self.epochs.members.signature_problem(message, self.auth)
        return None if problem is None else f"ignore_{message.TYPE}_{problem}"

    def past_member_signature_problem(self, message: Message) -> str | None:
        """As `node_signature_problem`, but the sender may be a member of an epoch this node
        still keeps (`pbft.epochs.MAX_PAST`) rather than of the current one."""
        problem = self.node_signature_problem(message)
        if problem is None or not problem.endswith("_unknown_sender"):
            return problem
        for epoch in reversed(self.epochs.past):
            if message.sender in epoch.members.key_of:
                found = epoch.members.signature_problem(message, self.auth)
                return None if found is None else f"ignore_{message.TYPE}_{found}"
        return problem

    def batch_problem(self, message: PrePrepare) -> str | None:
        """Why a PRE-PREPARE's batch is not one an honest primary makes, or None: its digest, a
        request twice, more than MAX_BATCH_BYTES or a request over MAX_REQUEST_BYTES (a faulty
        primary's padding, which every VIEW-CHANGE of the window would carry: `pbft.messages`),
        or a request its client did not sign."""
        batch = message.batch
        if message.digest != batch_digest(batch, message.verdicts):
            return "ignore_preprepare_wrong_digest"
        if len({request.key for request in batch}) != len(batch):
            return "ignore_preprepare_request_twice"
        if batch_bytes(batch, message.verdicts) > MAX_BATCH_BYTES:
            return "ignore_preprepare_batch_too_large"
        for request in batch:
            if request.size > MAX_REQUEST_BYTES:
                return "ignore_preprepare_request_too_large"
            if not self.auth.verify_client(request.client, request.payload(), request.sig):
                return "ignore_preprepare_bad_request_signature"
        return None

    def view_and_window_problem(self, kind: str, message: PrePrepare | Prepare | Commit) -> str | None:
        if message.view < self.views.view:
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
        if not self.low_watermark < message.seq <= self.high_watermark + self.checkpoints.log_window:
            return f"ignore_{kind}_out_of_window"
        return None

    def buffer_if_future(self, message: PrePrepare | Prepare | Commit) -> bool:
        """Keep a message of a view this replica has not entered yet, or just above its
        window, in a bounded per-sender buffer; `ready` hands it back in time."""
        if self.views.not_entered(message.view) or message.seq > self.high_watermark:
            self._keep(message)
            return True
        return False

    def ready(self) -> list[Message]:
        """Take back the buffered messages whose view and window have come, sender by
        sender, and drop those now stale; the rest stay."""
        epoch, view = self.epochs.current.start, self.views.view
        ready = []
        for sender, buffer in self.future.items():
            kept = deque(maxlen=buffer.maxlen)
            for message in buffer:
                if message.epoch > epoch:  # of the epoch about to begin (`epoch_problem`)
                    kept.append(message)
                    continue
                if message.epoch < epoch or message.view < view or message.seq <= self.low_watermark:
                    continue
                (kept if self.views.not_entered(message.view) or message.seq > self.high_watermark else ready).append(message)
            self.future[sender] = kept
        return ready

    def _keep(self, message: Message) -> None:
        keep_per_sender(self.future, message.sender, message, self.per_sender_buffer)
