"""What the schema idiom (shared/schema) holds beyond the network configuration's needs, for the
build spec's: rules over a whole list, scalars read as text, choices that mean another value,
unions, null as a value, a setting that stands in another's place, and a document's own words."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from shared.schema import (
    Choice, Inline, Invalid, Kind, ListOf, Number, OneOf, Reading, Section, Text, Wording, json_schema,
    markdown_reference, section, setting,
)
from tests.shared.json_schema_check import schema_problems

WORDS = Wording(unknown=lambda key: f"unknown key {key!r}", required_as_null=True, both="one or the other")
NAME = Text(re.compile(r"[a-z]+"), what="a name", refusal="must be lowercase letters")


def _apart(items: tuple, whole: bool) -> Iterator[tuple[str, str]]:
    seen = {}
    for index, value in items:
        if value in seen:
            yield f"[{index}]", f"repeats [{seen[value]}]"
        seen.setdefault(value, index)
    if whole and sum(len(value) for _, value in items) > 6:
        yield "", "too long in all"


@section
class Window:
    """When a job may run."""

    start: str = setting(NAME, doc="where it starts")
    days: tuple[str, ...] = setting(ListOf(NAME, max_items=3, refusal="must be a list of names", too_many="at most 3"),
                                    default=(), nullable=False, doc="the days it holds")


@section
class Span:
    """How far a job reaches; its keys stand in the job's mapping."""

    days: tuple[str, ...] = setting(ListOf(NAME, refusal="must be a list of names"), default=(), nullable=False,
                                    doc="the days it reaches")
    note: str = setting(Text(), default="", doc="why")


def _pick(value) -> Kind:
    if isinstance(value, dict):
        return WINDOW
    if isinstance(value, str):
        return NAME
    raise Invalid("must be a name or a mapping")


WINDOW = Section(Window, refusal="must be a mapping", nonempty=True)


@section(either=("command", "script"))
class Job:
    """A job, declared with the build spec's shapes."""

    command: str = setting(NAME, default="", doc="what it runs")
    script: str = setting(Text(), default="", doc="or this, in its place")
    tags: tuple[str, ...] = setting(ListOf(Text(), check=_apart, refusal="must be a list"), default=(),
                                    doc="labels, each once")
    variables: tuple = setting(ListOf(Text(scalars=True)), default=(), doc="values kept as text")
    failure: bool = setting(Choice(("fail", "ignore"), means={"fail": False, "ignore": True}), key="on_failure",
                            default=False, nullable=False, doc="whether a failure counts")
    limit_s: float = setting(Number(above=0, refusal="must be a positive number"), default=1.0, nullable=False,
                             doc="how long it may take")
    window: object = setting(OneOf(NAME, WINDOW, pick=_pick), default=None, doc="a name, or when it runs")
    around: Span | None = setting(Inline(Span, "around_"), default=None, doc="inline, when any of its keys is")


def read(document: dict, wording: Wording = Wording()) -> tuple[Job, list[str]]:
    reading = Reading(Path("/srv"), wording=wording)
    job = reading.section(Job, document, "jobs[0]")
    return job, reading.problems


def test_scalars_are_read_as_the_text_they_stand_for_and_a_choice_as_what_it_means():
    job, problems = read({"command": "make", "variables": ["x", 3, 2.5, True, False], "on_failure": "ignore"})

    assert problems == []
    assert job.variables == ("x", "3", "2.5", "true", "false")
    assert job.failure is True


def test_a_rule_over_a_whole_list_is_said_at_the_items_it_names():
    assert read({"command": "a", "tags": ["abc", "cd", "abc"]})[1] == [
        "jobs[0].tags[2]: repeats [0]", "jobs[0].tags: too long in all"]
    # The rule is told whether every item read: a refused one is left out of its items.
    assert read({"command": "a", "tags": ["abcd", 7, "abcd"]})[1] == [
        "jobs[0].tags[1]: expected a string, got 7", "jobs[0].tags[2]: repeats [0]"]


