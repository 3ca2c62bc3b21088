"""The PrePrepareResend part alone (pbft.resend): which of a primary's PRE-PREPAREs go out
again, and when."""

from dataclasses import dataclass

from pbft.effects import Broadcast
from pbft.messages import PrePrepare
from pbft.resend import RESEND_MAX_S, RESEND_S, PrePrepareResend
from pbft.slot import Slot

D = "d" * 64


@dataclass
class Seat:
    """Node 0, primary of view 0, unless told otherwise (`pbft.seat.Seat`)."""

    me: int = 0
    view: int = 0
    changing: bool = False
    is_primary: bool = True


def slots_of(*seqs, view=0, sender=0, committed=()):
    return {seq: Slot(preprepare=PrePrepare(view, seq, D, sender), committed=seq in committed) for seq in seqs}


def test_a_preprepare_that_has_not_committed_goes_out_again_after_waits_that_double():
    resend, slots = PrePrepareResend(), slots_of(1, 2, committed={1})
    assert resend.due(slots, Seat(), 1, 2, now=10.0) == [], "first seen by a tick: it just went out"
    assert resend.due(slots, Seat(), 1, 2, now=10.0 + RESEND_S - 0.01) == []
    assert resend.due(slots, Seat(), 1, 2, now=10.0 + RESEND_S) == [Broadcast(slots[2].preprepare)]
    assert resend.due(slots, Seat(), 1, 2, now=10.5 + RESEND_S) == [], "counted as sent just now"
    assert resend.due(slots, Seat(), 1, 2, now=10.0 + 2 * RESEND_S) == [], "the next wait is twice the first"
    assert resend.due(slots, Seat(), 1, 2, now=10.0 + 3 * RESEND_S) == [Broadcast(slots[2].preprepare)]


def test_the_wait_between_copies_stops_growing_at_its_cap():
    resend, slots = PrePrepareResend(), slots_of(1)
    now, sent_at = 0.0, []
    resend.due(slots, Seat(), 1, 1, now)
    while now < 60.0:
        now += 0.25  # a tick
        if resend.due(slots, Seat(), 1, 1, now):
            sent_at.append(now)
    waits = [later - earlier for earlier, later in zip([0.0] + sent_at, sent_at)]
    assert waits[:4] == [RESEND_S, 2 * RESEND_S, 4 * RESEND_S, 8 * RESEND_S]
    assert max(waits) == RESEND_MAX_S and waits[-1] == RESEND_MAX_S


def test_only_our_own_preprepares_of_the_view_we_are_primary_of_go_out_again():
    resend = PrePrepareResend()
    others = {**slots_of(1, view=0, sender=3), **slots_of(2, view=1)}  # another's; an older view's
    for now in (0.0, 5.0):
        assert resend.due(others, Seat(view=2), 1, 2, now) == []
    ours = slots_of(3)
    for seat in (Seat(is_primary=False), Seat(changing=True)):
        assert resend.due(ours, seat, 3, 3, 0.0) == [] and resend.due(ours, seat, 3, 3, 5.0) == []


def test_what_it_remembers_is_bounded_by_the_slots_in_flight():
    resend = PrePrepareResend()
    slots = slots_of(*range(1, 9))
    resend.due(slots, Seat(), 1, 8, 0.0)
    assert len(resend._sent) == 8
    resend.due(slots, Seat(), 6, 8, 0.5)  # 1..5 executed: forgotten
    assert sorted(seq for _, seq in resend._sent) == [6, 7, 8]
    resend.due(slots, Seat(changing=True), 6, 8, 0.6)
    assert resend._sent == {}
