"""Named entries (shared/schema/named.py): a list of sections or a mapping of names to them, each
said by its index until its name is read and by its name after, the names distinct."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.schema import Named, Reading, Section, Text, Wording, json_schema, markdown_reference, section, setting
from tests.shared.json_schema_check import schema_problems


@section
class Task:
    """A task, named."""

    name: str = setting(Text(re.compile(r"[a-z]+"), what="a task name"), doc="what it is called")
    runs: str = setting(Text(), doc="what it runs")
    weight: str = setting(Text(), default="1", doc="how much it counts")


@section
class Plan:
    """Tasks, by name."""

    tasks: tuple[Task, ...] = setting(Named(Section(Task), duplicate="another task is named {name!r}", min_items=1,
                                            max_items=3), doc="the tasks")


def read(tasks, wording: Wording = Wording()) -> tuple[tuple[Task, ...], list[str]]:
    reading = Reading(Path("/srv"), wording=wording)
    plan = reading.section(Plan, {"tasks": tasks}, "")
    return plan.tasks, reading.problems


def test_a_list_and_a_mapping_of_names_read_alike():
    listed = read([{"name": "build", "runs": "make"}, {"name": "test", "runs": "make test", "weight": "2"}])
    mapped = read({"build": {"runs": "make"}, "test": {"runs": "make test", "weight": "2"}})

    assert listed == mapped == ((Task("build", "make"), Task("test", "make test", "2")), [])


def test_an_entry_is_said_by_its_index_until_its_name_holds_then_by_its_name():
    assert read([{"name": "build"}])[1] == ["tasks.build.runs: is required"]
    assert read([{"name": "Build"}])[1] == ["tasks[0].name: is not a task name: 'Build'", "tasks[0].runs: is required"]
    assert read({"build": {"runs": 1}})[1] == ["tasks.build.runs: expected a string, got 1"]
    assert read(["build"])[1] == ["tasks[0]: expected a mapping, got 'build'"]
    assert read([{"name": "build", "runs": "make", "colour": 1}])[1] == [
        "tasks.build.colour: unknown setting; known here: name, runs, weight"]
    # A document's own words say an unknown key first, at the entry's index.
    words = Wording(unknown=lambda key: f"unknown key {key!r}")
    assert read([{"name": "build", "colour": 1}], words)[1] == ["tasks[0]: unknown key 'colour'",
                                                                 "tasks.build.runs: is required"]


def test_a_name_twice_is_refused_at_the_second_entry_once_both_read_whole():
    assert read([{"name": "a", "runs": "x"}, {"name": "a", "runs": "y"}])[1] == ["tasks[1]: another task is named 'a'"]
    assert read([{"name": "a", "runs": "x"}, {"name": "a"}])[1] == ["tasks.a.runs: is required"]
    # In a mapping, an entry that names itself wins over its key.
    assert read({"a": {"runs": "x"}, "b": {"name": "a", "runs": "y"}})[1] == ["tasks[1]: another task is named 'a'"]


@pytest.mark.parametrize("tasks, problem", [
    ([], "tasks: must not be empty"),
    ({}, "tasks: must not be empty"),
    ("build", "tasks: expected a list or a mapping of names, got 'build'"),
    ([{"name": n, "runs": "x"} for n in "abcd"], "tasks: must hold at most 3 items, not 4"),
])
def test_the_whole_is_counted(tasks, problem):
    assert read(tasks)[1] == [problem]


SCHEMA = json_schema(Plan, title="plan")


def test_the_json_schema_takes_a_list_of_named_entries_or_a_mapping_of_names_to_them():
    assert SCHEMA["properties"]["tasks"]["anyOf"][1] == {
        "type": "object", "propertyNames": {"type": "string", "pattern": "^(?:[a-z]+)$"},
        "additionalProperties": {"$ref": "#/$defs/Task"}, "minProperties": 1, "maxProperties": 3}
    assert SCHEMA["$defs"]["Task"]["required"] == ["runs"]  # the name is the key, or required in a list
    assert schema_problems(SCHEMA, {"tasks": [{"name": "a", "runs": "x"}]}) == []
    assert schema_problems(SCHEMA, {"tasks": {"a": {"runs": "x"}}}) == []
    assert schema_problems(SCHEMA, {"tasks": [{"runs": "x"}]}) != []
    assert schema_problems(SCHEMA, {"tasks": {"A": {"runs": "x"}}}) != []


def test_the_reference_names_both_forms():
    rows = [line for line in markdown_reference(Plan, title="Plan") if line.startswith("| `tasks`")]
    assert rows == ["| `tasks` | list of up to 3 (mapping: [tasks[]](#tasks)), or a mapping of their names to them "
                    "| required | the tasks |"]
