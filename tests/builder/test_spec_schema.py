"""`.pbft-ci.yml`'s JSON Schema held against its loader. Both come from one declaration
(builder/plan/spec.py and the sections it names): every key the loader reads is in the schema
and every key of the schema is one the loader reads, every spec the docs show passes both, the
schema never refuses a spec the loader takes, and what it refuses the loader refuses too."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from builder.plan.spec import BuildSpec, parse_build_spec
from shared.schema import Inline, Section, json_schema, schema_of
from tests.shared.json_schema_check import schema_problems

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json_schema(BuildSpec, title="pbft-ci build spec (.pbft-ci.yml)")
# What editors get: SCHEMA and the top-level x- keys (scripts/spec_reference.py writes it).
PUBLISHED = json.loads((ROOT / "docs" / "schema" / "pbft-ci.schema.json").read_text())

# A spec that gives every key there is but those of the one-script form (below).
BRANCHES = {"include": ["main", "release/*"], "exclude": ["wip/*"]}
PATHS = {"include": ["src/**"], "exclude": ["**/*.md"]}
EVERY_KEY = {
    "image": "pbft-ci/busybox:latest",
    "steps": [
        {"name": "lint", "image": "pbft-ci/lint:${PY}", "commands": ["ruff check ."], "environment": {"A": 1},
         "secrets": ["TOKEN"], "depends_on": [], "failure": "ignore", "retry": 2, "timeout_s": 120,
         "when": {"status": ["success", "failure"], "event": "push", "branch": BRANCHES, "path": PATHS}},
        {"name": "test", "commands": ["pytest"], "depends_on": "lint", "extends": "x-tested"},
    ],
    "services": [{"name": "db", "image": "pbft-ci/postgres:15", "commands": ["postgres"], "secrets": [],
                  "environment": {"PGDATA": "/tmp"}, "ready": {"command": "pg_isready", "timeout_s": 30},
                  "extends": ["x-service"]}],
    "x-tested": {"retry": 1},
    "x-service": {"environment": {"TZ": "UTC"}},
    "environment": {"APP_ENV": "test", "DEBUG": False},
    "timeout_s": 600,
    "user": "root",
    "artifacts": ["dist/*.whl"],
    "reports": {"junit": ["reports/*.xml"]},
    "when": [{"event": ["push", "tag"], "branch": BRANCHES}, {"path": PATHS}],
    "matrix": {"PY": ["3.11", 3.12], "fail_fast": True, "max_parallel": 1},
    "inputs": [{"name": "note", "description": "a string input, listed"}],
    "after": [{"name": "deploy", "image": "pbft-ci/deploy:1", "commands": ["./deploy.sh"],
               "when": {"event": "push", "branch": BRANCHES}, "status": "success", "secrets": ["DEPLOY_TOKEN"],
               "environment": "production"}],
    "concurrency": {"group": "deploy-lab", "cancel_in_progress": True},
}
# The files the specs here include, as a node reads them at the commit.
INCLUDED = {
    "ci/common.yml": b"environment: {SHARED: '1'}\n",
    # What docs/pipelines.md's example of include: names.
    "ci/templates.yml": b"x-python: {image: pbft-ci/debian-python:bookworm}\n",
    "ci/services.yml": b"services: [{name: db, image: pbft-ci/debian-postgres:bookworm}]\n",
}
ONE_SCRIPT = {"commands": ["make"], "cache": {"paths": ["~/.cache/pip"], "key_files": ["requirements.txt"]},
              "include": ["ci/common.yml"],
              "matrix": {"include": [{"PY": "3.11", "DB": "sqlite"}], "fail_fast": False, "max_parallel": 4},
              "inputs": {"target": {"type": "choice", "options": ["staging", "production"], "default": "staging",
                                    "description": "where it goes"}, "dry_run": {"type": "boolean"}}}
# Steps and services as mappings of their names.
BY_NAME = {"steps": {"lint": {"commands": ["ruff"]}, "test": {"commands": ["pytest"], "depends_on": "lint"}},
           "services": {"db": {"image": "pbft-ci/postgres:15"}}}


def loads(document: Any) -> list[str]:
    """The loader's problems with `document`, [] when it takes it."""
    try:
        parse_build_spec(yaml.safe_dump(document).encode(), read=INCLUDED.get)
    except ValueError as refused:
        return [str(refused)]
    return []


def declared_keys(cls: type = BuildSpec, at: str = "", seen: frozenset = frozenset()) -> Iterator[str]:
    """Every key the loader reads, by its path (`steps.when.status`; a list, a mapping of names
    and an item alone in place of a list are all one place): the sections' keys, down through
    every kind that holds a section."""
    for declared in schema_of(cls).settings:
        if isinstance(declared.kind, Inline):
            yield from declared_keys(declared.kind.cls, at, seen)
            continue
        path = f"{at}.{declared.key}" if at else declared.key
        yield path
        for inner in _sections(declared.kind):
            if inner not in seen:
                yield from declared_keys(inner, path, seen | {inner})


