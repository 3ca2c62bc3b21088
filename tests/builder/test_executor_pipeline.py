"""Pipelines (`steps:`) on the real Docker engine: steps in their own images share one
workspace, each step's outcome is part of the result, the log has a section per step,
`when: status` and `failure: ignore` decide what runs after a failure, the deadline
covers every step and a step's own `timeout_s` ends it alone, and the CI variables reach
every step."""

import pytest
import yaml

from builder import BuildOrder, BuildResult
from tests.builder.executor_helpers import DEFAULT_IMAGE, build, log_text

pytestmark = pytest.mark.docker



def pipeline(*steps: dict, **options) -> str:
    return yaml.safe_dump({"steps": list(steps), **options}, sort_keys=False)


def agreed_steps(result: BuildResult) -> list[tuple]:
    return [(step.name, step.status, step.exit_code) for step in result.steps]


async def test_steps_in_two_images_share_the_workspace_and_each_has_its_section(
    make_executor, git_repo, build_ids, container_roles, python_image
):
    head = git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "make", "commands": ["echo made by $CI_STEP_NAME > made.txt", "echo \"A=$A B=$B\""],
         "environment": {"B": "step"}},
        {"name": "check", "image": python_image,
         "commands": ["python3 -c \"print(open('made.txt').read().strip(), 'in python')\"", "ls -a"]},
        environment={"A": "pipeline", "B": "pipeline"},
    )})
    build_id = build_ids()

    result = await make_executor().run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
    ))

    text = log_text(result)
    assert (result.status, result.exit_code, result.commit) == ("success", 0, head), text
    assert agreed_steps(result) == [("make", "success", 0), ("check", "success", 0)]
    assert all(step.duration_ms >= 0 for step in result.steps)
    assert container_roles[build_id] == ["holder", "step", "step"]
    # Each step's output sits between its own two lines, in the order the steps ran.
    assert text.index(f"== step make: image {DEFAULT_IMAGE}") < text.index("A=pipeline B=step") < text.index(
        "== step make: success exit_code 0") < text.index(f"== step check: image {python_image}") < text.index(
        "made by make in python") < text.index("== step check: success exit_code 0")


async def test_a_failed_step_fails_the_build_by_name_and_decides_what_runs_after_it(
    make_executor, git_repo, build_ids
):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "flaky-lint", "commands": ["exit 5"], "failure": "ignore"},
        {"name": "test", "commands": ["echo testing", "exit 3"]},
        {"name": "package", "commands": ["echo packaging"]},
        {"name": "report", "commands": ["echo reporting the failure"], "when": {"status": ["failure"]}},
        {"name": "always", "commands": ["echo always"], "when": {"status": ["success", "failure"]}},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("failure", 3), text
    assert result.reason == "step 'test' failed with exit code 3"
    assert agreed_steps(result) == [
        ("flaky-lint", "failure", 5), ("test", "failure", 3), ("package", "skipped", None),
        ("report", "success", 0), ("always", "success", 0),
    ]
    assert "packaging" not in text and "reporting the failure" in text
    assert "== step package: skipped, when: status is success, the build's is failure" in text


async def test_depends_on_orders_the_steps_and_an_ignored_failure_passes(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "second", "commands": ["cat order", "echo second >> order"], "depends_on": ["first"]},
        {"name": "first", "commands": ["echo first > order", "exit 1"], "failure": "ignore", "depends_on": []},
        {"name": "third", "commands": ["cat order"], "depends_on": ["second"]},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("success", 0), log_text(result)
    assert agreed_steps(result) == [("first", "failure", 1), ("second", "success", 0), ("third", "success", 0)]
    assert "first\nsecond\n" in log_text(result)


