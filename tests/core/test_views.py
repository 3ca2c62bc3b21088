"""The Views part alone (pbft.views): the view, its mode, the view-change timer and the
evidence a new view needs, with no replica around it."""

import random
from dataclasses import replace

import pytest

from pbft.build import Operation
from pbft.messages import NewView, PrePrepare, Prepare, PreparedCertificate, Request, ViewChange, batch_digest, signed
from pbft.sim.auth import SimKeys
from pbft.membership import Membership
from pbft.viewchange import NewViewPlan
from pbft.views import MAX_DOUBLINGS, Mode, Views

T = 4.0
MEMBERS = Membership.of(((node, "") for node in range(4)), f=1, log_window=256)
KEYS = SimKeys.generate(random.Random(0), 4, [])
AUTH = KEYS.for_node(0)  # verifies every node's signature
A, B, C = ("client", 1), ("client", 2), ("client", 3)

BATCH = (Request("client", 1, Operation("repo", "master")),)
DIGEST = batch_digest(BATCH)


def sign(node, message):
    return signed(message, KEYS.for_node(node).sign)


def view_change(view, sender, prepared=()):
    return sign(sender, ViewChange(view, 0, (), prepared, sender))


# A batch prepared in view 0 at seq 1: a NEW-VIEW built on a view change that carries it must re-issue it.
CERT = PreparedCertificate(
    sign(0, PrePrepare(0, 1, DIGEST, 0, BATCH)),
    (sign(1, Prepare(0, 1, DIGEST, 1)), sign(2, Prepare(0, 1, DIGEST, 2))),
)


def reissued(view=1, sender=1, batch=BATCH):
    return sign(sender, PrePrepare(view, 1, DIGEST, sender, batch))


def new_view(view_changes, preprepares, view=1, sender=1):
    return sign(sender, NewView(view, tuple(view_changes), tuple(preprepares), sender))


def valid_new_view():
    return new_view([view_change(1, s, (CERT,)) for s in (0, 2, 3)], [reissued()])


def entered(me, view):
    """A part that moved to `view` and entered it with an (unchecked) NEW-VIEW."""
    views = Views(me, MEMBERS, T)
    views.move_to(view)
    views.enter(NewView(view, (), (), MEMBERS.primary(view)), NewViewPlan(0, (), {}))
    return views


# --- the timer -----------------------------------------------------------


def test_the_timer_keeps_its_deadline_while_the_timed_request_still_waits():
    views = Views(1, MEMBERS, T)
    views.start_timer(0.0, A)
    views.progressed(3.0, [B, A])  # other batches executed: nothing proven about A
    assert (views.timer_deadline, views.timer_request) == (T, A)
    assert views.timer_expired(T) and not views.timer_expired(T - 0.01)


def test_the_timer_restarts_for_the_oldest_waiting_request_once_the_timed_one_executed():
    views = Views(1, MEMBERS, T)
    views.start_timer(0.0, A)
    views.progressed(3.0, [B, C])
    assert (views.timer_deadline, views.timer_request) == (3.0 + T, B)


def test_progress_stops_the_timer_when_nothing_waits_and_a_primary_times_nothing():
    backup = Views(1, MEMBERS, T)
    backup.start_timer(0.0, A)
    backup.progressed(1.0, [])
    assert (backup.timer_deadline, backup.timer_request) == (None, None)
    primary = Views(0, MEMBERS, T)
    primary.progressed(1.0, [A])
    assert primary.timer_deadline is None


def test_the_timeout_doubles_with_each_view_change_in_a_row_up_to_a_cap():
    views = Views(2, MEMBERS, T)
    assert views.timeout_s() == T
    views.move_to(1)
    assert views.timeout_s() == 2 * T
    views.move_to(2)
    assert views.timeout_s() == 4 * T
    capped = Views(2, MEMBERS, T)
    capped.restore(40, True, MAX_DOUBLINGS + 5, 0, [])
    assert capped.timeout_s() == T * 2**MAX_DOUBLINGS
    capped.start_timer(1.0, A)
    assert capped.timer_deadline == 1.0 + T * 2**MAX_DOUBLINGS


