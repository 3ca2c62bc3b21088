""".pbft-ci.yml's reasons where the schema idiom had to be told the spec's own ways
(builder/plan/specvalues.py): a null that is a value and not "left out", a key left out that
is refused as its kind refuses null, `commands` or `steps`, named entries, and the words nodes
have always signed. Each reason is whole, as a node signs it: the spec parser written by hand
gave these same texts."""

from __future__ import annotations

import pytest

from builder.plan.spec import parse_build_spec

STEP_NAME = "must be 1 to 64 letters, digits, '.', '_' or '-', not starting with . _ -"


def reason(text: str) -> str:
    with pytest.raises(ValueError) as refused:
        parse_build_spec(text.encode())
    return str(refused.value).removeprefix(".pbft-ci.yml: ")


@pytest.mark.parametrize("text, expected", [
    # A null is a value of these settings, which their kinds refuse.
    ("steps: null\n", "steps: must be a non-empty list of steps"),
    ("steps: [{name: s, commands: [a], failure: null}]\n", "steps.s.failure: must be 'fail' or 'ignore'"),
    ("steps: [{name: s, commands: [a], when: {event: null}}]\n",
     "steps.s.when.event: must be an event or a list of events"),
    ("steps: [{name: s, commands: [a], when: {status: null}}]\n",
     "steps.s.when.status: must be a non-empty list of success and failure"),
    ("commands: [a]\nservices: [{name: db, image: x, ready: {command: c, timeout_s: null}}]\n",
     "services.db.ready.timeout_s: must be a positive number"),
    ("commands: [a]\ncache: {paths: [a], key_files: null}\n", "cache.key_files: must be a list of strings"),
    ("commands: [a]\nwhen: {branch: {include: null}}\n",
     "when.branch: include: must be a glob or a non-empty list of globs"),
    ("commands: [a]\nafter: [{name: d, commands: [a], status: null}]\n",
     "after[0].status: must be one or more of success, failure, error, timeout, skipped, cancelled"),
    ("commands: [a]\nmatrix: {include: null}\n",
     "matrix.include: must be a non-empty list of combinations (mappings of axes to values)"),
    # A required key left out is refused as its kind refuses null.
    ("commands: null\n", "commands: must be a non-empty list of strings"),
    ("commands: [a]\nservices: {db: {}}\n", "services.db.image: must be an image reference of at most 255 characters"),
    ("commands: [a]\nservices: [{name: db, image: x, ready: {}}]\n",
     "services.db.ready.command: must be a non-empty string"),
    ("steps: [{commands: [a]}]\n", f"steps[0].name: {STEP_NAME}"),
    # `commands` or `steps`: both are one problem, and `commands` is not read then.
    ("commands: 5\nsteps: [{name: s, commands: [a]}]\n", "commands and steps: a spec has one or the other"),
    ("steps: null\ncommands: [a]\n",
     "commands and steps: a spec has one or the other; steps: must be a non-empty list of steps"),
    # Named entries: by index until the name holds, by name after; a mapping's key is the name.
    ("steps: {1: {commands: [a]}}\n", f"steps[0].name: {STEP_NAME}"),
    ("steps: {s: [a]}\n", "steps[0]: must be a mapping with a name and commands"),
    ("steps: {s: {commands: [a], colour: red}}\n", "steps[0]: unknown key 'colour'"),
    # The words of the spec: unknown keys first, a filter's first problem alone, YAML 1.1's `on`.
    ("commands: [a]\nsurprise: 1\ntimeout_s: 0\n", "unknown key 'surprise'; timeout_s: must be a positive number"),
    ("commands: [a]\nwhen: {path: {only: x, include: [a]}}\n", "when.path: unknown key 'only' (include, exclude)"),
    ("on: push\ncommands: [a]\n", "unknown key True"),
    ("commands: [a]\nenvironment: {A: 2024-01-02}\n", "environment.A: must be a string, a number or a boolean"),
    ("commands: [a]\ntimeout_s: .nan\n", "timeout_s: must be a positive number"),
], ids=lambda value: value[:48])
def test_the_reason_is_the_one_nodes_have_always_signed(text, expected):
    assert reason(text) == expected


def test_null_is_left_out_where_it_always_was():
    assert parse_build_spec(b"commands: null\nsteps: [{name: s, commands: [a]}]\n").steps[0].name == "s"
    assert parse_build_spec(b"commands: [a]\ncache: null\nservices: null\nimage: null\nwhen: null\n").cache is None


def test_an_entry_of_a_mapping_of_steps_may_name_itself():
    assert [step.name for step in parse_build_spec(b"steps: {s: {commands: [a], name: t}}\n").steps] == ["t"]
