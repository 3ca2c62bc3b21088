"""The CI's own types on the wire (pbft/build.py): a pipeline's step results in a Result."""

from __future__ import annotations

import pytest

from pbft.build import MAX_STEPS, Result, Spec, StepResult
from pbft.wire import MessageError, decode_struct, encode

SPEC = Spec(".pbft-ci.yml", "a" * 64, "pbft-ci/busybox:latest")


def with_steps(*steps: StepResult, status: str = "failure", exit_code: int | None = 1) -> Result:
    return Result(status, exit_code, "c" * 40, spec=SPEC, steps=steps)


def test_a_result_without_steps_keeps_the_wire_form_results_had_before_steps():
    assert list(encode(Result("success", 0, "c" * 40, spec=SPEC))) == ["status", "exit_code", "commit", "spec", "reason"]


def test_steps_travel_with_their_durations_and_agree_without_them():
    ran = with_steps(StepResult("lint", "success", 0, 120), StepResult("test", "failure", 2, 3400))
    wire = encode(ran)
    assert wire["steps"] == [
        {"name": "lint", "status": "success", "exit_code": 0, "duration_ms": 120},
        {"name": "test", "status": "failure", "exit_code": 2, "duration_ms": 3400},
    ]
    assert decode_struct(Result, wire) == ran
    assert ran.agreed()["steps"] == [
        {"name": "lint", "status": "success", "exit_code": 0}, {"name": "test", "status": "failure", "exit_code": 2},
    ]
    slower = with_steps(StepResult("lint", "success", 0, 900), StepResult("test", "failure", 2, 5100))
    assert slower.agreed() == ran.agreed() and slower.agreed_key() == ran.agreed_key()
    # A step that failed elsewhere, or another exit code, is another result.
    other = with_steps(StepResult("lint", "failure", 1, 120), StepResult("test", "skipped", None, 0))
    assert other.agreed_key() != ran.agreed_key()
    assert with_steps(StepResult("lint", "success", 0, 1)).agreed_key() != Result(
        "failure", 1, "c" * 40, spec=SPEC).agreed_key()


@pytest.mark.parametrize("steps, problem", [
    ([{"name": "a", "status": "done", "exit_code": 0, "duration_ms": 1}], "unknown status 'done'"),
    ([{"name": "../a", "status": "success", "exit_code": 0, "duration_ms": 1}], "name is not well formed"),
    ([{"name": "a", "status": "success", "exit_code": 0, "duration_ms": -1}], "duration_ms must be"),
    ([{"name": "a", "status": "success", "exit_code": 0}], "missing field 'duration_ms'"),
    ([{"name": "a", "status": "success", "exit_code": 0, "duration_ms": 1}] * (MAX_STEPS + 1), "steps must be a list"),
    ("lint", "steps must be a list"),
])
def test_malformed_steps_are_refused(steps, problem):
    wire = {**encode(with_steps(StepResult("a", "success", 0, 1))), "steps": steps}
    with pytest.raises(MessageError, match=problem):
        decode_struct(Result, wire)
