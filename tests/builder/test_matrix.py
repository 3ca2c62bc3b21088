"""`matrix:` in .pbft-ci.yml (builder/plan/matrix.py): the combinations it expands into, what a
combination's build is given, and the matrices refused."""

from __future__ import annotations

import pytest

from builder.plan.spec import parse_build_spec
from builder.plan.matrix import MAX_LABEL_CHARS, check_combination
from pbft.build import MAX_COMBINATIONS, combination_label

PRODUCT = """
image: pbft-ci/python:${PYTHON}
environment: {APP: test}
matrix:
  PYTHON: ["3.11", 3.12]
  DB: [sqlite, postgres]
steps:
  - name: test
    commands: [pytest]
  - name: lint
    image: pbft-ci/lint:${DB}-py${PYTHON}
    commands: [ruff]
services:
  db:
    image: pbft-ci/${DB}:latest
"""


def spec(text: str, combination=None):
    return parse_build_spec(text.encode(), combination)


def problems(text: str, combination=None) -> str:
    with pytest.raises(ValueError) as refused:
        spec(text, combination)
    return str(refused.value)


def test_axes_expand_into_their_product_in_the_order_written():
    parsed = spec(PRODUCT)
    assert parsed.matrix == (
        (("PYTHON", "3.11"), ("DB", "sqlite")), (("PYTHON", "3.11"), ("DB", "postgres")),
        (("PYTHON", "3.12"), ("DB", "sqlite")), (("PYTHON", "3.12"), ("DB", "postgres")),
    )


def test_a_combination_sets_its_axes_as_variables_and_in_images_only():
    combination = (("PYTHON", "3.12"), ("DB", "postgres"))
    parsed = spec(PRODUCT, combination)
    assert parsed.combination == combination
    assert parsed.environment == (("APP", "test"), ("PYTHON", "3.12"), ("DB", "postgres"))
    assert parsed.image == "pbft-ci/python:3.12"
    assert [step.image for step in parsed.steps] == [None, "pbft-ci/lint:postgres-py3.12"]
    assert parsed.services[0].image == "pbft-ci/postgres:latest"
    # Commands are left as written: the shell expands the variable itself, in the build.
    assert spec("matrix: {V: [a]}\ncommands: ['echo ${V}']\n", (("V", "a"),)).commands == ("echo ${V}",)


def test_include_lists_the_combinations_themselves():
    parsed = spec("matrix:\n  include:\n    - {PYTHON: '3.11'}\n    - {PYTHON: '3.12', EXTRA: true}\ncommands: [t]\n")
    assert parsed.matrix == ((("PYTHON", "3.11"),), (("PYTHON", "3.12"), ("EXTRA", "true")))


def test_exclude_leaves_out_every_combination_an_entry_matches():
    parsed = spec("matrix:\n  A: [1, 2, 3]\n  B: [x, y, z]\n  exclude:\n    - {A: 2, B: y}\n    - {B: z}\n"
                  "commands: [t]\n")
    assert [combination_label(combination) for combination in parsed.matrix] == [
        "A=1,B=x", "A=1,B=y", "A=2,B=x", "A=3,B=x", "A=3,B=y"]
    # A combination left out is one the spec does not declare: no node builds it.
    assert "matrix: declares no combination A=2,B=y" in problems(
        "matrix: {A: [1, 2], B: [x, y], exclude: [{A: 2, B: y}]}\ncommands: [t]\n", (("A", "2"), ("B", "y")))


def test_a_spec_without_a_matrix_is_one_build_as_before():
    parsed = spec("commands: [make]\n")
    assert parsed.matrix == () and parsed.combination == () and parsed.environment == ()


def test_a_combination_the_spec_does_not_declare_is_refused():
    assert "matrix: declares no combination PYTHON=2.7,DB=sqlite" in problems(
        PRODUCT, (("PYTHON", "2.7"), ("DB", "sqlite")))
    # A combination is all its axes, in order: a part of one, or another order, is not one.
    assert "declares no combination PYTHON=3.11" in problems(PRODUCT, (("PYTHON", "3.11"),))
    assert "declares no combination DB=sqlite,PYTHON=3.11" in problems(PRODUCT, (("DB", "sqlite"), ("PYTHON", "3.11")))
    assert "the spec has no matrix" in problems("commands: [make]\n", (("PYTHON", "3.11"),))


