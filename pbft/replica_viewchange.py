"""View changes (OSDI'99 §4.4, §4.5.2): timers, VIEW-CHANGE, NEW-VIEW, and entering a view."""

from __future__ import annotations

import logging

from pbft.effects import Broadcast, SendTo, Store
from pbft.messages import (
    NewView,
    PrePrepare,
    ViewChange,
    batch_digest,
    signed,
)
from pbft.quorum import commit_quorum, reply_quorum
from pbft.viewchange import (
    NewViewPlan,
    plan_new_view,
    view_change_problem,
)

logger = logging.getLogger(__name__)


class ViewChanges:
    """Part of `pbft.replica.Replica`; the state it uses is set up there."""

    def _timeout_s(self) -> float:
        return self.settings.view_change_timeout_s * 2 ** min(self.view_changes_in_a_row, 10)

    def _start_timer(self) -> None:
        """Time the oldest request we wait for (or, changing views, the wait for NEW-VIEW)."""
        self.timer_deadline = self.now + self._timeout_s()
        self.timer_request = next(iter(self.clients.waiting), None)

    def _restart_timer_after_progress(self) -> None:
        """A batch executed. The timer runs for one request until this backup no longer
        waits for it, and is then restarted if others are still waiting (§4.4): progress
        on other requests proves nothing about that one, or a primary could leave one
        client's requests out for ever while it orders everybody else's. Progress does
        prove the view works, so the doubling starts over. Batches learnt by state
        transfer during a view change prove nothing about the next view."""
        if self.changing_view:
            return
        self.view_changes_in_a_row = 0
        if self.timer_deadline is not None and self.timer_request in self.clients.waiting:
            return
        self.timer_deadline = self.timer_request = None
        if self.clients.waiting and not self.is_primary:
            self._start_timer()

    def _timer_expired(self) -> None:
        """The request we wait for did not execute in time: suspect the primary (§4.4), unless
        f+1 nodes show that the stall is ours. A node that merely lags behind peers that
        went on (or that missed the NEW-VIEW of a view they are working in) catches up
        instead; a view change it started alone would leave it out of the network."""
        if self.catch_up.behind(self.last_executed) or (self.changing_view and self.catch_up.target_view() >= self.view):
            logger.warning("node=%d view=%d timer expired while behind its peers: catching up", self.id, self.view)
            self._start_timer()
            if self.changing_view:
                self._send_view_change()  # peers in this view answer with its NEW-VIEW
            return
        logger.warning("node=%d view=%d timer expired", self.id, self.view)
        self._start_view_change(self.view + 1)

    def _start_view_change(self, view: int) -> None:
        assert self.would_move(view)
        self.view = view
        self.changing_view = True
        self.view_changes_in_a_row += 1
        self.timer_deadline = self.timer_request = None
        self.clients.unqueue_all()
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
                self.log.prepared_above(self.low_watermark),
                self.id,
            ),
            self.auth.sign,
        )
        self.view_changes.keep(message)
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
            and len(self.view_changes.for_view(self.view)) >= commit_quorum(self.f)
        ):
            self._start_timer()

    def _on_view_change(self, message: ViewChange) -> str | None:
        if message.view == self.view and not self.changing_view:
            return self._serve_new_view(message)
        if message.view < self.view:
            return "ignore_view-change_stale"
        superseded = self.view_changes.supersedes(message)
        if superseded is not None:
            return f"ignore_view-change_{superseded}"
        problem = view_change_problem(message, self.members, self.auth)
        if problem is not None:
            return f"ignore_view-change_{problem}"
        # A verified 2f+1 checkpoint proof: we may be behind it.
        self.catch_up.proven(message.stable_seq)
        self.view_changes.keep(message)
        self._maybe_start_new_view_timer()
        # f+1 nodes asking for later views include an honest one: join the
        # smallest of those views rather than wait for our own timer (§4.5.2).
        later = [view for view in self.view_changes.views_of_others(self.id) if self.would_move(view)]
        if len(later) >= reply_quorum(self.f):
            self._start_view_change(min(later))
        self._maybe_send_new_view(message.view)
        return None

    def _serve_new_view(self, message: ViewChange) -> str | None:
        """A node still asks for the view we are in: it missed the NEW-VIEW, so send it again,
        at most once per view-change period per node (it repeats its VIEW-CHANGE that often)."""
        new_view = self.last_new_view
        if new_view is None or new_view.view != self.view:
            return "ignore_view-change_stale"
        reason = self._node_signature_problem(message)
        if reason is not None:
            return reason
        if self._served_recently(self.new_view_served_at, message.sender, self.settings.view_change_timeout_s / 2):
            return "ignore_view-change_new_view_sent_recently"
        self._outbox.append(SendTo(message.sender, new_view))
        return None

    def _maybe_send_new_view(self, view: int) -> None:
        """As primary of `view`, announce it once 2f+1 view changes (ours included) are in."""
        votes = self.view_changes.for_view(view)
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
        if not self.not_entered(message.view):
            return "ignore_new-view_stale"
        if message.sender != self.primary(message.view):
            return "ignore_new-view_not_from_primary"
        if not self.members.signed_by_member(message, self.auth):
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
            if not self.members.signed_by_member(pp, self.auth):
                return "ignore_new-view_bad_preprepare_signature"
        self._enter_view(message, plan)
        return None

    def _enter_view(self, new_view: NewView, plan: NewViewPlan) -> None:
        view, preprepares = new_view.view, new_view.preprepares
        self.last_new_view = new_view
        self._outbox.append(Store(new_view))
        self.view = view
        self.changing_view = False
        self.timer_deadline = self.timer_request = None
        self.clients.forwarded.clear()
        self.view_changes.entered(view)
        self._adopt_checkpoint(plan)
        self.catch_up.proven(plan.stable_seq)
        self.view_stable_seq = plan.stable_seq
        self.log.new_view()
        # Never issue at or below the view's stable checkpoint, even if we are behind it.
        self.next_seq = max([pp.seq for pp in preprepares] + [self.low_watermark, plan.stable_seq])
        logger.warning(
            "node=%d view=%d phase=new-view primary=%d reissued=%d",
            self.id, view, self.primary(), len(preprepares),
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