async def test_the_deadline_covers_every_step(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "quick", "commands": ["true"]},
        {"name": "slow", "commands": ["sleep 30"]},
        {"name": "never", "commands": ["echo never"], "when": {"status": ["success", "failure"]}},
        timeout_s=3,
    )})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.exit_code) == ("timeout", None), log_text(result)
    assert result.reason == "build exceeded 3 s (in step 'slow')"
    assert agreed_steps(result) == [("quick", "success", 0), ("slow", "timeout", None), ("never", "skipped", None)]
    assert result.steps[1].duration_ms < 10_000


async def test_a_step_for_failures_does_not_run_after_a_success(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "test", "commands": ["echo testing"]},
        {"name": "report", "commands": ["echo reporting the failure"], "when": {"status": ["failure"]}},
        {"name": "always", "commands": ["echo always"], "when": {"status": ["success", "failure"]}},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("success", 0), text
    assert agreed_steps(result) == [("test", "success", 0), ("report", "skipped", None), ("always", "success", 0)]
    assert "reporting the failure" not in text
    assert "== step report: skipped, when: status is failure, the build's is success" in text


async def test_a_step_over_its_own_timeout_fails_the_build_naming_it_and_the_cleanup_after_it_runs(
    make_executor, git_repo, build_ids
):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "slow", "commands": ["sleep 30"], "timeout_s": 1, "retry": 2},
        {"name": "lenient", "commands": ["sleep 30"], "timeout_s": 1, "failure": "ignore", "depends_on": []},
        {"name": "next", "commands": ["echo next"], "depends_on": ["slow", "lenient"]},
        {"name": "cleanup", "commands": ["echo cleaning up"], "depends_on": ["slow", "lenient"],
         "when": {"status": ["failure"]}},
        timeout_s=120,
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("failure", None), text
    assert result.reason == "step 'slow' exceeded its timeout_s of 1 s"
    assert agreed_steps(result) == [
        ("slow", "timeout", None), ("lenient", "timeout", None), ("next", "skipped", None),
        ("cleanup", "success", 0),
    ]
    assert result.steps[0].attempts == ()  # a step past its time is not run again
    assert result.steps[0].duration_ms < 10_000
    assert "step slow: exceeded its timeout_s of 1 s" in text and "cleaning up" in text


async def test_every_step_gets_the_ci_variables_of_the_request(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "show", "commands": ["env | grep '^CI' | sort", "printf '%s|' \"$CI_COMMIT_MESSAGE\""]},
    )}, message="Subject line\n\nBody text")
    build_id = build_ids()

    result = await make_executor().run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
        event="manual",
    ))

    text = log_text(result)
    assert result.status == "success", text
    for line in [
        "CI=true", f"CI_BUILD_ID={build_id}", f"CI_COMMIT_SHA={head}", "CI_COMMIT_BRANCH=master",
        "CI_COMMIT_REF=refs/heads/master", "CI_PIPELINE_EVENT=manual", "CI_REPO=example", "CI_STEP_NAME=show",
        "CI_COMMIT_AUTHOR=test", "CI_COMMIT_AUTHOR_EMAIL=test@pbft-ci.invalid", "CI_WORKSPACE=/workspace",
    ]:
        assert f"\n{line}\n" in text, line
    assert "Subject line\n\nBody text\n|" in text


async def test_a_pipelines_artifacts_are_taken_after_its_last_step(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "build", "commands": ["mkdir -p dist", "echo built > dist/app.txt"]},
        {"name": "sign", "commands": ["sha256sum dist/app.txt > dist/app.sha256"]},
        artifacts=["dist/*"],
    )})

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "success", log_text(result)
    assert sorted(result.artifact_digests()) == ["dist/app.sha256", "dist/app.txt"]
    assert result.artifacts is not None and result.artifacts.startswith("sha256:")


def _times(text: str, label: str) -> float:
    """The time a step printed as `<label> <seconds since the epoch>`."""
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(f"{label} ")))