def _sections(kind) -> Iterator[type]:
    if isinstance(kind, Section):
        yield kind.cls
        return
    for held, _ in kind.nested():
        yield from _sections(held)


def schema_keys(schema: dict, at: str = "", seen: frozenset = frozenset()) -> Iterator[str]:
    """Every key the JSON Schema names, by the same paths."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        if name not in seen:
            yield from schema_keys(SCHEMA["$defs"][name], at, seen | {name})
    for key, inner in schema.get("properties", {}).items():
        path = f"{at}.{key}" if at else key
        yield path
        yield from schema_keys(inner, path, seen)
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            yield from schema_keys(schema[keyword], at, seen)
    for keyword in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(keyword, []):
            yield from schema_keys(option, at, seen)


def used_keys(document: Any, at: str = "") -> Iterator[str]:
    """The paths of the keys a document gives."""
    if isinstance(document, list):
        for item in document:
            yield from used_keys(item, at)
    elif isinstance(document, dict):
        for key, value in document.items():
            path = f"{at}.{key}" if at else key
            yield path
            named = path in ("steps", "services", "inputs") and isinstance(value, dict)  # names to entries
            for inner in (value.values() if named else [value]):
                yield from used_keys(inner, path)


def test_every_key_the_loader_reads_is_in_the_schema_and_the_reverse():
    declared = set(declared_keys())
    assert declared == set(schema_keys(SCHEMA))
    assert {"steps.when.status", "steps.when.path.include", "services.ready.timeout_s", "when.event",
            "cache.key_files", "matrix.include", "after.secrets", "after.when.branch.exclude"} <= declared


@pytest.mark.parametrize("document", [EVERY_KEY, ONE_SCRIPT, BY_NAME], ids=["every key", "one script", "by name"])
def test_specs_with_every_key_pass_both(document):
    assert loads(document) == []
    assert schema_problems(SCHEMA, document) == []


def test_the_specs_with_every_key_give_every_key_there_is():
    # An action's `when:` is read with a build's conditions, and refuses a path condition.
    unused = set(declared_keys()) - set(used_keys(EVERY_KEY)) - set(used_keys(ONE_SCRIPT))
    assert unused == {"after.when.path", "after.when.path.include", "after.when.path.exclude"}


def mappings(document: Any, path: tuple = ()) -> Iterator[tuple]:
    """The path of every mapping in `document` whose keys are a section's (not names or axes,
    nor an x- key's, the author's own)."""
    if path and str(path[0]).startswith("x-"):
        return
    if isinstance(document, dict):
        if path[-1:] not in (("environment",), ("matrix",), ("services",)) and path[-2:-1] != ("include",):
            yield path
        for key, value in document.items():
            yield from mappings(value, path + (key,))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from mappings(item, path + (index,))


@pytest.mark.parametrize("path", list(mappings(EVERY_KEY)) + [("cache",)], ids=str)
def test_a_key_no_section_has_is_refused_by_both(path):
    document = copy.deepcopy(ONE_SCRIPT if path == ("cache",) else EVERY_KEY)
    target = document
    for part in path:
        target = target[part]
    target["surprise"] = 1
    assert "unknown key 'surprise'" in "".join(loads(document))
    assert schema_problems(SCHEMA, document) != []


def spec_blocks() -> list:
    """Each YAML block of the docs that shows (part of) a spec, made whole with a script when
    it shows neither `commands` nor `steps`."""
    keys = set(SCHEMA["properties"])
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        for block in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            document = yaml.safe_load(block.group(1))
            if isinstance(document, dict) and {key for key in document if not key.startswith("x-")} <= keys:
                if "commands" not in document and "steps" not in document:
                    document["commands"] = ["true"]
                line = text[:block.start()].count("\n") + 1
                found.append(pytest.param(document, id=f"{page.name}:{line}"))
    return found


ANCHORED = b"""
x-python: &python
  image: pbft-ci/debian-python:bookworm
  environment: {A: "1"}
  retry: 1
x-unused: [whatever, {the: author}, wants]
steps:
  - name: lint
    <<: *python
    commands: [ruff check .]
  - name: test
    <<: *python
    commands: [pytest]
    retry: 0
