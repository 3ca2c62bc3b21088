"""`when:` and `[skip ci]`: parsing, globs and the decision, pure (builder/plan/triggers.py)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.plan.spec import parse_build_spec
from builder.plan.triggers import (
    MAX_CONDITIONS, MAX_PATTERNS, BaseSpec, Condition, Filter, Glob, Skips, Trigger, parse_when, skip_reason,
)

PUSH_MAIN = Trigger("push", "main")


def conditions(when) -> tuple[Condition, ...]:
    parsed, errors = parse_when(when)
    assert errors == []
    return parsed


def reason(when, trigger=PUSH_MAIN, message="change", changed=None) -> str | None:
    return skip_reason(conditions(when), trigger, message, changed)


# --- Globs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("main", "main", True),
        ("main", "mainline", False),
        ("release/*", "release/1.0", True),
        ("release/*", "release/1.0/fix", False),  # `*` stays within one segment
        ("release/**", "release/1.0/fix", True),
        ("**/*.md", "README.md", True),  # `**/` also matches no directory at all
        ("**/*.md", "docs/a/b.md", True),
        ("**/*.md", "docs/a/b.mdx", False),
        ("src/**", "src/", True),
        ("src/**", "srcs/x", False),
        ("src/**/test_*.py", "src/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/a_test.py", False),
        ("v?.?", "v1.0", True),
        ("v?.?", "v1/0", False),  # `?` never matches '/'
        ("*", "", True),
        ("", "", True),
        ("[abc]", "[abc]", True),  # no character classes: the rest is literal
        ("a.b", "axb", False),
    ],
)
def test_globs(pattern, path, matches):
    assert Glob(pattern).fullmatch(path) is matches


def reference(pattern: str) -> re.Pattern:
    """The same globs as a regular expression: `**/` is any run of whole segments."""
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out), re.DOTALL)


@settings(max_examples=400, deadline=None)
@given(st.text("ab/*?", max_size=10), st.text("ab/", max_size=12))
def test_globs_match_as_their_regular_expression_does(pattern, path):
    assert Glob(pattern).fullmatch(path) == bool(reference(pattern).fullmatch(path))


def test_a_glob_takes_time_linear_in_the_path_whatever_the_pattern():
    # A backtracking matcher takes exponential time here; the automaton reads each character once.
    pattern = "*a" * 30 + "b"
    assert Glob(pattern).fullmatch("a" * 5000) is False
    assert Glob("**/" * 50 + "x").fullmatch("a/" * 2000 + "x") is True


# --- Parsing --------------------------------------------------------------------------------


def test_a_mapping_or_a_list_of_mappings_with_lists_or_bare_strings():
    assert conditions({"event": "push", "branch": "main"}) == (
        Condition(("push",), Filter(include=("main",))),
    )
    assert conditions([
        {"event": ["push", "tag"], "path": {"include": ["src/**"], "exclude": ["**/*.md"]}},
        {"event": "pull_request", "branch": {"exclude": ["wip/*"]}},
    ]) == (
        Condition(("push", "tag"), path=Filter(("src/**",), ("**/*.md",))),
        Condition(("pull_request",), branch=Filter(exclude=("wip/*",))),
    )
    assert parse_when(None) == ((), [])


@pytest.mark.parametrize(
    "when, problem",
    [
        ([], "when: must be a mapping or a list of 1 to"),
        ([{"event": "push"}] * (MAX_CONDITIONS + 1), "when: must be a mapping or a list of 1 to"),
        ("push", "when: must be a mapping of event, branch and path"),
        ({}, "when: must be a mapping of event, branch and path"),
        ({"events": "push"}, "when: unknown key 'events'"),
        ({"event": "deploy"}, "when.event: unknown event 'deploy'"),
        ({"event": []}, "when.event: must be an event or a list of events"),
        ([{"event": "push"}, {"branch": 3}], "when[1].branch: must be a glob, a list of globs"),
        ({"branch": {"only": "main"}}, "when.branch: unknown key 'only'"),
        ({"path": {"include": []}}, "when.path: include or exclude must name a glob"),
        ({"path": ["x"] * (MAX_PATTERNS + 1)}, f"when.path: at most {MAX_PATTERNS} globs"),
        ({"path": [""]}, "when.path: each glob must be a non-empty string"),
        ({"branch": ["a\0b"]}, "when.branch: each glob must be a non-empty string"),
    ],
)
def test_bad_conditions_are_named_with_their_key(when, problem):
    parsed, errors = parse_when(when)
    assert parsed == () or errors
    assert any(error.startswith(problem) for error in errors), errors


def test_the_spec_reports_bad_conditions_with_its_other_problems():
    with pytest.raises(ValueError) as caught:
        parse_build_spec(b"commands: [make]\nwhen: {event: deploy}\ntimeout_s: -1\n")
    assert "when.event: unknown event 'deploy'" in str(caught.value)
    assert "timeout_s" in str(caught.value)
    assert parse_build_spec(b"commands: [make]\nwhen: {branch: main}\n").when == (
        Condition(branch=Filter(include=("main",))),
    )


# --- The decision ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["fix typo [skip ci]", "[CI SKIP] docs only\n\nbody", "x\n\n[Skip CI]"])
def test_a_skip_mark_anywhere_in_the_message_skips_whatever_the_conditions(message):
    assert reason(None, message=message) is not None
    assert reason({"event": "push"}, message=message).endswith("in the commit message")


def test_no_conditions_and_no_mark_build_everything():
    for event in ("push", "tag", "pull_request", "manual", "cron"):
        assert reason(None, Trigger(event, "anything")) is None


def test_event_and_branch_conditions():
    when = {"event": ["push", "pull_request"], "branch": ["main", "release/*"]}
    assert reason(when, Trigger("push", "main")) is None
    assert reason(when, Trigger("pull_request", "release/2.0")) is None
    assert reason(when, Trigger("tag", "main")) == "when: event tag is not push or pull_request"
    assert reason(when, Trigger("push", "feature/x")) == "when: branch feature/x does not match main, release/*"


def test_one_condition_of_a_list_that_holds_is_enough():
    when = [{"event": "push", "branch": "main"}, {"event": "tag"}]
    assert reason(when, Trigger("tag", "v1")) is None
    assert reason(when, Trigger("push", "dev")) == (
        "when: no condition holds (branch dev does not match main; event push is not tag)"
    )


def test_path_conditions_over_the_changed_paths():
    when = {"path": {"include": ["src/**"], "exclude": ["**/*.md"]}}
    assert reason(when, changed=("src/app.py", "README.md")) is None
    assert reason(when, changed=("src/notes.md",)) == "when: none of the 1 changed path matches src/** but not **/*.md"
    assert reason(when, changed=("docs/a.txt", "b")) == (
        "when: none of the 2 changed paths matches src/** but not **/*.md"
    )


def test_a_path_condition_holds_when_nobody_can_name_the_changes():
    # None: no `before`, a force push, or too many paths; (): a commit that changed nothing.
    when = {"path": "src/**"}
    assert reason(when, changed=None) is None
    assert reason(when, changed=()) is None


# --- Who decides: the built commit for a push, the base branch's spec for a pull request ------

BASE = "b" * 40
PULL_REQUEST = Trigger("pull_request", "main", BASE)


def test_a_push_is_decided_by_its_own_message_and_spec():
    marked = Skips(PUSH_MAIN, "docs [skip ci]", None)
    assert marked.before_spec() == "[skip ci] in the commit message"
    plain = Skips(PUSH_MAIN, "change", None)
    assert plain.before_spec() is None
    assert plain.of_spec(conditions({"event": "tag"})) == "when: event push is not tag"


def test_a_pull_requests_own_message_and_spec_never_skip_it():
    # A request naming another event for a pull request's ref is judged by its checkout.
    disguised = Trigger("push", "main", BASE, "refs/pull/3/head")
    for trigger in (PULL_REQUEST, disguised):
        for message in ("wip [skip ci]", "[CI SKIP]"):
            decide = Skips(trigger, message, None)
            assert decide.before_spec() is None
            assert decide.of_spec(conditions({"event": "tag"})) is None


def test_a_pull_request_is_skipped_by_its_base_specs_when_which_the_reason_names():
    base = BaseSpec(BASE, conditions({"event": "push"}))
    decide = Skips(PULL_REQUEST, "wip", ("src/app.py",), base)
    assert decide.before_spec() == f"when: event pull_request is not push (the base branch's spec at {BASE[:12]})"

    builds = BaseSpec(BASE, conditions([{"event": "push"}, {"event": "pull_request", "path": "src/**"}]))
    assert Skips(PULL_REQUEST, "[skip ci]", ("src/app.py",), builds).before_spec() is None
    assert Skips(PULL_REQUEST, "x", ("README.md",), builds).before_spec() == (
        "when: no condition holds (event pull_request is not push; none of the 1 changed path matches src/**) "
        f"(the base branch's spec at {BASE[:12]})"
    )


def test_a_steps_when_still_decides_and_no_mark_skips_a_step():
    for trigger in (PUSH_MAIN, PULL_REQUEST):
        decide = Skips(trigger, "[skip ci]", None)
        assert decide.of_step(conditions({"event": trigger.event})) is None
        assert decide.of_step(conditions({"event": "cron"})) == f"when: event {trigger.event} is not cron"
