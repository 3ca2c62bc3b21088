"""The CI's own types on the wire (pbft/build.py): a pipeline's step results in a Result, a
matrix's combinations in a Result and in an Operation."""

from __future__ import annotations

import pytest

from pbft.attestation import statement
from pbft.build import MAX_AXES, MAX_COMBINATIONS, MAX_STEPS, Operation, Result, Spec, StepResult, combination_label
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


def test_each_nodes_test_outcomes_digest_travels_signed_and_is_not_part_of_the_verdict():
    here, there = ("sha256:" + digit * 64 for digit in "ab")
    read_here = Result("success", 0, "c" * 40, spec=SPEC, tests=here)
    wire = encode(read_here)
    assert list(wire) == ["status", "exit_code", "commit", "spec", "tests", "reason"] and wire["tests"] == here
    assert decode_struct(Result, wire) == read_here
    read_there = Result("success", 0, "c" * 40, spec=SPEC, tests=there)
    # A test that passed on one node and failed on another leaves the verdict the agreed part's.
    assert read_here.agreed() == read_there.agreed() == Result("success", 0, "c" * 40, spec=SPEC).agreed()
    assert read_here.agreed_key() == read_there.agreed_key()
    assert statement(Operation("example", "master", "c" * 40), read_here) == statement(
        Operation("example", "master", "c" * 40), read_there)
    with pytest.raises(MessageError):
        decode_struct(Result, {**wire, "tests": "md5:1234"})


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


# --- a matrix: the combinations a result lists, the one an operation names -----------

PYTHONS = ((("PYTHON", "3.11"),), (("PYTHON", "3.12"),), (("PYTHON", "3.13"),))


def test_a_matrix_result_lists_its_combinations_and_they_are_agreed():
    expanded = Result("matrix", None, "c" * 40, combinations=PYTHONS)
    wire = encode(expanded)
    assert wire["combinations"] == [[["PYTHON", "3.11"]], [["PYTHON", "3.12"]], [["PYTHON", "3.13"]]]
    assert decode_struct(Result, wire) == expanded
    assert expanded.agreed()["combinations"] == wire["combinations"]
    # A node that expanded the commit's spec otherwise signs another result.
    fewer = Result("matrix", None, "c" * 40, combinations=PYTHONS[:2])
    assert fewer.agreed_key() != expanded.agreed_key()
    # Results of other statuses keep their wire form: nothing is written for no combinations.
    assert "combinations" not in encode(Result("success", 0, "c" * 40, spec=SPEC))


def test_an_operation_names_a_combination_and_one_without_keeps_its_old_wire_form():
    push = Operation("example", "master", "c" * 40)
    assert list(encode(push)) == ["repository", "branch", "commit"]
    one = Operation("example", "master", "c" * 40, combination=(("PYTHON", "3.12"), ("DB", "postgres")))
    assert encode(one)["combination"] == [["PYTHON", "3.12"], ["DB", "postgres"]]
    assert decode_struct(Operation, encode(one)) == one
    assert combination_label(one.combination) == "PYTHON=3.12,DB=postgres"


@pytest.mark.parametrize("combination, problem", [
    ([["python", "3.12"]], "axis is not well formed"),
    ([["PYTHON", "3.12,DB=x"]], "value is not well formed"),
    ([["PYTHON", "$(id)"]], "value is not well formed"),
    ([["PYTHON", "-x"]], "value is not well formed"),
    ([["PYTHON"]], r"a combination's entry must be \[axis, value\]"),
    ([], "combination must be a list of 1 to"),
    ([["A", "1"]] * (MAX_AXES + 1), "combination must be a list of 1 to"),
])
def test_malformed_combinations_are_refused(combination, problem):
    wire = {**encode(Operation("example", "master", "c" * 40)), "combination": combination}
    with pytest.raises(MessageError, match=problem):
        decode_struct(Operation, wire)


def test_too_many_combinations_in_a_result_are_refused():
    wire = {**encode(Result("matrix", None, "c" * 40)), "combinations": [[["A", str(i)]] for i in range(MAX_COMBINATIONS + 1)]}
    with pytest.raises(MessageError, match="combinations must be a list of 0 to"):
        decode_struct(Result, wire)


def test_a_matrix_expansion_has_no_attestation_and_a_combination_names_itself_in_its_own():
    push = Operation("example", "master", "c" * 40)
    assert statement(push, Result("matrix", None, "c" * 40, combinations=PYTHONS)) is None
    one = Operation("example", "master", "c" * 40, combination=PYTHONS[1])
    passed = Result("success", 0, "c" * 40, spec=SPEC)

    def annotations(operation: Operation) -> dict:
        return statement(operation, passed)["predicate"]["configuration"][0]["annotations"]

    assert annotations(one)["matrixCombination"] == "PYTHON=3.12"
    assert "matrixCombination" not in annotations(push)
