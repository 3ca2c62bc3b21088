"""`extends:` of steps and services and the top-level `x-` keys that hold templates and
anchors (builder/plan/templates.py, builder/plan/spec.py): a spec written with them is read
as the spec written out whole, and every way they can go wrong is refused at its key."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from builder.plan.spec import parse_build_spec
from builder.plan.templates import MAX_DEPTH, MAX_MERGED_KEYS, MAX_NAMED

WITH_TEMPLATES = b"""
x-python: &python
  image: pbft-ci/debian-python:bookworm
  environment: {PIP_NO_CACHE_DIR: "1", LEVEL: base}
  when: {status: [success]}
x-tested:
  extends: x-python
  retry: 1
  environment: {LEVEL: tested}
x-slow:
  timeout_s: 600
x-db:
  image: pbft-ci/debian-postgres:bookworm
  ready: {command: pg_isready, timeout_s: 30}
services:
  - name: db
    extends: x-db
    ready: {timeout_s: 60}
steps:
  - name: lint
    <<: *python
    commands: [ruff check .]
  - name: test
    extends: [x-tested, x-slow]
    commands: [pytest]
    environment: {A: "1"}
  - name: report
    extends: x-python
    image: pbft-ci/busybox:latest
    commands: [cat report.txt]
    when: {status: [success, failure]}
"""

WRITTEN_OUT = {
    "services": [{"name": "db", "image": "pbft-ci/debian-postgres:bookworm",
                  "ready": {"command": "pg_isready", "timeout_s": 60}}],
    "steps": [
        {"name": "lint", "image": "pbft-ci/debian-python:bookworm",
         "environment": {"PIP_NO_CACHE_DIR": "1", "LEVEL": "base"}, "when": {"status": ["success"]},
         "commands": ["ruff check ."]},
        {"name": "test", "image": "pbft-ci/debian-python:bookworm",
         "environment": {"PIP_NO_CACHE_DIR": "1", "LEVEL": "tested", "A": "1"}, "when": {"status": ["success"]},
         "retry": 1, "timeout_s": 600, "commands": ["pytest"]},
        {"name": "report", "image": "pbft-ci/busybox:latest",
         "environment": {"PIP_NO_CACHE_DIR": "1", "LEVEL": "base"}, "when": {"status": ["success", "failure"]},
         "commands": ["cat report.txt"]},
    ],
}


def without_extends(spec):
    return dataclasses.replace(
        spec, steps=tuple(dataclasses.replace(step, extends=()) for step in spec.steps),
        services=tuple(dataclasses.replace(service, extends=()) for service in spec.services),
    )


def test_a_spec_with_templates_reads_as_the_spec_written_out_whole():
    read = parse_build_spec(WITH_TEMPLATES)

    assert without_extends(read) == parse_build_spec(yaml.safe_dump(WRITTEN_OUT, sort_keys=False).encode())
    assert [step.extends for step in read.steps] == [(), ("x-tested", "x-slow"), ("x-python",)]
    assert read.services[0].extends == ("x-db",)


def test_steps_given_as_a_mapping_of_names_extend_too():
    read = parse_build_spec(b"x-t: {commands: [make], retry: 2}\nsteps:\n  build: {extends: x-t}\n")
    assert (read.steps[0].name, read.steps[0].commands, read.steps[0].retry) == ("build", ("make",), 2)


def chain(length: int) -> str:
    templates = "".join(f"x-t{index}: {{extends: x-t{index + 1}}}\n" for index in range(length))
    return templates + f"x-t{length}: {{retry: 1}}\nsteps: [{{name: s, commands: [a], extends: x-t0}}]\n"


@pytest.mark.parametrize("text, problem", [
    ("x-a: {extends: x-b}\nx-b: {extends: x-a}\nsteps: [{name: s, commands: [a], extends: x-a}]\n",
     "steps.s.extends: the templates extend each other in a circle: x-a -> x-b -> x-a"),
    ("x-a: {extends: x-a}\nsteps: [{name: s, commands: [a], extends: x-a}]\n",
     "steps.s.extends: the templates extend each other in a circle: x-a -> x-a"),
    ("steps: [{name: s, commands: [a], extends: x-nope}]\n",
     "steps.s.extends: 'x-nope' is no top-level key starting with x-"),
    ("steps: [{name: s, commands: [a]}, {name: t, commands: [b], extends: steps}]\n",
     "steps.t.extends: 'steps' is no top-level key starting with x-"),
    ("x-a: [1]\nsteps: [{name: s, commands: [a], extends: x-a}]\n",
     "steps.s.extends: x-a must be a mapping to be extended"),
    ("x-a: {extends: [3]}\nsteps: [{name: s, commands: [a], extends: x-a}]\n",
     "steps.s.extends: x-a.extends must be a template's name or a list of them"),
    ("steps: [{name: s, commands: [a], extends: 3}]\n", "steps.s.extends: must be a template's name or a list of them"),
    ("steps: [{name: s, commands: [a], extends: []}]\n", "steps.s.extends: must be a template's name or a list of them"),
    ("x-a: {}\nsteps: [{name: s, commands: [a], extends: [" + ", ".join(["x-a"] * (MAX_NAMED + 1)) + "]}]\n",
     f"steps.s.extends: at most {MAX_NAMED} templates"),
    (chain(MAX_DEPTH + 1), f"steps.s.extends: more than {MAX_DEPTH} templates deep: x-t0 -> x-t1"),
    ("commands: [a]\nx-a: {retry: 1}\nservices: [{name: db, image: i, extends: x-a}]\n",
     "services[0]: unknown key 'retry'"),
])
def test_templates_that_cannot_be_applied_are_refused_at_the_entrys_extends(text, problem):
    with pytest.raises(ValueError) as refused:
        parse_build_spec(text.encode())
    assert problem in str(refused.value)


def test_a_chain_as_deep_as_allowed_is_read():
    assert parse_build_spec(chain(MAX_DEPTH - 1).encode()).steps[0].retry == 1


def test_aliases_that_would_make_a_merge_walk_without_end_are_refused():
    """Each level holds the one below twice: small in the file, 2**24 keys when walked, and a
    merge of the template's with the entry's own walks both."""
    levels = ["x-l0: &l0 {a: 1, b: 2}"] + [f"x-l{n}: &l{n} {{p: *l{n - 1}, q: *l{n - 1}}}" for n in range(1, 24)]
    text = "\n".join(levels) + "\nx-t: {environment: *l23}\nsteps: [{name: s, commands: [a], extends: x-t, " \
        "environment: *l23}]\n"
    with pytest.raises(ValueError) as refused:
        parse_build_spec(text.encode())
    assert f"steps.s.extends: merging its templates visits more than {MAX_MERGED_KEYS} keys" in str(refused.value)
