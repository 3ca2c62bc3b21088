"""Which view a replica is in, and how it moves to the next (OSDI'99 §4.4, §4.5.2).

This part owns the view, one explicit mode, the view-change timer, each
node's latest VIEW-CHANGE and the NEW-VIEW that started our view. It decides
(is the timer out, is a VIEW-CHANGE worth keeping, do f+1 nodes ask for a
later view, may we announce a new view, is a NEW-VIEW valid) and the replica
carries out what a decision means for the other parts (the message log, the
client table, checkpoints). The evidence checks themselves are the pure
functions of `pbft.viewchange`.

Modes:

- `NORMAL`: working in `view`, whose NEW-VIEW we accepted (or view 0). The
  timer runs for one request a backup waits for (§4.4) until that request
  executes here; progress on other requests proves nothing about that one.
- `CHANGING`: our VIEW-CHANGE for `view` is out and we wait for its NEW-VIEW,
  taking in only checkpoints and view-change traffic. The timer runs only
  once 2f+1 nodes want this view, so a node that alone suspects the primary
  waits for the others instead of racing ahead through views nobody joins.

A node that asks alone for the next view is joined by the others once they
are idle (`Views.lone_view_change`): it could never work in our view again.
"""

from __future__ import annotations

from enum import Enum
from typing import Collection

from pbft.authenticator import Authenticator
from pbft.messages import NewView, ViewChange, batch_digest
from pbft.quorum import reply_quorum
from pbft.membership import Membership
from pbft.viewchange import LatestViewChanges, NewViewPlan, plan_new_view, view_change_problem

Key = tuple[str, int]
MAX_DOUBLINGS = 10  # the timeout stops doubling at T * 2**10


class Mode(Enum):
    NORMAL = "normal"
    CHANGING = "changing"


