"""The order builds take a node's slots in (builder/queue.py): pure, so checked exhaustively
by hypothesis against the rules it promises."""

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.queue import BuildQueue


def test_builds_of_one_repository_start_in_order_up_to_the_slots():
    queue = BuildQueue(2)
    assert queue.add("a1", "a") == ["a1"]
    assert queue.add("a2", "a") == ["a2"]
    assert queue.add("a3", "a") == [] and queue.waiting() == 1
    assert queue.finish("a1") == ["a3"]


def test_a_repositorys_bound_holds_while_other_repositories_use_the_slots():
    queue = BuildQueue(3, {"busy": 1})
    assert [queue.add(f"b{i}", "busy") for i in range(3)] == [["b0"], [], []]
    assert queue.add("q", "quiet") == ["q"]  # the busy repository's waiting builds do not block it
    assert queue.waiting() == 2
    assert queue.finish("b0") == ["b1"]


def test_a_freed_slot_goes_round_the_repositories_with_builds_waiting():
    queue = BuildQueue(1)
    queue.add("a1", "a")
    for build_id, repository in [("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"), ("b2", "b")]:
        queue.add(build_id, repository)
    order = []
    running = "a1"
    while True:
        started = queue.finish(running)
        if not started:
            break
        [running] = started
        order.append(running)
    # One burst of pushes to `a` does not hold `b` and `c` back behind it.
    assert order == ["a2", "b1", "c1", "a3", "b2"]


def test_a_dropped_build_never_starts():
    queue = BuildQueue(1)
    queue.add("a1", "a")
    queue.add("a2", "a")
    assert queue.drop("a2") is True and queue.drop("a2") is False and queue.drop("a1") is False
    assert queue.finish("a1") == [] and queue.waiting() == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.dictionaries(st.sampled_from("abc"), st.integers(1, 3)),
       st.lists(st.tuples(st.sampled_from(["add", "finish", "drop"]), st.sampled_from("abc")), max_size=60))
def test_slots_bounds_and_order_hold_whatever_comes(slots, bounds, steps):
    queue = BuildQueue(slots, bounds)
    came: dict[str, list[str]] = {}  # repository -> its builds in the order they came
    started: list[str] = []
    counter = 0
    for action, repository in steps:
        if action == "add":
            counter += 1
            build_id = f"{repository}{counter}"
            came.setdefault(repository, []).append(build_id)
            started += queue.add(build_id, repository)
        elif action == "finish" and queue.running:
            started += queue.finish(next(iter(queue.running)))
        elif action == "drop":
            waiting = [b for b in came.get(repository, []) if queue.is_waiting(b)]
            if waiting:
                assert queue.drop(waiting[-1])
                came[repository].remove(waiting[-1])
        assert len(queue.running) <= slots
        for name in "abc":
            assert sum(1 for r in queue.running.values() if r == name) <= bounds.get(name, slots)
        # No slot stays free while a build that may take it waits.
        if len(queue.running) < slots:
            assert not any(queue.is_waiting(b) and sum(1 for r in queue.running.values() if r == name)
                           < bounds.get(name, slots) for name, builds in came.items() for b in builds)
    for repository, builds in came.items():
        assert [b for b in started if b in builds] == builds[:len([b for b in started if b in builds])]
