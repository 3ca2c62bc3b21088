"""The VoteRelay part alone (pbft.relay): where a vote goes, the RESULTs queued for one
frame, and when a slot goes back to all-to-all voting."""

from dataclasses import dataclass, field

import pytest

from pbft.effects import Broadcast, SendTo
from pbft.build import Result
from pbft.messages import Commit, MAX_VOTES, Prepare, Relay, ResultVote
from pbft.relay import VoteRelay, held
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


@dataclass
class Seat:
    """Where node 1 sits: a backup of view 0 unless told otherwise (`pbft.relay.Seat`)."""

    me: int = 1
    view: int = 0
    changing: bool = False
    is_primary: bool = False

    def primary(self, view=None):
        return PRIMARY


@dataclass
class Log:
    slots: dict = field(default_factory=dict)


@dataclass
class Results:
    kept: set = field(default_factory=set)  # (key, sender)

    def __contains__(self, key):
        return any(key == kept_key for kept_key, _ in self.kept)

    def has_vote(self, key, sender):
        return (key, sender) in self.kept


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


# --- the rules, read from where the node sits --------------------------------


def test_a_backups_vote_goes_to_the_primary_of_its_seat():
    slots = {1: Slot()}
    assert VoteRelay(True, FALLBACK).send(prepare(1), slots, Seat(), 3.0) == SendTo(PRIMARY, prepare(1))
    assert slots[1].voted_at == 3.0
    assert VoteRelay(True, FALLBACK).send(prepare(0), {1: Slot()}, Seat(me=0, is_primary=True), 3.0) == Broadcast(prepare(0))


def test_a_relay_hands_on_each_vote_not_held_while_taking_in_and_says_the_first_problem():
    relay = VoteRelay(True, FALLBACK)
    kept = prepare(2)
    handled = []

    def handle(vote):
        assert relay.taking_in
        handled.append(vote)
        return None if vote.sender == 3 else f"problem_{vote.sender}"

    votes = (prepare(1), kept, prepare(3), commit(2), prepare(0))
    assert relay.take_in(Relay(votes), Seat(), Log({1: Slot(prepares={2: kept})}), Results(), handle) == "problem_2"
    assert handled == [prepare(3), commit(2), prepare(0)] and not relay.taking_in


def test_a_vote_is_held_only_as_it_is_kept():
    log = Log({1: Slot(prepares={2: prepare(2)})})
    assert held(prepare(2), log, Results()) and not held(commit(2), log, Results())
    assert not held(prepare(2, seq=2), log, Results())
    vote = result_vote(1, sender=2)
    assert held(vote, log, Results({(vote.key, 2)})) and not held(vote, log, Results({(vote.key, 3)}))
    assert not held(vote, log, Results())


def test_a_backups_straight_vote_sends_ours_of_that_slot_to_all():
    slot = Slot(prepares={1: prepare(1)})
    relay = VoteRelay(True, FALLBACK)
    assert relay.joined_all_to_all(prepare(2), {1: slot}, Seat()) == [Broadcast(prepare(1))]
    assert slot.all_to_all
    assert relay.joined_all_to_all(prepare(3), {}, Seat()) == []


def test_overdue_slots_fall_back_to_all_to_all_but_not_while_the_view_changes_nor_at_the_primary():
    late = voted_slot(1.0, prepares={1: prepare(1)})
    now = 1.0 + FALLBACK
    assert VoteRelay(True, FALLBACK).fall_back({1: late}, Seat(changing=True), now) == []
    assert VoteRelay(True, FALLBACK).fall_back({1: late}, Seat(is_primary=True), now) == []
    assert not late.all_to_all
    assert VoteRelay(True, FALLBACK).fall_back({1: late}, Seat(), now) == [Broadcast(prepare(1))]
    assert late.all_to_all
