"""The schema idiom (shared/schema): each kind accepts, refuses with the value's path and
defaults; a document's problems come all at once; secrets, files, inline sections and a
section's own rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from shared.schema import (
    Bool, Choice, FilePath, Inline, Int, Invalid, ListOf, MapOf, Number, Reading, Section, Text, section, setting,
)

NAME = Text(re.compile(r"[a-z][a-z0-9-]*"), what="a valid name")
VARIABLE = Text(re.compile(r"[A-Z_][A-Z0-9_]*"), what="a variable name")


class TokenFile:
    """A file source as a loader gives one: the file's text, or None to leave it unread."""

    def read(self, path: Path, reading: Reading) -> str | None:
        if not reading.options.get("read_files", True):
            return None
        try:
            return path.read_text().strip()
        except OSError as error:
            raise Invalid(f"cannot read {path}: {error.strerror}") from None


def _engine_rules(engine: Engine, given: frozenset) -> Iterator[tuple[str, str]]:
    if "tls" in given and not engine.host.startswith("tcp://"):
        yield "tls", "is only for tcp:// hosts"


@section(check=_engine_rules)
class Engine:
    """Where jobs run; its keys stand in the enclosing mapping."""

    host: str = setting(Text(), default="", doc="the engine's address")
    tls: bool = setting(Bool(), default=False, doc="whether to speak TLS to it")


@section
class Child:
    """One child."""

    name: str = setting(NAME, doc="its name")
    weight: int = setting(Int(minimum=1), default=1, doc="its weight")


def _service_rules(service: Service, given: frozenset) -> Iterator[tuple[str, str]]:
    if service.mode == "safe" and "token" not in given:
        yield "token_file", "is required in safe mode"
    if len(service.children) > 2:
        yield "", "has too many children"


@section(check=_service_rules)
class Service:
    """A service, declared with every kind."""

    name: str = setting(NAME, doc="what it is called")
    port: int = setting(Int(1, 65535), doc="where it listens")
    ratio: float = setting(Number(above=0), default=1.0, doc="a share of something")
    delay_s: float = setting(Number(minimum=0), default=0.0, doc="how long it waits")
    on: bool = setting(Bool(), default=False, doc="whether it runs")
    mode: str = setting(Choice(("fast", "safe"), what="a mode"), default="fast", doc="how it runs")
    tags: tuple[str, ...] = setting(ListOf(NAME, max_items=3, unique=True), default=(), doc="its tags")
    mail: tuple[str, ...] = setting(ListOf(Text(), min_items=1, single=True), default=(), doc="one or more")
    environment: tuple[tuple[str, str], ...] = setting(MapOf(VARIABLE, Text(), max_items=2), default=(),
                                                       doc="variables it gets")
    log: Path | None = setting(FilePath(), default=None, doc="where it logs")
    data: Path = setting(FilePath(), default=Path("data"), doc="where it keeps data")
    token: str = setting(Text(re.compile(r"[!-~]{8,}"), what="a token", secret=True), default="", file=TokenFile(),
                         doc="what callers send")
    engine: Engine = setting(Inline(Engine, "engine_"), default=Engine(), doc="where its jobs run")
    child: Child | None = setting(Section(Child), default=None, doc="its favourite child")
    children: tuple[Child, ...] = setting(ListOf(Section(Child), unique="name"), default=(), doc="its children")


def read(document: dict, base: Path = Path("/srv"), **options) -> tuple[Service, list[str]]:
    reading = Reading(base, options)
    service = reading.section(Service, document, "services[1]")
    return service, reading.problems


def problems_of(document: dict, **options) -> list[str]:
    return read({"name": "web", "port": 80, "token": "a-long-token", **document}, **options)[1]


def test_each_kind_keeps_its_value_in_the_form_the_program_uses():
    service, problems = read({
        "name": "web", "port": 8080, "ratio": 2, "delay_s": 0.5, "on": True, "mode": "safe", "tags": ["a", "b"],
        "mail": "ops", "environment": {"A": "1", "B_2": "x"}, "log": "log/web.log", "token": "s3cret-token",
        "engine_host": "tcp://build:2376", "engine_tls": True, "child": {"name": "kid"},
        "children": [{"name": "one", "weight": 3}],
    })

    assert problems == []
    assert (service.port, service.ratio, service.delay_s, service.on, service.mode) == (8080, 2.0, 0.5, True, "safe")
    assert isinstance(service.ratio, float)  # YAML's integer 2 is a number too
    assert service.tags == ("a", "b") and service.mail == ("ops",)  # one item alone stands for a list
    assert service.environment == (("A", "1"), ("B_2", "x"))
    assert service.log == Path("/srv/log/web.log")  # relative to the document's folder
    assert service.engine == Engine("tcp://build:2376", True)
    assert service.child == Child("kid") and service.children == (Child("one", 3),)