def test_a_kind_says_its_own_refusal_where_it_is_given_one():
    assert read({"command": "A"})[1] == ["jobs[0].command: must be lowercase letters"]
    assert read({"command": "a", "tags": "x"})[1] == ["jobs[0].tags: must be a list"]
    assert read({"command": "a", "limit_s": 0})[1] == ["jobs[0].limit_s: must be a positive number"]
    assert read({"command": "a", "window": {"start": "a", "days": ["a", "b", "c", "d"]}})[1] == [
        "jobs[0].window.days: at most 3"]


def test_a_union_reads_the_alternative_its_shape_picks():
    assert read({"command": "a", "window": "mon"})[0].window == "mon"
    assert read({"command": "a", "window": {"start": "mon"}})[0].window == Window("mon")
    assert read({"command": "a", "window": 3})[1] == ["jobs[0].window: must be a name or a mapping"]
    assert read({"command": "a", "window": {}})[1] == ["jobs[0].window: must be a mapping"]


def test_a_null_is_a_value_where_a_setting_says_so():
    assert read({"command": "a", "limit_s": None})[1] == ["jobs[0].limit_s: must be a positive number"]
    assert read({"command": "a", "around_days": None})[1] == ["jobs[0].around_days: must be a list of names"]
    assert read({"command": "a", "window": None})[1] == []  # nullable: left out


def test_of_two_settings_in_each_others_place_one_is_required_and_both_are_refused():
    assert read({"script": "make all"})[0].script == "make all"
    assert read({})[1] == ["jobs[0].command: is required"]
    assert read({"command": "a", "script": "b"})[1] == ["jobs[0].command and script: keep one of the two"]


def test_a_documents_own_words_say_unknown_keys_first_at_the_section_and_left_out_values_as_null():
    assert read({"command": "A", "colour": 1}, WORDS)[1] == [
        "jobs[0]: unknown key 'colour'", "jobs[0].command: must be lowercase letters"]
    assert read({}, WORDS)[1] == ["jobs[0].command: must be lowercase letters"]
    assert read({"command": "a", "script": "b"}, WORDS)[1] == ["jobs[0].command and script: one or the other"]
    assert read({"command": "a", "around_note": "b", "around_x": 1}, WORDS)[1] == ["jobs[0]: unknown key 'around_x'"]


SCHEMA = json_schema(Job, title="job")


def test_the_json_schema_of_the_new_shapes():
    properties = SCHEMA["properties"]
    assert properties["variables"]["anyOf"][0]["items"] == {
        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    assert properties["on_failure"] == {"enum": ["fail", "ignore"], "description": "whether a failure counts",
                                        "default": "fail"}  # not nullable, and its default as written
    assert properties["window"]["anyOf"][0] == {"oneOf": [
        {"type": "string", "pattern": "^(?:[a-z]+)$"}, {"$ref": "#/$defs/Window", "minProperties": 1}]}
    either = [{"required": [key], "properties": {key: {"not": {"type": "null"}}}} for key in ("command", "script")]
    assert SCHEMA["allOf"] == [{"not": {"allOf": either}}, {"anyOf": either}]


@pytest.mark.parametrize("document, holds", [
    ({"command": "a", "on_failure": "ignore", "variables": [1, "x", True]}, True),
    ({"script": "x", "window": {"start": "a"}}, True),
    ({"command": "a", "script": "b"}, False),
    ({}, False),
    ({"command": "a", "on_failure": None}, False),
    ({"command": "a", "window": {}}, False),
    ({"command": None, "script": "b"}, True),
])
def test_the_json_schema_holds_what_the_reading_holds(document, holds):
    assert (schema_problems(SCHEMA, document) == []) is holds
    assert (read(document)[1] == []) is holds


def test_the_reference_says_the_new_shapes():
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in markdown_reference(Job, title="Job")
            if line.startswith("| `")}
    assert rows["`command`"] == "| `command` | string: name | required, or `script` in its place | what it runs |"
    assert rows["`script`"].startswith("| `script` | string | none: `command` instead |")
    assert rows["`on_failure`"] == ("| `on_failure` | one of `fail`, `ignore` | `\"fail\"`, not null "
                                   "| whether a failure counts |")
    assert rows["`variables`"].startswith("| `variables` | list of (string, number or boolean) |")
    assert rows["`window`"].startswith("| `window` | string: name, or mapping: [window](#window) |")