def test_progress_in_a_working_view_starts_the_doubling_over_but_not_while_changing():
    views = Views(2, MEMBERS, T)
    views.move_to(1)
    views.progressed(1.0, [])  # a batch learnt by state transfer while changing
    assert views.in_a_row == 1
    views.enter(NewView(1, (), (), 1), NewViewPlan(0, (), {}))
    assert views.timeout_s() == 2 * T  # entering proves nothing yet
    views.progressed(2.0, [])
    assert views.in_a_row == 0 and views.timeout_s() == T


# --- changing --------------------------------------------------------------


def test_move_to_refuses_a_view_that_would_not_move_us():
    views = Views(2, MEMBERS, T)
    views.start_timer(0.0, A)
    views.move_to(1)
    assert (views.view, views.mode, views.timer_deadline) == (1, Mode.CHANGING, None)
    with pytest.raises(AssertionError):
        views.move_to(1)  # we are changing to it already
    with pytest.raises(AssertionError):
        views.move_to(0)
    assert (views.view, views.in_a_row) == (1, 1)
    views.move_to(2)
    assert (views.view, views.in_a_row) == (2, 2)


def test_our_view_change_is_said_again_every_timeout_while_we_wait():
    views = Views(2, MEMBERS, T)
    views.move_to(1)
    views.said(view_change(1, 2), 10.0)
    assert not views.resend_due(10.0 + T - 0.01) and views.resend_due(10.0 + T)
    assert views.latest.by_sender[2].view == 1


def test_take_view_change_says_stale_duplicate_and_superseded():
    views = Views(0, MEMBERS, T)
    views.move_to(2)
    assert views.take_view_change(view_change(1, 1), AUTH) == "stale"
    assert views.take_view_change(view_change(3, 1), AUTH) is None
    assert views.take_view_change(view_change(3, 1), AUTH) == "duplicate"
    assert views.take_view_change(view_change(2, 1), AUTH) == "superseded"
    assert views.latest.by_sender[1].view == 3


def test_take_view_change_keeps_no_forged_one():
    views = Views(0, MEMBERS, T)
    assert views.take_view_change(replace(view_change(1, 1), sender=2), AUTH) == "bad_signature"
    assert views.take_view_change(sign(1, ViewChange(1, 0, (), (), 7)), AUTH) == "unknown_sender"
    assert views.latest.by_sender == {}


def test_view_to_join_needs_f_plus_one_other_senders_and_picks_the_smallest_later_view():
    views = Views(0, MEMBERS, T)
    views.move_to(1)
    views.said(view_change(1, 0), 0.0)  # our own does not count
    assert views.take_view_change(view_change(3, 1), AUTH) is None
    assert views.view_to_join() is None
    assert views.take_view_change(view_change(1, 2), AUTH) is None  # the view we change to already
    assert views.view_to_join() is None
    assert views.take_view_change(view_change(2, 3), AUTH) is None
    assert views.view_to_join() == 2


def test_quorum_wants_our_view_once_2f_plus_1_ask_for_it_and_no_timer_runs():
    views = Views(0, MEMBERS, T)
    views.move_to(1)
    views.said(view_change(1, 0), 0.0)
    views.take_view_change(view_change(1, 2), AUTH)
    assert not views.quorum_wants_our_view()
    views.take_view_change(view_change(1, 3), AUTH)
    assert views.quorum_wants_our_view()
    views.start_timer(0.0, None)
    assert not views.quorum_wants_our_view()


def test_an_idle_node_joins_a_peer_that_asks_alone_for_the_next_view_after_two_timeouts():
    views = Views(2, MEMBERS, T)
    assert views.take_view_change(view_change(1, 3), AUTH) is None
    assert views.lone_view_change(0.0, idle=True) is None
    assert views.lone_view_change(2 * T - 0.01, idle=True) is None
    assert views.lone_view_change(2 * T, idle=True) == 1


