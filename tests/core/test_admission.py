"""The Admission part alone (pbft.admission): the checks a vote passes before the replica
takes it, and the early votes it keeps per sender until their view and window come."""

import random

from pbft.admission import Admission
from pbft.catchup import CatchUp
from pbft.checkpoints import Checkpoints
from pbft.epochs import Epochs
from pbft.membership import Membership
from pbft.messages import Commit, Prepare, signed
from pbft.relay import VoteRelay
from pbft.sim.auth import SimKeys
from pbft.slot import Slot
from pbft.views import Views

WINDOW = 8
MEMBERS = Membership.of(((node, "") for node in range(4)), f=1, log_window=WINDOW)
KEYS = SimKeys.generate(random.Random(0), 4, [])
D = "d" * 64


def admission(me=1, per_sender=2):
    views = Views(me, MEMBERS, 4.0)
    part = Admission(KEYS.for_node(me), Epochs(MEMBERS), views, Checkpoints(4, WINDOW), CatchUp(1, 1.0), per_sender)
    return part, views


def prepare(sender, seq=1, view=0, epoch=0):
    return signed(Prepare(view, seq, D, sender, epoch=epoch), KEYS.for_node(sender).sign)


def commit(sender, seq=1, view=0):
    return signed(Commit(view, seq, D, sender), KEYS.for_node(sender).sign)


def test_a_vote_of_our_view_and_window_signed_by_its_sender_passes():
    part, _ = admission()
    assert part.check_vote("prepare", prepare(2)) is None
    assert part.catch_up.view_claims == {2: 0}


def test_a_vote_says_why_it_is_refused():
    part, _ = admission()
    forged = Prepare(0, 1, D, 2, sig=prepare(3).sig)
    assert part.check_vote("prepare", forged) == "ignore_prepare_bad_signature"
    assert part.check_vote("prepare", prepare(2, seq=2 * WINDOW + 1)) == "ignore_prepare_out_of_window"
    assert part.check_vote("prepare", prepare(2, epoch=5)) == "ignore_prepare_future_epoch"
    assert part.node_signature_problem(signed(Prepare(0, 1, D, 7), KEYS.for_node(2).sign)) == "ignore_prepare_unknown_sender"


def test_a_vote_of_a_later_view_or_above_the_window_is_kept_per_sender_and_handed_back_when_it_comes():
    part, views = admission(per_sender=2)
    later, stale, above = prepare(2, view=1), prepare(2, seq=WINDOW + 1), prepare(3, seq=WINDOW + 1, view=1)
    assert part.buffer_if_future(later) and part.buffer_if_future(stale) and part.buffer_if_future(above)
    assert not part.buffer_if_future(prepare(2, seq=2))
    assert part.ready() == []
    views.view = 1
    assert part.ready() == [later]  # the one above the window waits, the one of view 0 is dropped
    assert [list(buffer) for buffer in part.future.values()] == [[], [above]]


def test_one_sender_cannot_push_out_anybody_elses_early_votes():
    part, _ = admission(per_sender=2)
    flood = [prepare(2, seq=seq, view=1) for seq in range(1, 5)]
    other = prepare(3, view=1)
    for message in [*flood, other]:
        part.buffer_if_future(message)
    assert list(part.future[2]) == flood[-2:] and list(part.future[3]) == [other]


def test_a_vote_for_a_slot_past_its_phase_moves_nothing_unless_it_may_say_its_sender_gave_up_on_a_relay():
    part, _ = admission()
    prepared = Slot(preprepare=object(), prepared=True)
    assert part.moves_nothing(prepare(2), prepared, VoteRelay(False, 0.5))
    assert not part.moves_nothing(commit(2), prepared, VoteRelay(False, 0.5))
    assert not part.moves_nothing(prepare(2), prepared, VoteRelay(True, 0.5))  # a backup of a relaying network
    assert not part.moves_nothing(prepare(2), None, VoteRelay(False, 0.5))
