"""`steps:` and `environment:` in .pbft-ci.yml (builder/plan/pipeline.py), and the CI variables
(builder/plan/civars.py): parsing, the order steps run in, and what every step is given."""

from __future__ import annotations

import subprocess

import pytest

from builder.plan.spec import parse_build_spec
from builder.plan.civars import BuildFacts, ci_variables
from builder.plan.pipeline import dependencies, narrowed, run_order
from builder.engine.gate import exported


def spec(text: str):
    return parse_build_spec(text.encode())


def problems(text: str) -> str:
    with pytest.raises(ValueError) as refused:
        spec(text)
    return str(refused.value)


def test_steps_run_in_declared_order_unless_depends_on_says_otherwise():
    parsed = spec("""
image: base:1
environment: {A: 1, B: true, C: text}
steps:
  - name: lint
    commands: [echo lint]
  - name: test
    image: other:2
    commands: [echo test]
    environment: {X: y}
  - name: report
    depends_on: [package]
    commands: [echo report]
    when: {status: [success, failure]}
  - name: package
    depends_on: [lint]
    commands: [echo package]
    failure: ignore
""")
    assert parsed.commands == () and parsed.environment == (("A", "1"), ("B", "true"), ("C", "text"))
    assert [step.name for step in run_order(parsed.steps)] == ["lint", "test", "package", "report"]
    assert dependencies(parsed.steps) == {
        "lint": (), "test": ("lint",), "report": ("package",), "package": ("lint",),
    }
    by_name = {step.name: step for step in parsed.steps}
    assert by_name["test"].image == "other:2" and by_name["lint"].image is None
    assert by_name["test"].environment == (("X", "y"),)
    assert by_name["report"].status == ("success", "failure") and by_name["lint"].status == ("success",)
    assert by_name["package"].ignore_failure and not by_name["lint"].ignore_failure


def test_steps_may_be_a_mapping_of_names_and_a_step_may_start_at_once():
    parsed = spec("steps:\n  one: {commands: [a]}\n  two: {commands: [b]}\n  three: {commands: [c], depends_on: []}\n")
    assert [step.name for step in parsed.steps] == ["one", "two", "three"]
    assert dependencies(parsed.steps)["three"] == ()
    # Free from the start, but declared after `one`: declaration order breaks the tie.
    assert [step.name for step in run_order(parsed.steps)] == ["one", "two", "three"]


def test_a_step_when_takes_the_trigger_conditions_too():
    parsed = spec("steps:\n  - name: deploy\n    commands: [x]\n    when: {event: [tag], branch: v*}\n")
    (condition,) = parsed.steps[0].conditions
    assert condition.events == ("tag",)


@pytest.mark.parametrize("text, problem", [
    ("steps: []", "steps: must be a non-empty list of steps"),
    ("commands: [a]\nsteps: [{name: s, commands: [b]}]", "commands and steps: a spec has one or the other"),
    ("steps: [{name: s, commands: [a]}, {name: s, commands: [b]}]", "another step is named 's'"),
    ("steps: [{name: -s, commands: [a]}]", "steps[0].name: must be 1 to 64 letters"),
    ("steps: [{name: s}]", "steps.s.commands: must be a non-empty list of strings"),
    ("steps: [{name: s, commands: [a], depends_on: [t]}]", "steps.s.depends_on: no step is named 't'"),
    ("steps: [{name: s, commands: [a], depends_on: [s]}]", "a step cannot follow itself"),
    ("steps: [{name: s, commands: [a], depends_on: [t]}, {name: t, commands: [b], depends_on: [s]}]",
     "steps: depends_on makes a cycle"),
    ("steps: [{name: s, commands: [a], failure: maybe}]", "steps.s.failure: must be 'fail' or 'ignore'"),
    ("steps: [{name: s, commands: [a], when: {status: [done]}}]", "steps.s.when.status: must be a non-empty list"),
    ("steps: [{name: s, commands: [a], when: {event: [nope]}}]", "steps.s.when.event: unknown event 'nope'"),
    ("steps: [{name: s, commands: [a], services: [db]}]", "steps[0]: unknown key 'services'"),
    ("steps: [{name: s, commands: [a]}]\ncache: {paths: [~/.x]}", "cache.paths[0]: in a pipeline each step has"),
    ("commands: [a]\nenvironment: {CI_COMMIT_SHA: x}", "environment.CI_COMMIT_SHA: set by the node"),
    ("commands: [a]\nenvironment: {HOME: /root}", "environment.HOME: set by the node"),
    ("commands: [a]\nenvironment: {'A B': x}", "'A B' is not a variable name"),
    ("commands: [a]\nenvironment: {A: [1, 2]}", "environment.A: must be a string, a number or a boolean"),
    ("commands: [a]\nenvironment: [A=1]", "environment: must be a mapping"),
    ("steps: [{name: s, commands: [a], secrets: TOKEN}]", "steps.s.secrets: must be a list of at most 32 secret names"),
    ("steps: [{name: s, commands: [a], secrets: [token]}]", "steps.s.secrets: 'token' is not a secret's name"),
    ("steps: [{name: s, commands: [a], secrets: [A, A]}]", "steps.s.secrets: names a secret twice"),
    ("steps: [{name: s, commands: [a]}]\nservices: [{name: db, image: x, secrets: [1]}]",
     "services.db.secrets: '1' is not a secret's name"),
])
def test_bad_pipelines_are_refused_naming_the_key(text, problem):
    assert problem in problems(text)