def test_work_starts_the_wait_for_a_lone_view_change_over():
    views = Views(2, MEMBERS, T)
    views.take_view_change(view_change(1, 3), AUTH)
    assert views.lone_view_change(0.0, idle=True) is None
    assert views.lone_view_change(1.0, idle=False) is None
    assert views.lone_view_change(2 * T, idle=True) is None  # counting again from here
    assert views.lone_view_change(4 * T - 0.01, idle=True) is None
    assert views.lone_view_change(4 * T, idle=True) == 1


# --- announcing and entering a new view --------------------------------------


def test_new_view_quorum_only_for_the_primary_of_the_view_while_changing_to_it():
    views = Views(1, MEMBERS, T)
    for sender in (0, 2, 3):
        assert views.take_view_change(view_change(1, sender), AUTH) is None
    assert views.new_view_quorum(1) is None  # not changing
    views.move_to(1)
    assert views.new_view_quorum(1) is None  # our own VIEW-CHANGE is not out
    views.said(view_change(1, 1), 0.0)
    chosen = views.new_view_quorum(1)
    assert chosen is not None and len({vc.sender for vc in chosen}) == len(chosen) == 3
    views.move_to(2)  # the view-1 view changes, ours included, are still kept
    assert views.new_view_quorum(1) is None  # not the view we change to any more
    backup = Views(2, MEMBERS, T)
    backup.move_to(1)
    backup.said(view_change(1, 2), 0.0)
    for sender in (0, 1, 3):
        backup.take_view_change(view_change(1, sender), AUTH)
    assert backup.new_view_quorum(1) is None


def test_new_view_quorum_includes_our_own_view_change():
    views = Views(3, MEMBERS, T)  # primary of view 3, the highest id: last when sorted
    views.move_to(3)
    views.said(view_change(3, 3), 0.0)
    for sender in (0, 1, 2):
        views.take_view_change(view_change(3, sender), AUTH)
    chosen = views.new_view_quorum(3)
    senders = [vc.sender for vc in chosen]
    assert 3 in senders and len(set(senders)) == len(senders) == 3


def test_a_valid_new_view_gives_the_plan_to_follow_and_is_stale_once_entered():
    views = Views(2, MEMBERS, T)
    message = valid_new_view()
    problem, plan = views.new_view_problem(message, AUTH)
    assert problem is None
    assert plan.stable_seq == 0 and plan.batches[1].digest == DIGEST
    views.enter(message, plan)
    assert (views.view, views.mode, views.last_new_view) == (1, Mode.NORMAL, message)
    assert views.new_view_problem(message, AUTH) == ("stale", None)


def test_new_view_problem_rejects_a_new_view_not_from_the_primary():
    views = Views(2, MEMBERS, T)
    good = valid_new_view()
    by_a_backup = new_view(good.view_changes, [reissued(sender=2)], sender=2)
    assert views.new_view_problem(by_a_backup, AUTH) == ("not_from_primary", None)
    forged = replace(by_a_backup, sender=1)  # names the primary, signed by node 2
    assert views.new_view_problem(forged, AUTH) == ("bad_signature", None)


def test_new_view_problem_rejects_too_few_view_changes():
    views = Views(2, MEMBERS, T)
    two = [view_change(1, s, (CERT,)) for s in (0, 2)]
    assert views.new_view_problem(new_view(two, [reissued()]), AUTH) == ("too_few_view_changes", None)
    repeated = two + [view_change(1, 3, (CERT,)), view_change(1, 0, (CERT,))]  # 2f+1 senders, one twice
    assert views.new_view_problem(new_view(repeated, [reissued()]), AUTH) == ("too_few_view_changes", None)
    other_view = two + [view_change(2, 3)]
    assert views.new_view_problem(new_view(other_view, [reissued()]), AUTH) == ("view_change_for_other_view", None)