def test_a_setting_left_out_or_null_takes_its_default_and_a_path_default_is_resolved_too():
    for document in ({}, {"ratio": None, "tags": None, "engine_host": None, "child": None}):
        service, problems = read({"name": "web", "port": 80, **document})
        assert problems == []
        assert (service.ratio, service.tags, service.engine, service.child, service.log) == (
            1.0, (), Engine(), None, None)
        assert service.data == Path("/srv/data")


@pytest.mark.parametrize("document, problem", [
    ({"port": "80"}, "services[1].port: expected an integer, got '80'"),
    ({"port": True}, "services[1].port: expected an integer, got true"),
    ({"port": 0}, "services[1].port: must be at least 1"),
    ({"port": 70000}, "services[1].port: must be at most 65535"),
    ({"ratio": 0}, "services[1].ratio: must be more than 0"),
    ({"ratio": "half"}, "services[1].ratio: expected a number, got 'half'"),
    ({"delay_s": -1}, "services[1].delay_s: must be at least 0"),
    ({"on": "yes"}, "services[1].on: expected a boolean, got 'yes'"),
    ({"mode": "slow"}, "services[1].mode: expected a mode (fast, safe), got 'slow'"),
    ({"name": 42}, "services[1].name: expected a valid name, got 42"),
    ({"name": "Web"}, "services[1].name: is not a valid name: 'Web'"),
    ({"tags": "a"}, "services[1].tags: expected a list, got 'a'"),
    ({"tags": ["a", "b", "c", "d"]}, "services[1].tags: must hold at most 3 items, not 4"),
    ({"tags": ["a", "B"]}, "services[1].tags[1]: is not a valid name: 'B'"),
    ({"tags": ["a", "b", "a"]}, "services[1].tags[2]: 'a' is already services[1].tags[0]"),
    ({"mail": []}, "services[1].mail: must not be empty"),
    ({"mail": {"to": "x"}}, "services[1].mail: expected a string, got a mapping"),
    ({"mail": ["ops", 7]}, "services[1].mail[1]: expected a string, got 7"),
    ({"environment": ["A=1"]}, "services[1].environment: expected a mapping, got a list"),
    ({"environment": {"a": "1"}}, "services[1].environment.a: is not a variable name: 'a'"),
    ({"environment": {"A": 1}}, "services[1].environment.A: expected a string, got 1"),
    ({"environment": {"A": "1", "B": "2", "C": "3"}}, "services[1].environment: must hold at most 2 entries, not 3"),
    ({"log": ""}, "services[1].log: expected a path, got ''"),
    ({"child": "kid"}, "services[1].child: expected a mapping, got 'kid'"),
    ({"child": {"weight": 2}}, "services[1].child.name: is required"),
    ({"children": [{"name": "a"}, "b"]}, "services[1].children[1]: expected a mapping, got 'b'"),
    ({"children": [{"name": "a"}, {"name": "a"}]},
     "services[1].children[1].name: 'a' is already the name of services[1].children[0]"),
], ids=lambda value: str(value)[:40])
def test_each_kind_refuses_with_the_values_path(document, problem):
    assert problems_of(document) == [problem]


def test_every_problem_is_reported_at_once_in_the_documents_order():
    service, problems = read({"port": 0, "ratio": -1, "on": 1, "tags": ["a", "a"], "child": {"nom": "x"},
                              "colour": "red"})

    assert problems == [
        "services[1].name: is required",
        "services[1].port: must be at least 1",
        "services[1].ratio: must be more than 0",
        "services[1].on: expected a boolean, got 1",
        "services[1].tags[1]: 'a' is already services[1].tags[0]",
        "services[1].child.name: is required",
        "services[1].child.nom: unknown setting; known here: name, weight",
        "services[1].colour: unknown setting",
    ]
    # Refused values stand in as their defaults (a required one as its kind's blank).
    assert (service.name, service.port, service.ratio, service.on) == ("", 0, 1.0, False)