class Views:
    def __init__(self, me: int, members: Membership, timeout_s: float) -> None:
        self.me = me
        self.members = members
        self.base_timeout_s = timeout_s  # T, doubled for each view change in a row
        self.view = 0
        self.mode = Mode.NORMAL
        self.in_a_row = 0  # view changes since the last batch executed in a working view
        self.timer_deadline: float | None = None
        self.timer_request: Key | None = None  # the waiting request the timer runs for (§4.4)
        # The peers this node's links cannot reach (`pbft.reach`, set at each tick), and the
        # (view, mode) whose timer was cut short for it: once per view, so that a node that
        # finds itself behind and times its catch-up afresh waits the full timeout for it.
        self.unreachable: frozenset[int] = frozenset()
        self.cut_short_in: tuple[int, Mode] | None = None
        self.resend_at = 0.0  # when to say our VIEW-CHANGE again
        # Each node's latest VIEW-CHANGE, ours included: what a new view needs, bounded by n.
        self.latest = LatestViewChanges()
        self.last_new_view: NewView | None = None  # what started our view, for peers left behind
        # The stable checkpoint the current view started from (min-s, §4.4): a primary
        # that has not executed that far yet catches up before it issues anything.
        self.stable_seq = 0
        self.new_view_served_at: dict[int, float] = {}
        self.lone_since: float | None = None  # since when, idle, we hold a peer's lone VIEW-CHANGE
        # The epoch whose views these are (`pbft.epochs`), and the members of the one before,
        # who signed the checkpoint it starts from.
        self.epoch = 0
        self.previous: Membership | None = None

    # --- where we are ---------------------------------------------------

    @property
    def changing(self) -> bool:
        return self.mode is Mode.CHANGING

    def primary(self, view: int | None = None) -> int:
        return self.members.primary(self.view if view is None else view)

    @property
    def is_primary(self) -> bool:
        return self.primary() == self.me

    def not_entered(self, view: int) -> bool:
        """`view` is one we have not entered: a later one, or the one we are changing to."""
        return view > self.view or (view == self.view and self.changing)

    def would_move(self, view: int) -> bool:
        """Changing to `view` would move us on: a later view, or a change away from this one."""
        return view > self.view or (view == self.view and not self.changing)

    # --- the timer ------------------------------------------------------

    def timeout_s(self) -> float:
        return self.base_timeout_s * 2 ** min(self.in_a_row, MAX_DOUBLINGS)

    def start_timer(self, now: float, request: Key | None) -> None:
        self.timer_deadline = now + self.timeout_s()
        self.timer_request = request

    def stop_timer(self) -> None:
        self.timer_deadline = self.timer_request = None

    def timer_expired(self, now: float) -> bool:
        """The timer is out; at once if it runs for a primary the node's links cannot reach
        (`unreachable`, `pbft.reach`), since waiting for it cannot help (once per view)."""
        here = (self.view, self.mode)
        if self.timer_deadline is not None and self.primary() in self.unreachable and self.cut_short_in != here:
            self.cut_short_in = here
            self.timer_deadline = min(self.timer_deadline, now)
        return self.timer_deadline is not None and now >= self.timer_deadline

    def progressed(self, now: float, waiting: Collection[Key], overdue: Key | None = None) -> None:
        """A batch executed in our working view: it proves the view works, so the doubling
        starts over, but it proves nothing about the request the timer runs for, which
        keeps its deadline while we still wait for it, as does a verdict we certified that the
        order has not logged in time (`overdue`). Otherwise a backup times the oldest request
        it waits for. (Batches learnt by state transfer while changing views prove
        nothing about the next view.)"""
        if self.changing:
            return
        self.in_a_row = 0
        timed = self.timer_request
        if self.timer_deadline is not None and (timed in waiting or (overdue is not None and timed == overdue)):
            return
        self.stop_timer()
        if (waiting or overdue is not None) and not self.is_primary:
            self.start_timer(now, next(iter(waiting), overdue))

    # --- changing -------------------------------------------------------

    def move_to(self, view: int) -> None:
        """We ask for `view`: nothing of the old one counts any more."""
        assert self.would_move(view), (self.view, self.mode, view)
        self.view = view
        self.mode = Mode.CHANGING
        self.in_a_row += 1
        self.stop_timer()
        self.lone_since = None

    def said(self, message: ViewChange, now: float) -> None:
        """Our VIEW-CHANGE for the view we are changing to went out; it goes again every T
        while we wait, since a lost or forgotten one (a peer restarted) would stall the change."""
        assert self.changing and message.view == self.view and message.sender == self.me
        self.latest.keep(message)
        self.resend_at = now + self.base_timeout_s

    def resend_due(self, now: float) -> bool:
        return self.changing and now >= self.resend_at

    def quorum_wants_our_view(self) -> bool:
        """2f+1 nodes want the view we are changing to, and nothing times the wait yet."""
        return (
            self.changing
            and self.timer_deadline is None
            and len(self.latest.for_view(self.view)) >= self.members.quorum
        )

    def take_view_change(self, message: ViewChange, auth: Authenticator) -> str | None:
        """Keep a VIEW-CHANGE for a view we have not entered, or say why not."""
        if message.view < self.view:
            return "stale"
        superseded = self.latest.supersedes(message)
        if superseded is not None:
            return superseded
        problem = view_change_problem(message, self.members, auth, self.epoch, self._proof_members(message.stable_seq))
        if problem is not None:
            return problem
        self.latest.keep(message)
        return None

    def _proof_members(self, seq: int) -> Membership:
        """Who signed a checkpoint at `seq`: at the epoch's start, the members of the one before."""
        return self.previous if seq == self.epoch and self.previous is not None else self.members

    def view_to_join(self) -> int | None:
        """f+1 nodes asking for later views include an honest one: the smallest of those
        views, to join rather than wait for our own timer (§4.5.2)."""
        later = [view for view in self.latest.views_of_others(self.me) if self.would_move(view)]
        return min(later) if len(later) >= reply_quorum(self.members.f) else None

    def lone_view_change(self, now: float, idle: bool) -> int | None:
        """The view to join because a peer asks for it alone while we are idle, or None.

        A node whose timer fired while its links lost messages may ask alone for the
        next view. Having said VIEW-CHANGE it may never work in this view again (its
        promise keeps NEW-VIEWs safe), and f+1 of us would never ask with it while the
        primary works, so it would follow only by state transfer, one builder short, until
        the next real view change. Idle, a view change costs us nothing: we join once its
        VIEW-CHANGE has stood for two timeouts of ours. A faulty node can make the network
        change views this way only while it is idle, and each change in a row doubles the
        wait before the next."""
        asked = self.view + 1
        if self.changing or not idle or all(sender == self.me for sender in self.latest.for_view(asked)):
            self.lone_since = None
            return None
        if self.lone_since is None:
            self.lone_since = now
        if now - self.lone_since < 2 * self.timeout_s():
            return None
        self.lone_since = None
        return asked

    def new_view_quorum(self, view: int) -> tuple[ViewChange, ...] | None:
        """As primary of `view`, while changing to it: the 2f+1 view changes (ours among
        them) to announce it with, once they are in."""
        votes = self.latest.for_view(view)
        quorum = self.members.quorum
        if self.primary(view) != self.me or view != self.view or not self.changing:
            return None
        if self.me not in votes or len(votes) < quorum:
            return None
        chosen = tuple(votes[sender] for sender in sorted(votes)[:quorum])
        if self.me not in {vc.sender for vc in chosen}:
            chosen = (votes[self.me],) + chosen[1:]
        return chosen

    def new_view_problem(self, message: NewView, auth: Authenticator) -> tuple[str | None, NewViewPlan | None]:
        """Why a NEW-VIEW is not one to enter, or the plan it must follow; the pre-prepares
        it re-issues must be exactly the ones its view changes call for."""
        if message.epoch != self.epoch:
            return "of_another_epoch", None
        if not self.not_entered(message.view):
            return "stale", None
        if message.sender != self.primary(message.view):
            return "not_from_primary", None
        if not self.members.signed_by_member(message, auth):
            return "bad_signature", None
        senders = {vc.sender for vc in message.view_changes}
        if len(senders) != len(message.view_changes) or len(senders) < self.members.quorum:
            return "too_few_view_changes", None
        for vc in message.view_changes:
            if vc.view != message.view:
                return "view_change_for_other_view", None
            problem = view_change_problem(vc, self.members, auth, self.epoch, self._proof_members(vc.stable_seq),
                                          with_batches=False)
            if problem is not None:
                return problem, None
        plan = plan_new_view(message.view_changes, message.view, self.members, self.epoch)
        expected = [(seq, old.digest) for seq, old in sorted(plan.batches.items())]
        if [(pp.seq, pp.digest) for pp in message.preprepares] != expected:
            return "wrong_preprepares", None
        for pp in message.preprepares:
            if (pp.view != message.view or pp.sender != message.sender or pp.digest != batch_digest(pp.batch, pp.verdicts)
                    or pp.epoch != self.epoch):
                return "malformed_preprepare", None
            if not self.members.signed_by_member(pp, auth):
                return "bad_preprepare_signature", None
        return None, plan

    def enter(self, new_view: NewView, plan: NewViewPlan) -> None:
        assert self.not_entered(new_view.view) and plan.stable_seq >= 0
        self.last_new_view = new_view
        self.view = new_view.view
        self.mode = Mode.NORMAL
        self.stop_timer()
        self.latest.entered(new_view.view)
        self.stable_seq = plan.stable_seq
        self.lone_since = None

    def new_view_to_serve(self, sender: int, now: float) -> NewView | str:
        """A node still asks for the view we work in: it missed the NEW-VIEW, which it gets
        again at most once per half view-change period (it repeats its VIEW-CHANGE once
        per period), or why not."""
        new_view = self.last_new_view
        if new_view is None or new_view.view != self.view:
            return "stale"
        served_at = self.new_view_served_at.get(sender, float("-inf"))
        if now < served_at + self.base_timeout_s / 2:
            return "new_view_sent_recently"
        self.new_view_served_at[sender] = now
        return new_view

    def begin_epoch(self, members: Membership, start: int, now: float) -> None:
        """A new epoch (`pbft.epochs`) begins at `start`: its members, and its views from 0,
        entered by every honest node at the same point of the order."""
        self.previous, self.members, self.epoch = self.members, members, start
        self.view, self.mode, self.in_a_row = 0, Mode.NORMAL, 0
        self.stop_timer()
        self.latest = LatestViewChanges()
        self.last_new_view = None
        self.stable_seq = start
        self.new_view_served_at = {}
        self.lone_since = None
        self.resend_at = now

    # --- after a restart ------------------------------------------------

    def restore(self, view: int, changing: bool, in_a_row: int, stable_seq: int, new_views: list[NewView]) -> None:
        assert self.view == 0 and self.last_new_view is None, "restore a fresh part"
        self.view, self.in_a_row, self.stable_seq = view, in_a_row, stable_seq
        self.mode = Mode.CHANGING if changing else Mode.NORMAL
        for new_view in new_views:
            if self.last_new_view is None or self.last_new_view.view < new_view.view:
                self.last_new_view = new_view

    def check_invariants(self) -> None:
        assert self.in_a_row >= 0 and len(self.latest.by_sender) <= self.members.n
        assert self.last_new_view is None or self.last_new_view.view <= self.view
        assert self.mode is Mode.CHANGING or self.last_new_view is None or self.last_new_view.view == self.view