@pytest.mark.slow
async def test_steps_that_do_not_follow_each_other_run_at_once_and_the_one_after_both_waits(
    make_executor, git_repo, build_ids
):
    stamp = "echo {} $(date +%s)"  # whole seconds: the image's date has no finer
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "a", "commands": [stamp.format("a-start"), "sleep 10", "echo a > a.txt"]},
        {"name": "b", "commands": [stamp.format("b-start"), "sleep 10", "echo b > b.txt"], "depends_on": []},
        {"name": "c", "commands": ["cat a.txt b.txt", stamp.format("c-end")], "depends_on": ["a", "b"]},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("success", 0), text
    assert agreed_steps(result) == [("a", "success", 0), ("b", "success", 0), ("c", "success", 0)]
    first = min(_times(text, "a-start"), _times(text, "b-start"))
    assert abs(_times(text, "a-start") - _times(text, "b-start")) < 5, text  # together, not one after the other
    assert _times(text, "c-end") - first <= 23, text  # not 30
    assert "a\nb\n" in text
    # Each step's output is one section, whichever printed first.
    for name in "abc":
        assert text.index(f"== step {name}: image") < text.index(f"== step {name}: success"), text
    a_section = text[text.index("== step a: image"):text.index("== step a: success")]
    assert "b-start" not in a_section and "== step b" not in a_section


async def test_a_failure_skips_what_follows_it_and_not_the_steps_beside_it(make_executor, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "broken", "commands": ["exit 4"]},
        {"name": "after-broken", "commands": ["echo never"]},
        {"name": "beside", "commands": ["echo beside ran"], "depends_on": []},
        {"name": "report", "commands": ["echo reported"], "depends_on": ["broken"], "when": {"status": ["failure"]}},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("failure", 4), text
    assert agreed_steps(result) == [
        ("broken", "failure", 4), ("after-broken", "skipped", None), ("beside", "success", 0),
        ("report", "success", 0),
    ]
    assert "beside ran" in text and "reported" in text and "never" not in text


async def test_a_step_that_fails_once_passes_on_its_retry_with_both_attempts_in_the_log(
    make_executor, git_repo, build_ids
):
    git_repo.commit("master", {".pbft-ci.yml": pipeline(
        {"name": "flaky", "retry": 2,
         "commands": ["if [ -f tried ]; then echo second try; else touch tried; echo first try; exit 7; fi"]},
        {"name": "stubborn", "retry": 1, "commands": ["echo stubborn", "exit 4"], "depends_on": []},
    )})

    result = await build(make_executor(), git_repo, build_ids)

    text = log_text(result)
    assert agreed_steps(result) == [("flaky", "success", 0), ("stubborn", "failure", 4)], text
    assert [step.attempts for step in result.steps] == [(7,), (4,)]
    assert (result.status, result.exit_code) == ("failure", 4)
    flaky = text[text.index("== step flaky: image"):text.index("== step flaky: success")]
    assert flaky.index("first try") < flaky.index(
        "== step flaky: attempt 1 of 3 failed with exit code 7; running it again") < flaky.index("second try")
    assert text.count("stubborn\n") == 2 and "== step stubborn: attempt 1 of 2 failed with exit code 4" in text


RESOLVE_LOCALHOST = "python3 -c \"import socket; print('localhost is', socket.gethostbyname('localhost'))\""


@pytest.mark.parametrize("shape", ["one container", "pipeline"])
async def test_localhost_resolves_in_a_build_without_a_network(make_executor, git_repo, build_ids, python_image, shape):
    """A build alone is created with networking disabled, where the engine writes no /etc/hosts
    and the node mounts its own; a pipeline's pod keeps the engine's. glibc finds localhost in both."""
    if shape == "pipeline":
        spec = pipeline({"name": "resolve", "image": python_image, "commands": [RESOLVE_LOCALHOST]})
    else:
        spec = yaml.safe_dump({"image": python_image, "commands": [RESOLVE_LOCALHOST]})
    git_repo.commit("master", {".pbft-ci.yml": spec})

    result = await build(make_executor(), git_repo, build_ids)

    assert result.status == "success" and "localhost is 127.0.0.1\n" in log_text(result), log_text(result)