def test_an_unknown_key_is_told_the_key_it_resembles_or_the_keys_there_are():
    assert problems_of({"ratoi": 2}) == ["services[1].ratoi: unknown setting; did you mean ratio?"]
    assert problems_of({"child": {"weigth": 2, "name": "x"}}) == [
        "services[1].child.weigth: unknown setting; did you mean weight?"]
    assert problems_of({"child": {"age": 2, "name": "x"}}) == [
        "services[1].child.age: unknown setting; known here: name, weight"]


def test_yaml_1_1_s_bare_on_as_a_key_is_the_setting_on():
    service, problems = read({"name": "web", "port": 80, True: True})

    assert problems == [] and service.on is True


def test_a_secret_is_never_shown_in_a_problem_nor_in_the_repr():
    assert problems_of({"token": "short"}) == ["services[1].token: is not a token"]
    assert problems_of({"token": 12345678}) == ["services[1].token: expected a token, got an integer"]
    service, _ = read({"name": "web", "port": 80, "token": "s3cret-token"})
    assert "s3cret" not in repr(service)


def test_a_value_may_be_kept_in_a_file_which_is_read_and_checked_as_the_value(tmp_path):
    (tmp_path / "token").write_text("from-the-file\n")
    (tmp_path / "short").write_text("short\n")

    service, problems = read({"name": "web", "port": 80, "token_file": "token"}, base=tmp_path)
    assert problems == [] and service.token == "from-the-file"
    assert read({"name": "web", "port": 80, "token_file": "short"}, base=tmp_path)[1] == [
        "services[1].token_file: is not a token"]
    assert read({"name": "web", "port": 80, "token_file": "absent"}, base=tmp_path)[1] == [
        f"services[1].token_file: cannot read {tmp_path / 'absent'}: No such file or directory"]
    # Left unread, the setting keeps its default; the section's rule sees it given all the same.
    unread, problems = read({"name": "web", "port": 80, "mode": "safe", "token_file": "absent"}, base=tmp_path,
                            read_files=False)
    assert problems == [] and unread.token == ""


def test_a_value_and_its_file_both_set_are_refused_rather_than_one_guessed():
    assert problems_of({"token_file": "token"}) == [
        "services[1].token_file: token and token_file both set: keep one"]


def test_a_sections_rules_name_the_key_the_document_used_and_the_section_itself():
    assert problems_of({"mode": "safe", "token": None}) == ["services[1].token_file: is required in safe mode"]
    assert problems_of({"children": [{"name": name} for name in "abc"]}) == ["services[1]: has too many children"]
    # An inline section's rule is said with its keys' prefix.
    assert problems_of({"engine_host": "unix:///run/docker.sock", "engine_tls": True}) == [
        "services[1].engine_tls: is only for tcp:// hosts"]


def test_the_reading_says_where_each_section_stands_and_which_of_its_settings_it_refused():
    reading = Reading(Path("/srv"), {})
    service = reading.section(Service, {"name": "web", "port": "x", "children": [{"name": "a"}, {"name": "B"}]},
                              "services[1]")

    first, second = service.children
    assert [reading.where(child) for child in service.children] == ["services[1].children[0]",
                                                                    "services[1].children[1]"]
    assert reading.refused(service) == {"port", "children"} and reading.refused(second) == {"name"}
    assert reading.refused(first) == set()


def test_a_setting_told_to_stand_in_is_neither_required_nor_judged_when_left_out_and_read_when_given(tmp_path):
    """A network document checked alone: what a host's own file gives stands in for it."""
    def host_files(declared) -> bool:
        return declared.key in ("token", "child")

    reading = Reading(tmp_path, {}, stands_in=host_files)
    service = reading.section(Service, {"name": "web", "port": 80, "mode": "safe", "children": [
        {"name": name} for name in "abc"]}, "services[1]")
    # The rule that needs a token is not said; the service's other rule is.
    assert reading.problems == ["services[1]: has too many children"]
    assert (service.token, service.child) == ("", None)
    assert reading.refused(service) == {"token", "child"}  # rules across sections skip them
    (tmp_path / "token").write_text("short\n")
    given = Reading(tmp_path, {}, stands_in=host_files)
    given.section(Service, {"name": "web", "port": 80, "token_file": "token"}, "services[1]")
    assert given.problems == ["services[1].token_file: is not a token"]