"""


def test_top_level_x_keys_hold_anchors_steps_merge_and_are_never_read():
    python = {"image": "pbft-ci/debian-python:bookworm", "environment": {"A": "1"}}
    expanded = {"steps": [
        {"name": "lint", **python, "retry": 1, "commands": ["ruff check ."]},
        {"name": "test", **python, "retry": 0, "commands": ["pytest"]},
    ]}

    assert parse_build_spec(ANCHORED) == parse_build_spec(yaml.safe_dump(expanded).encode())
    # The schema editors get (docs/schema, scripts/spec_reference.py) takes them at the top level.
    assert schema_problems(PUBLISHED, yaml.safe_load(ANCHORED)) == []
    # Below the top level an x- key is a key like any other: unknown.
    nested = {"steps": [{"name": "s", "commands": ["a"], "x-mine": 1}]}
    assert "steps[0]: unknown key 'x-mine'" in "".join(loads(nested))
    assert schema_problems(PUBLISHED, nested) != []


def test_the_docs_show_specs():
    assert len(spec_blocks()) >= 10


@pytest.mark.parametrize("example", spec_blocks())
def test_each_spec_the_docs_show_passes_the_loader_and_the_schema(example):
    assert loads(example) == []
    assert schema_problems(PUBLISHED, example) == []


@pytest.mark.parametrize("document, problem", [
    ({"commands": ["make"], "surprise": 1}, "unknown key 'surprise'"),
    ({}, "commands: must be a non-empty list of strings"),
    ({"commands": ["a"], "steps": [{"name": "s", "commands": ["b"]}]},
     "commands and steps: a spec has one or the other"),
    ({"steps": [{"name": "-s", "commands": ["a"]}]}, "steps[0].name: must be 1 to 64 letters"),
    ({"steps": {"test": {"commands": "pytest"}}}, "steps.test.commands: must be a non-empty list of strings"),
    ({"steps": [{"name": "s", "commands": ["a"], "failure": None}]}, "steps.s.failure: must be 'fail' or 'ignore'"),
    ({"steps": [{"name": "s", "commands": ["a"], "retry": 6}]}, "steps.s.retry: must be at most 5"),
    ({"steps": [{"name": "s", "commands": ["a"], "retry": True}]}, "steps.s.retry: expected an integer, got true"),
    ({"steps": [{"name": "s", "commands": ["a"], "timeout_s": -1}]}, "steps.s.timeout_s: must be a positive number"),
    ({"commands": ["a"], "services": [{"name": "db"}]}, "services.db.image: must be an image reference"),
    ({"commands": ["a"], "environment": {"HOME": "/root"}}, "environment.HOME: set by the node, not by a spec"),
    ({"commands": ["a"], "timeout_s": 0}, "timeout_s: must be a positive number"),
    ({"commands": ["a"], "user": "nobody"}, "user: must be 'root' when given"),
    ({"commands": ["a"], "cache": {"paths": []}}, "cache.paths: must be a non-empty list of strings"),
    ({"commands": ["a"], "when": []}, "when: must be a mapping or a list of 1 to 16 mappings"),
    ({"commands": ["a"], "when": {"event": "deploy"}}, "when.event: unknown event 'deploy'"),
    ({"commands": ["a"], "matrix": {"include": [{"A": 1}], "B": [2]}}, "matrix: include lists whole combinations"),
    ({"commands": ["a"], "matrix": {"python": ["3.12"]}}, "matrix: 'python' is not an axis name"),
    ({"commands": ["a"], "after": [{"name": "deploy"}]}, "after[0].commands: must be a non-empty list of strings"),
], ids=lambda value: str(value)[:50])
def test_what_the_schema_refuses_the_loader_refuses_in_the_nodes_words(document, problem):
    assert schema_problems(SCHEMA, document) != []
    assert problem in "".join(loads(document))


POOL = [None, True, 0, -1, 2.5, "", "x", "-s", "HOME", "push", "deploy", "/abs", "a b", [], ["x"], [1], {}, {"x": 1},
        {"include": []}, {"A": [1]}, ["a", "a"]]


def mutated(document: Any, rng: random.Random) -> Any:
    """`document` with one value somewhere replaced, a key dropped or a key added."""
    document = copy.deepcopy(document)
    places = []

    def walk(value: Any) -> None:
        if isinstance(value, (dict, list)) and value:
            places.append(value)
            for inner in (value.values() if isinstance(value, dict) else value):
                walk(inner)

    walk(document)
    place = rng.choice(places)
    key = rng.choice(list(place) if isinstance(place, dict) else range(len(place)))
    if isinstance(place, dict) and rng.random() < 0.2:
        del place[key]
    elif isinstance(place, dict) and rng.random() < 0.2:
        place[rng.choice(["image", "name", "event", "paths", "status", "ready", "include", "X"])] = rng.choice(POOL)
    else:
        place[key] = copy.deepcopy(rng.choice(POOL))
    return document


def test_the_schema_never_refuses_a_spec_the_loader_takes():
    # The schema says less than the loader (a check in Python code has no JSON form), never more.
    rng, taken, refused = random.Random(40), 0, 0
    for _ in range(600):
        document = mutated(rng.choice([EVERY_KEY, ONE_SCRIPT]), rng)
        if loads(document) == []:
            taken += 1
            assert schema_problems(SCHEMA, document) == [], document
        else:
            refused += 1
    assert taken > 50 and refused > 300
