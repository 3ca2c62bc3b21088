"""The graph of a pipeline's steps and the schedule over it (builder/plan/stepgraph.py):
which steps run at once, how many, and the status so far each one sees; and how their
output becomes one section each of the build's log (builder/engine/steplogs.py)."""

from __future__ import annotations

import pytest

from builder.engine.steplogs import StepSections
from builder.plan.pipeline import step_graph
from builder.plan.spec import parse_build_spec
from builder.plan.stepgraph import Schedule, StepGraph


def graph(text: str) -> StepGraph:
    return step_graph(parse_build_spec(text.encode()).steps)


DIAMOND = """
image: base:1
steps:
  - {name: a, commands: [sleep 10]}
  - {name: b, commands: [sleep 10], depends_on: []}
  - {name: c, commands: [echo c], depends_on: [a, b]}
"""


def test_steps_that_do_not_follow_each_other_start_together_and_the_one_after_both_waits():
    schedule = Schedule(graph(DIAMOND))
    assert schedule.graph.width == 2
    assert schedule.startable() == ["a", "b"]
    schedule.start("a"), schedule.start("b")
    assert schedule.startable() == []
    schedule.end("b", "success")
    assert schedule.startable() == []  # c follows a as well
    schedule.end("a", "success")
    assert schedule.startable() == ["c"]
    schedule.start("c"), schedule.end("c", "success")
    assert schedule.done


def test_a_chain_is_one_wide_and_the_width_counts_steps_none_of_which_follows_another():
    assert graph("image: i\nsteps:\n" + "".join(f"  - {{name: s{i}, commands: [x]}}\n" for i in range(5))).width == 1
    # a -> {b, c, d} -> e, and f alone: b, c, d and f can run at once.
    fan = graph("""
image: i
steps:
  - {name: a, commands: [x]}
  - {name: b, commands: [x], depends_on: [a]}
  - {name: c, commands: [x], depends_on: [a]}
  - {name: d, commands: [x], depends_on: [a]}
  - {name: e, commands: [x], depends_on: [b, c, d]}
  - {name: f, commands: [x], depends_on: []}
""")
    assert fan.width == 4
    # Two chains a1 -> a2 and b1 -> b2, with a2 also after b1: two at once at most.
    crossed = graph("""
image: i
steps:
  - {name: a1, commands: [x], depends_on: []}
  - {name: b1, commands: [x], depends_on: []}
  - {name: a2, commands: [x], depends_on: [a1, b1]}
  - {name: b2, commands: [x], depends_on: [b1]}
""")
    assert crossed.width == 2


def test_the_status_so_far_is_that_of_the_steps_a_step_follows_not_of_whichever_ended_first():
    schedule = Schedule(graph("""
image: i
steps:
  - {name: a, commands: [x]}
  - {name: b, commands: [x], depends_on: []}
  - {name: after-a, commands: [x], depends_on: [a]}
  - {name: after-b, commands: [x], depends_on: [b]}
  - {name: after-b-ignored, commands: [x], depends_on: [after-b]}
"""))
    schedule.start("a"), schedule.start("b")
    schedule.end("a", "failure")
    schedule.end("b", "failure", counts=False)  # `failure: ignore`
    assert schedule.status_before("after-a") == "failure"
    assert schedule.status_before("after-b") == "success"
    schedule.start("after-b"), schedule.end("after-b", "timeout")
    assert schedule.status_before("after-b-ignored") == "failure"  # through after-b


def test_a_skipped_step_ends_without_starting_and_frees_those_after_it():
    schedule = Schedule(graph("image: i\nsteps:\n  - {name: a, commands: [x]}\n  - {name: b, commands: [x]}\n"))
    assert schedule.free() == ["a"]
    schedule.end("a", "skipped")
    assert schedule.startable() == ["b"]
    with pytest.raises(AssertionError):
        schedule.end("a", "success")  # ended already


def test_each_step_is_one_section_of_the_log_however_the_steps_interleave():
    log: list[str] = []
    sections = StepSections(lambda text: log.append(f"== {text}"), lambda data: log.append(data.decode()), 100)
    sections.begin("a", "step a: image i")
    sections.begin("b", "step b: image i")
    sections.output("a", b"a1")
    sections.output("b", b"b1")
    sections.begin("c", "step c: image i")
    sections.output("c", b"c1")
    sections.output("a", b"a2")  # a is live: its lines come as it prints them
    assert log == ["== step a: image i", "a1", "a2"]
    sections.end("c", "step c: success")  # c ended while a was live: written whole once a ends
    sections.note("d", "step d: skipped")
    sections.output("b", b"b2")
    sections.end("a", "step a: success")
    # c and d whole, in the order they ended; then b, the earliest started still running, goes live.
    assert log[3:] == ["== step a: success", "== step c: image i", "c1", "== step c: success", "== step d: skipped",
                       "== step b: image i", "b1", "b2"]
    sections.output("b", b"b3")
    sections.end("b", "step b: success")
    assert log[-2:] == ["b3", "== step b: success"]


def test_what_waits_for_its_turn_holds_no_more_than_the_builds_output_cap():
    log: list[str] = []
    sections = StepSections(lambda text: log.append(f"== {text}"), lambda data: log.append(data.decode()), 5)
    sections.begin("live", "step live")
    sections.begin("a", "step a")
    sections.begin("b", "step b")
    sections.output("a", b"aaaa")
    sections.output("b", b"bbbb")  # one byte of room left
    sections.output("live", b"live output is written at once, whatever its size")
    sections.end("a", "step a: failure")
    sections.end("b", "step b: success")
    sections.end("live", "step live: success")
    assert log[-6:] == ["== step a", "aaaa", "== step a: failure", "== step b", "b", "== step b: success"]
