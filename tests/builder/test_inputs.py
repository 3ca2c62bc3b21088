"""A spec's `inputs:` (builder/plan/inputs.py): what a manual run may give its build, read with
the rest of the spec, and checked by each node against the values the agreed request names,
so that every honest node builds with the same CI_INPUT_* variables or refuses alike."""

import pytest
import yaml

from builder.plan.compile import Expanded, Refused
from builder.plan.inputs import input_variables
from builder.plan.spec import parse_build_spec
from pbft.build import INPUT_VALUE, INPUTS, MAX_INPUTS, Operation
from pbft.wire import MessageError, decode_struct, encode
from tests.builder.plans import compiled, order

DECLARED = {
    "target": {"type": "choice", "options": ["staging", "production"], "description": "where to deploy"},
    "dry_run": {"type": "boolean", "default": True},
    "note": {},
    "level": {"default": 3},
}
SPEC = {"commands": ["env"], "inputs": DECLARED}


def spec_of(**keys) -> bytes:
    return yaml.safe_dump({"commands": ["env"], **keys}).encode()


def test_each_declared_input_reaches_the_build_with_the_given_value_else_its_default():
    plan = compiled(SPEC, build_order=order(inputs=(("target", "production"), ("note", "hotfix #12"))))

    variables = plan.build.environment
    assert {name: value for name, value in variables.items() if name.startswith("CI_INPUT_")} == {
        "CI_INPUT_TARGET": "production", "CI_INPUT_DRY_RUN": "true", "CI_INPUT_NOTE": "hotfix #12",
        "CI_INPUT_LEVEL": "3",
    }


def test_a_build_nobody_gave_inputs_sees_the_defaults_a_choice_its_first_option_a_boolean_false():
    plan = compiled({**SPEC, "inputs": {**DECLARED, "flag": {"type": "boolean"}}})

    variables = plan.build.environment
    assert (variables["CI_INPUT_TARGET"], variables["CI_INPUT_NOTE"], variables["CI_INPUT_FLAG"]) == (
        "staging", "", "false")


def test_every_step_and_service_of_a_pipeline_sees_them():
    pipeline = {"inputs": {"mode": {}}, "services": [{"name": "db", "image": "db-image"}],
                "steps": [{"name": "a", "commands": ["a"]}, {"name": "b", "commands": ["b"]}]}

    plan = compiled(pipeline, build_order=order(inputs=(("mode", "fast"),)))

    assert [step.environment["CI_INPUT_MODE"] for step in plan.build.steps] == ["fast", "fast"]
    assert plan.build.services[0].environment["CI_INPUT_MODE"] == "fast"


@pytest.mark.parametrize("given, reason", [
    ((("target", "prod"),), "input target: 'prod' is not one of staging, production"),
    ((("dry_run", "yes"),), "input dry_run: 'yes' is not true or false"),
    ((("colour", "red"),), "input colour is not declared in the spec (its inputs are target, dry_run, note, level)"),
    ((("note", "a"), ("note", "b")), "input note is given twice"),
])
def test_a_value_the_spec_does_not_take_is_refused_with_the_reason(given, reason):
    plan = compiled(SPEC, build_order=order(inputs=given))

    assert plan.build == Refused(f".pbft-ci.yml: {reason}")


def test_inputs_are_checked_before_a_matrix_is_expanded_and_a_spec_without_them_takes_none():
    matrix = {**SPEC, "matrix": {"PY": ["3.11", "3.12"]}}

    assert isinstance(compiled(matrix, build_order=order(inputs=(("target", "production"),))).build, Expanded)
    assert compiled(matrix, build_order=order(inputs=(("target", "x"),))).build == Refused(
        ".pbft-ci.yml: input target: 'x' is not one of staging, production")
    assert compiled({"commands": ["env"]}, build_order=order(inputs=(("a", "1"),))).build == Refused(
        ".pbft-ci.yml: input a is not declared in the spec (it declares no inputs)")


def test_a_commit_without_a_spec_refuses_a_run_that_gives_inputs():
    assert compiled(None, build_order=order(inputs=(("a", "1"),))).build == Refused(
        "the run gives inputs; the commit has no .pbft-ci.yml to declare them")


@pytest.mark.parametrize("inputs, problem", [
    ({"a": {"type": "choice"}}, "inputs.a.options: a choice needs its options"),
    ({"a": {"type": "choice", "options": ["x"], "default": "y"}}, "inputs.a.default: 'y' is not one of the options"),
    ({"a": {"options": ["x"]}}, "inputs.a.options: only a choice has options"),
    ({"a": {"type": "boolean", "default": "maybe"}}, "inputs.a.default: a boolean's default is true or false"),
    ({"a": {"type": "choice", "options": ["x", "x"]}}, "inputs.a.options[1]: 'x' is already inputs.a.options[0]"),
    ({"Target": {}}, "inputs[0].name: must be 1 to 32 lowercase letters, digits and _, starting with a letter"),
    ({"a": {"type": "number"}}, "inputs.a.type: expected one of string, choice, boolean, got 'number'"),
    ({"a": {"default": "two\nlines"}}, "inputs.a.default: must be one line of at most 1024 characters, "
                                        "without control characters"),
    ({f"i{index}": {} for index in range(MAX_INPUTS + 1)}, f"inputs: at most {MAX_INPUTS} inputs"),
])
def test_a_declaration_that_cannot_hold_is_refused_where_it_is_written(inputs, problem):
    with pytest.raises(ValueError) as caught:
        parse_build_spec(spec_of(inputs=inputs))

    assert str(caught.value) == f".pbft-ci.yml: {problem}"


def test_the_wire_takes_plain_one_line_values_of_declared_shape_only():
    operation = Operation("example", "main", inputs=(("target", "production"), ("note", "ünïcode ok")))
    assert decode_struct(Operation, encode(operation)) == operation
    assert "inputs" not in encode(Operation("example", "main"))  # an operation without inputs is as before
    for value in ("a\nb", "\x1b[31m", "\u202eevil", "x" * 1025):
        assert INPUT_VALUE.fullmatch(value) is None
    with pytest.raises(MessageError):
        decode_struct(Operation, {**encode(operation), "inputs": [["Target", "x"]]})
    assert INPUTS.limit == MAX_INPUTS


def test_input_variables_name_each_input_once_in_capitals():
    spec = parse_build_spec(spec_of(inputs={"dry_run": {}, "x1": {"default": "v"}}))
    assert input_variables(spec.inputs, None) == {"CI_INPUT_DRY_RUN": "", "CI_INPUT_X1": "v"}