def test_a_secret_name_that_is_a_list_is_refused_without_spelling_out_its_aliases():
    # Nine levels of ten aliases each stand for a billion strings in a few hundred bytes:
    # the list written out in the reason would take minutes and gigabytes on every node.
    lines = ['l0: &l0 "lol"'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "\n".join(lines) + "\nsteps: [{name: s, commands: [a], secrets: [*l9]}]\n"
    assert "steps.s.secrets: a list is not a secret's name" in problems(text)
    assert "steps.s.secrets: a mapping is not a secret's name" in problems(
        "steps: [{name: s, commands: [a], secrets: [{A: 1}]}]")


def test_a_step_or_service_may_list_the_secrets_it_gets_and_only_narrows_the_builds():
    parsed = spec("steps:\n  - {name: lint, commands: [a], secrets: []}\n  - {name: deploy, commands: [b], secrets: [TOKEN]}\n"
                  "  - {name: test, commands: [c]}\nservices:\n  - {name: db, image: x, secrets: [DB_PASSWORD]}\n")
    assert [step.secrets for step in parsed.steps] == [(), ("TOKEN",), None]
    assert parsed.services[0].secrets == ("DB_PASSWORD",)
    build = ("TOKEN", "OTHER")
    assert [narrowed(build, step.secrets) for step in parsed.steps] == [(), ("TOKEN",), build]
    # A name the build did not get is not made up.
    assert narrowed(build, parsed.services[0].secrets) == ()


def test_every_problem_is_reported_at_once():
    found = problems("steps: [{name: s, commands: [a], failure: x, when: {status: [y]}}]\nenvironment: {CI: z}")
    assert "steps.s.failure" in found and "steps.s.when.status" in found and "environment.CI:" in found


FACTS = BuildFacts(
    build_id="client-17", repository="example", event="push", branch="master", commit="c" * 40,
    message="Fix the parser\n\nLonger text.\n", author_name="A. Author", author_email="a@example.org",
)


def test_ci_variables_of_a_push_a_tag_and_a_pull_request():
    push = ci_variables(FACTS)
    assert push["CI"] == "true" and push["CI_COMMIT_SHA"] == "c" * 40 and push["CI_BUILD_ID"] == "client-17"
    assert push["CI_COMMIT_BRANCH"] == "master" and push["CI_COMMIT_REF"] == "refs/heads/master"
    assert push["CI_PIPELINE_EVENT"] == "push" and push["CI_REPO"] == "example"
    assert "CI_COMMIT_TAG" not in push and "CI_COMMIT_PULL_REQUEST" not in push
    tag = ci_variables(BuildFacts(**{**FACTS.__dict__, "event": "tag", "branch": "v1.2"}))
    assert tag["CI_COMMIT_TAG"] == "v1.2" and tag["CI_COMMIT_REF"] == "refs/tags/v1.2" and "CI_COMMIT_BRANCH" not in tag
    pull = ci_variables(BuildFacts(
        **{**FACTS.__dict__, "event": "pull_request", "pull_ref": "refs/pull/12/head", "before": "b" * 40}
    ))
    assert pull["CI_COMMIT_PULL_REQUEST"] == "12" and pull["CI_COMMIT_TARGET_BRANCH"] == "master"
    assert pull["CI_COMMIT_REF"] == "refs/pull/12/head" and pull["CI_PREV_COMMIT_SHA"] == "b" * 40


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_exported_values_reach_the_script_exactly_and_keep_its_line_numbers(shell):
    values = {
        "CI_COMMIT_MESSAGE": FACTS.message,
        "QUOTED": "it's $HOME `x` \"y\"",
        "ESCAPES": "a\\nb %s \\c\r\nend\n\n",
    }
    script = 'printf "%s\\0" "$CI_COMMIT_MESSAGE" "$QUOTED" "$ESCAPES"\necho "line $LINENO"'
    prefix = ["sh"] if shell == "sh" else ["busybox", "sh"]
    try:
        ran = subprocess.run([*prefix, "-e", "-c", exported(values, script)], capture_output=True, check=True)
        plain = subprocess.run([*prefix, "-e", "-c", script], capture_output=True, check=True)
    except FileNotFoundError:
        pytest.skip(f"{shell} is not installed")
    *printed, line = ran.stdout.split(b"\0")
    assert [value.decode() for value in printed] == list(values.values())
    # Whatever this shell counts for the script alone, it counts with the values exported.
    assert line == plain.stdout.split(b"\0")[-1]


def test_a_pipelines_cache_paths_are_in_the_workspace_its_steps_share():
    assert problems("""
image: i
cache: {paths: [~/.cache/pip, .tox]}
steps:
  - {name: test, commands: [pytest]}
""") == (".pbft-ci.yml: cache.paths[0]: in a pipeline each step has a home of its own: a cache path is relative to /workspace "
         "(point the tool's cache there, e.g. PIP_CACHE_DIR=/workspace/.cache/pip)")
    assert spec("image: i\ncache: {paths: [.tox]}\nsteps:\n  - {name: test, commands: [pytest]}\n").cache.paths == (
        ".tox",)