def test_new_view_problem_rejects_pre_prepares_other_than_the_view_changes_call_for():
    views = Views(2, MEMBERS, T)
    view_changes = valid_new_view().view_changes
    null_at_2 = sign(1, PrePrepare(1, 2, batch_digest(()), 1, ()))
    cases = {
        "wrong_preprepares": [[], [reissued(), null_at_2]],
        "malformed_preprepare": [[reissued(batch=())], [reissued(view=2)]],
        "bad_preprepare_signature": [[sign(2, PrePrepare(1, 1, DIGEST, 1, BATCH))]],  # names the primary
    }
    for reason, variants in cases.items():
        for preprepares in variants:
            assert views.new_view_problem(new_view(view_changes, preprepares), AUTH) == (reason, None)


def test_new_view_to_serve_rate_limits_each_sender():
    views = Views(1, MEMBERS, T)
    assert views.new_view_to_serve(2, 0.0) == "stale"  # no NEW-VIEW yet
    views = entered(1, 1)
    served = views.last_new_view
    assert views.new_view_to_serve(2, 10.0) is served
    assert views.new_view_to_serve(2, 10.0 + T / 2 - 0.01) == "new_view_sent_recently"
    assert views.new_view_to_serve(3, 10.0 + T / 2 - 0.01) is served  # another sender
    assert views.new_view_to_serve(2, 10.0 + T / 2) is served
    views.move_to(2)
    assert views.new_view_to_serve(3, 100.0) == "stale"  # not what started the view we are in


# --- after a restart ---------------------------------------------------------


def test_restore_keeps_the_newest_new_view_whatever_their_order():
    views = Views(2, MEMBERS, T)
    old = [NewView(view, (), (), view % 4) for view in (2, 3, 1)]
    views.restore(3, False, 2, 7, old)
    assert views.last_new_view is old[1]
    assert (views.view, views.mode, views.stable_seq, views.timeout_s()) == (3, Mode.NORMAL, 7, 4 * T)
    views.check_invariants()
    with pytest.raises(AssertionError):
        views.restore(3, False, 2, 7, old)  # only a fresh part is restored


def test_restore_of_a_changing_node_waits_for_the_new_view():
    views = Views(2, MEMBERS, T)
    views.restore(4, True, 1, 0, [NewView(3, (), (), 3)])
    assert views.changing and views.not_entered(4) and not views.would_move(4)
    views.check_invariants()


def test_check_invariants_catches_a_working_view_that_no_new_view_started():
    views = Views(2, MEMBERS, T)
    views.restore(3, False, 0, 0, [NewView(2, (), (), 2)])
    with pytest.raises(AssertionError):
        views.check_invariants()


def test_the_primary_of_a_view_is_taken_in_turn_from_the_members_ids_whatever_they_are():
    members = Membership.of(((5, ""), (0, ""), (2, "")), f=0, log_window=256)  # node 1 left, node 5 joined
    assert [members.primary(view) for view in range(5)] == [0, 2, 5, 0, 2]
    assert 1 not in members and 5 in members and members.n == 3


def test_a_timer_for_a_primary_the_links_cannot_reach_ends_at_once():
    views = Views(1, MEMBERS, T)
    views.unreachable = frozenset({0})
    views.start_timer(1.0, A)
    assert views.timer_expired(1.1)


def test_the_links_cut_a_running_timer_short_when_they_lose_the_primary():
    views = Views(1, MEMBERS, T)
    views.start_timer(0.0, A)
    views.unreachable = frozenset({2, 3})  # other peers: the timer runs on
    assert not views.timer_expired(1.0) and views.timer_deadline == T
    views.unreachable = frozenset({0})
    assert views.timer_expired(1.5) and views.timer_deadline == 1.5


def test_the_links_cut_the_timer_short_once_per_view_and_mode():
    views = Views(1, MEMBERS, T)
    views.unreachable = frozenset({0, 1})
    views.start_timer(1.0, A)
    assert views.timer_expired(1.0)
    # Found behind its peers, the node times its catch-up afresh: the full timeout.
    views.start_timer(1.0, A)
    assert not views.timer_expired(1.1) and views.timer_deadline == 1.0 + T
    # Changing to view 1, whose primary (node 1) the links cannot reach either: cut again.
    views.move_to(1)
    views.start_timer(2.0, None)
    assert views.timer_expired(2.0)