@pytest.mark.parametrize("matrix, problem", [
    ("[a, b]", "matrix: must be a mapping of axes to lists of values, or include"),
    ("{}", "matrix: must be a mapping"),
    ("{python: [a]}", "matrix: 'python' is not an axis name"),
    ("{CI_PY: [a]}", "matrix.CI_PY: set by the node, not by a spec"),
    ("{HOME: [a]}", "matrix.HOME: set by the node"),
    ("{PY: []}", "matrix.PY: must be a non-empty list of values"),
    ("{PY: a}", "matrix.PY: must be a non-empty list of values"),
    ("{PY: [a, a]}", "matrix.PY[1]: repeats 'a'"),
    ("{PY: ['a b']}", "matrix.PY[0]: must be 1 to 64 letters, digits and . _ : / @ + -"),
    ("{PY: ['x,Y=1']}", "matrix.PY[0]: must be 1 to 64 letters"),
    ("{PY: ['$(id)']}", "matrix.PY[0]: must be 1 to 64 letters"),
    ("{PY: [{a: 1}]}", "matrix.PY[0]: must be 1 to 64 letters"),
    ("{A: [1, 2, 3, 4], B: [1, 2, 3, 4], C: [1, 2, 3]}", f"matrix: 48 combinations, at most {MAX_COMBINATIONS}"),
    (f"{{A: {list(range(MAX_COMBINATIONS + 1))}}}", f"matrix.A: at most {MAX_COMBINATIONS} values"),
    ("{include: [{A: 1}], B: [2]}", "matrix: include lists whole combinations; no axes beside it"),
    ("{include: []}", "matrix.include: must be a non-empty list of combinations"),
    ("{include: [{A: 1}, {A: 1}]}", "matrix: A=1 is declared twice"),
    ("{include: [{A: 1, B: 2}, {B: 2, A: 1}]}", "matrix: B=2,A=1 is declared twice"),
    ("{include: [a]}", "matrix.include[0]: must be a mapping of axes to values"),
    ("{include: [{a: 1}]}", "matrix.include[0]: 'a' is not an axis name"),
    ("{A: [1], exclude: [{A: 2}]}", "matrix.exclude[0].A: '2' is not one of A's values"),
    ("{A: [1], exclude: [{C: 1}]}", "matrix.exclude[0]: C is not an axis of the matrix"),
    ("{A: [1, 2], exclude: [{A: 1}, {A: 2}]}", "matrix: exclude leaves no combination"),
    ("{exclude: [{A: 1}]}", "matrix: must be a mapping of axes to lists of values, or include"),
    ("{A: [1], exclude: []}", "matrix.exclude: must be a non-empty list of mappings of axes to values"),
    ("{A: [1], exclude: [a]}", "matrix.exclude[0]: must be a mapping of axes to values"),
    ("{include: [{A: 1}], exclude: [{A: 1}]}", "matrix: include lists whole combinations; no axes beside it"),
])
def test_bad_matrices_are_refused_naming_the_key(matrix, problem):
    assert problem in problems(f"matrix: {matrix}\ncommands: [t]\n")


def test_a_combination_s_label_is_bounded():
    long_value = "v" * 64
    axes = ", ".join(f"AXIS_NUMBER_{index}: [{long_value}]" for index in range(4))
    assert f"longer than {MAX_LABEL_CHARS} characters" in problems(f"matrix: {{{axes}}}\ncommands: [t]\n")


def test_an_image_naming_no_axis_and_an_axis_also_in_environment_are_refused():
    assert "image: ${PY} names no axis of a matrix" in problems("image: a:${PY}\ncommands: [t]\n")
    assert "steps.t.image: ${PY} names no axis" in problems(
        "matrix: {V: [a]}\nsteps:\n  t: {image: 'a:${PY}', commands: [t]}\n")
    assert "environment.V: an axis of the matrix, which each combination sets" in problems(
        "matrix: {V: [a]}\nenvironment: {V: b}\ncommands: [t]\n")


def test_a_problem_of_some_combinations_only_names_the_first_it_is_found_in():
    # "UPPER" makes an image's name that is not lowercase: only that combination's.
    text = "image: pbft-ci/${V}:1\nmatrix: {V: [ok, UPPER]}\ncommands: [t]\nuser: nobody\n"
    found = problems(text)
    assert found.count("user: must be 'root' when given") == 1 and "user: must be 'root' when given (in" not in found
    assert "image: is not an image reference" in found and "(in V=UPPER)" in found


@pytest.mark.parametrize("combination", [
    (), (("A", "1"),) * 9, (("a", "1"),), (("A", "1 2"),), (("A", "1"), ("A", "2")), [("A", "1")], (("A",),),
])
def test_a_malformed_combination_from_a_request_is_refused(combination):
    with pytest.raises(ValueError):
        check_combination(combination)
    check_combination((("A", "1"), ("B", "x.y")))
