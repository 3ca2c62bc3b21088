"""Concurrency groups on one node (builder/queue.py): builds of one group of a repository run
one at a time, in the order's order; other groups and repositories are not held back; a build
whose plan is not read yet holds back those ordered after it; a cancel ends a wait."""

import threading

import pytest

from builder.queue import GroupTurns
from builder.plan.spec import parse_build_spec


def test_builds_of_one_group_run_one_at_a_time_in_the_orders_order():
    turns = GroupTurns()
    turns.come("b", "repo", seq=2)  # b took a slot first, but a was ordered before it
    turns.come("a", "repo", seq=1)
    turns.come("other", "elsewhere", seq=3)
    assert turns.take_turn("other", "lab", lambda: False)  # another repository's group of the same name
    waiting = threading.Thread(target=turns.take_turn, args=("b", "lab", lambda: False))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and turns.blocker("b") == "a"  # a's plan is not read: it may be of the group
    assert turns.take_turn("a", "lab", lambda: False)
    assert turns.blocker("b") == "a"  # now it runs
    turns.leave("a")
    waiting.join(2)
    assert not waiting.is_alive()


def test_a_build_of_no_group_or_another_group_is_not_held_back():
    turns = GroupTurns()
    for seq, build_id in enumerate(("a", "b", "c", "d")):
        turns.come(build_id, "repo", seq)
    assert turns.take_turn("a", "lab", lambda: False)
    assert turns.take_turn("b", None, lambda: False)
    assert turns.take_turn("c", "docs", lambda: False)
    assert turns.blocker("c") is None
    told = []
    waiting = threading.Thread(target=turns.take_turn, args=("d", "lab", lambda: False, lambda *said: told.append(said)))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and told == [("a", True)]  # an older build of its group: one to supersede
    turns.leave("a")
    waiting.join(2)
    assert not waiting.is_alive() and told == [("a", True)]  # told once


def test_a_cancel_ends_the_wait_and_the_build_gives_way():
    turns = GroupTurns()
    turns.come("a", "repo", 1)
    turns.come("b", "repo", 2)
    turns.come("c", "repo", 3)
    assert turns.take_turn("a", "lab", lambda: False)
    cancelled = threading.Event()
    took = []
    waiting = threading.Thread(target=lambda: took.append(turns.take_turn("b", "lab", cancelled.is_set)))
    waiting.start()
    cancelled.set()
    waiting.join(2)
    assert took == [False]
    turns.leave("b")
    turns.leave("a")
    assert turns.take_turn("c", "lab", lambda: False) and len(turns) == 1  # nothing left to wait for


def test_the_spec_names_its_group_and_whether_a_newer_build_cancels_the_older():
    spec = parse_build_spec(b"concurrency: {group: lab, cancel_in_progress: true}\ncommands: [make]\n")
    assert (spec.concurrency.group, spec.concurrency.cancel_in_progress) == ("lab", True)
    assert parse_build_spec(b"concurrency: {group: lab}\ncommands: [make]\n").concurrency.cancel_in_progress is False
    assert parse_build_spec(b"commands: [make]\n").concurrency is None
    for text, problem in ((b"concurrency: lab\n", "concurrency: must be a mapping with a 'group'"),
                          (b"concurrency: {group: a b}\n", "concurrency.group: must be 1 to 64 letters"),
                          (b"concurrency: {cancel_in_progress: true}\n", "concurrency.group")):
        with pytest.raises(ValueError) as refused:
            parse_build_spec(text + b"commands: [make]\n")
        assert problem in str(refused.value)
