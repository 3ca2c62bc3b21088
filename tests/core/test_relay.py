"""The VoteRelay part alone (pbft.relay): where a vote goes, the RESULTs queued for one
frame, and when a slot goes back to all-to-all voting."""

import pytest

from pbft.effects import Broadcast, SendTo
from pbft.build import Result
from pbft.messages import Commit, MAX_VOTES, Prepare, Relay, ResultVote
from pbft.relay import VoteRelay
from pbft.slot import Slot

FALLBACK = 0.5
D = "d" * 64
PRIMARY = 0


def prepare(sender, view=0, seq=1):
    return Prepare(view, seq, D, sender)


def commit(sender, view=0, seq=1):
    return Commit(view, seq, D, sender)


def result_vote(timestamp, sender=1):
    return ResultVote(timestamp, "client", timestamp, Result("success", 0, "a" * 40), sender)


def voted_slot(at, **fields):
    return Slot(voted_at=at, **fields)


# --- where a vote goes ---------------------------------------------------------


def test_a_backup_of_a_relaying_network_sends_its_vote_to_the_primary():
    relay = VoteRelay(True, FALLBACK)
    slot = Slot()
    assert relay.send_vote(prepare(1), slot, 3.0, PRIMARY, False) == SendTo(PRIMARY, prepare(1))
    assert slot.voted_at == 3.0  # the fallback counts from here


def test_a_backup_votes_to_all_in_an_all_to_all_slot():
    relay = VoteRelay(True, FALLBACK)
    slot = Slot(all_to_all=True)
    assert relay.send_vote(commit(1), slot, 3.0, PRIMARY, False) == Broadcast(commit(1))
    assert slot.voted_at is None


def test_a_primary_and_any_node_of_a_network_that_does_not_relay_broadcast():
    primary_slot, plain_slot = Slot(), Slot()
    assert VoteRelay(True, FALLBACK).send_vote(prepare(0), primary_slot, 3.0, PRIMARY, True) == Broadcast(prepare(0))
    assert VoteRelay(False, FALLBACK).send_vote(prepare(1), plain_slot, 3.0, PRIMARY, False) == Broadcast(prepare(1))
    assert primary_slot.voted_at is None and plain_slot.voted_at is None


# --- RESULTs in one frame -------------------------------------------------------


def test_a_backup_queues_results_for_the_primary_and_the_queue_flushes_itself_at_max_votes():
    relay = VoteRelay(True, FALLBACK)
    votes = [result_vote(timestamp) for timestamp in range(1, MAX_VOTES + 1)]
    for vote in votes[:-1]:
        assert relay.queue_result(vote, PRIMARY, False) == []
    assert relay.queue_result(votes[-1], PRIMARY, False) == [SendTo(PRIMARY, Relay(tuple(votes)))]
    assert relay.queue == [] and relay.flush(PRIMARY, False) == []


def test_a_flush_sends_the_queue_in_one_frame_to_all_from_a_primary_or_a_network_that_does_not_relay():
    votes = (result_vote(1), result_vote(2))
    for relay, is_primary in ((VoteRelay(True, FALLBACK), True), (VoteRelay(False, FALLBACK), False)):
        for vote in votes:
            assert relay.queue_result(vote, PRIMARY, is_primary) == []
        assert relay.flush(PRIMARY, is_primary) == [Broadcast(Relay(votes))]
        assert relay.flush(PRIMARY, is_primary) == []


# --- back to all-to-all ---------------------------------------------------------


def test_overdue_slots_are_those_voted_at_least_fallback_ago_and_not_committed():
    relay = VoteRelay(True, FALLBACK)
    late = voted_slot(1.0)
    slots = [late, voted_slot(1.2), voted_slot(0.0, committed=True), voted_slot(0.0, all_to_all=True), Slot()]
    assert relay.overdue(slots, 1.0 + FALLBACK - 0.01) == []
    assert relay.overdue(slots, 1.0 + FALLBACK) == [late]
    assert relay.overdue(slots, 1.2 + FALLBACK) == slots[:2]


def test_going_all_to_all_broadcasts_our_votes_of_this_view_again():
    slot = Slot(prepares={1: prepare(1, view=2), 2: prepare(2, view=2)}, commits={1: commit(1, view=1)})
    assert VoteRelay.go_all_to_all(slot, 1, 2) == [Broadcast(prepare(1, view=2))]
    assert slot.all_to_all
    both = Slot(prepares={1: prepare(1, view=2)}, commits={1: commit(1, view=2)})
    assert VoteRelay.go_all_to_all(both, 1, 2) == [Broadcast(prepare(1, view=2)), Broadcast(commit(1, view=2))]


def test_a_backups_vote_that_came_straight_from_it_joins_us_all_to_all():
    relay = VoteRelay(True, FALLBACK)
    assert relay.joins_all_to_all(prepare(2), Slot(), 0, PRIMARY, False)
    assert not relay.joins_all_to_all(prepare(PRIMARY), Slot(), 0, PRIMARY, False)  # the primary's own
    assert not relay.joins_all_to_all(prepare(2), None, 0, PRIMARY, False)
    assert not relay.joins_all_to_all(prepare(2), Slot(all_to_all=True), 0, PRIMARY, False)
    assert not relay.joins_all_to_all(prepare(2, view=1), Slot(), 0, PRIMARY, False)
    assert not relay.joins_all_to_all(prepare(2), Slot(), 0, PRIMARY, True)  # we are the primary
    assert not VoteRelay(False, FALLBACK).joins_all_to_all(prepare(2), Slot(), 0, PRIMARY, False)


def test_votes_unpacked_from_a_relay_join_nothing_all_to_all():
    relay = VoteRelay(True, FALLBACK)
    with relay.unpacking():
        assert not relay.joins_all_to_all(prepare(2), Slot(), 0, PRIMARY, False)
    assert relay.joins_all_to_all(prepare(2), Slot(), 0, PRIMARY, False)


def test_unpacking_ends_on_an_error_and_refuses_a_relay_inside_a_relay():
    relay = VoteRelay(True, FALLBACK)
    with pytest.raises(ValueError):
        with relay.unpacking():
            raise ValueError("a bad vote")
    assert not relay.taking_in
    with relay.unpacking():
        with pytest.raises(AssertionError):
            with relay.unpacking():
                pass
        assert relay.taking_in
    assert not relay.taking_in
