"""A build's triggers against a real git repository and the real Docker engine: `[skip ci]`
and the spec's `when:` decide, from the agreed request and the commit alone, whether a
build runs; a build that does not run ends `skipped` with the reason, in no container."""

import pytest
import yaml

from builder import BuildOrder, BuildResult
from tests.builder.executor_helpers import log_text

pytestmark = pytest.mark.docker


def spec_when(when) -> str:
    return yaml.safe_dump({"commands": ["echo the build ran"], "when": when})


async def run(make_executor, git_repo, build_ids, container_roles, **request) -> tuple[BuildResult, list[str]]:
    build_id = build_ids()
    result = await make_executor().run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path),
        **{"branch": "master", **request},
    ))
    return result, container_roles.get(build_id, [])


async def test_a_skip_mark_in_the_commit_message_skips_the_build_in_no_container(
    make_executor, git_repo, build_ids, container_roles
):
    head = git_repo.commit("master", {".pbft-ci.yml": spec_when({"event": "push"})}, message="docs [skip ci]")

    result, containers = await run(make_executor, git_repo, build_ids, container_roles)

    assert result.to_dict() == {
        "status": "skipped", "exit_code": None, "commit": head, "reason": "[skip ci] in the commit message",
    }
    assert containers == []
    text = log_text(result)
    assert "skipped: [skip ci] in the commit message" in text and "the build ran" not in text


async def test_when_branch_and_event_skip_with_the_reason_and_name_the_spec(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", {".pbft-ci.yml": spec_when({"event": ["push", "pull_request"], "branch": "main*"})})

    skipped, containers = await run(make_executor, git_repo, build_ids, container_roles)
    assert (skipped.status, skipped.reason) == ("skipped", "when: branch master does not match main*")
    assert skipped.spec is not None and skipped.spec.path == ".pbft-ci.yml"  # what decided it is agreed
    assert containers == []

    manual, _ = await run(make_executor, git_repo, build_ids, container_roles, branch="master", event="manual")
    assert manual.reason == "when: event manual is not push or pull_request"


async def test_when_path_counts_the_paths_changed_since_the_agreed_before_commit(
    make_executor, git_repo, build_ids, container_roles
):
    base = git_repo.commit("master", {".pbft-ci.yml": spec_when({"path": {"include": ["src/**"]}}),
                                      "src/app.py": "1\n"})
    docs = git_repo.commit("master", {"README.md": "words\n"})
    code = git_repo.commit("master", {"src/app.py": "2\n"})

    # base..docs changed only the README: skipped.
    skipped, containers = await run(make_executor, git_repo, build_ids, container_roles, commit=docs, before=base)
    assert (skipped.status, skipped.commit) == ("skipped", docs)
    assert skipped.reason == "when: none of the 1 changed path matches src/**"
    assert containers == []

    # docs..code changed src/app.py: built.
    built, containers = await run(make_executor, git_repo, build_ids, container_roles, commit=code, before=docs)
    assert (built.status, built.exit_code, built.commit) == ("success", 0, code), log_text(built)
    assert "the build ran" in log_text(built) and containers == ["build"]


async def test_changes_nobody_can_name_never_skip_a_build(make_executor, git_repo, build_ids, container_roles):
    git_repo.commit("master", {".pbft-ci.yml": spec_when({"path": "src/**"}), "README.md": "a\n"})
    elsewhere = git_repo.commit("other", {"README.md": "b\n"})
    head = git_repo.commit("master", {"README.md": "c\n"})

    # No `before`, a `before` that is not an ancestor (a force push), one no mirror holds.
    for before in (None, elsewhere, "0123456789abcdef0123456789abcdef01234567"):
        result, _ = await run(make_executor, git_repo, build_ids, container_roles, commit=head, before=before)
        assert (result.status, result.commit) == ("success", head), (before, log_text(result))


@pytest.mark.parametrize("event, before, problem", [
    ("deploy", None, "invalid request: unknown event 'deploy'"),
    ("push", "--output=/tmp/x", "invalid request:"),
])
async def test_a_bad_trigger_is_refused_before_git_runs(make_executor, tmp_path, build_ids, event, before, problem):
    result = await make_executor().run(BuildOrder(
        build_id=build_ids(), repository_name="example", repository_url=str(tmp_path / "no-such-repository"),
        branch="master", event=event, before=before,
    ))
    assert result.status == "error" and result.reason.startswith(problem), result.reason


# --- Pull requests: the base branch's spec decides, never the pull request's own ---------------


def failing_spec(**options) -> str:
    return yaml.safe_dump({"commands": ["echo the build ran", "exit 3"], **options})


def opened(git_repo, head: str, base: str | None) -> dict:
    """The request a forge's pull request delivery makes: its head pinned, its base as `before`."""
    return {"commit": head, "pull_ref": git_repo.pull_request(7, head), "event": "pull_request", "before": base}


async def test_a_skip_mark_in_a_pull_requests_message_does_not_skip_its_build(
    make_executor, git_repo, build_ids, container_roles
):
    base = git_repo.commit("master", {".pbft-ci.yml": spec_when({"event": ["push", "pull_request"]})})
    head = git_repo.commit("feature", {".pbft-ci.yml": failing_spec()}, message="tidy up [skip ci]")

    result, containers = await run(make_executor, git_repo, build_ids, container_roles, **opened(git_repo, head, base))

    assert (result.status, result.exit_code, result.commit) == ("failure", 3, head), log_text(result)
    assert containers == ["build"] and "the build ran" in log_text(result)
    # A push of the same commit is its author's to skip.
    pushed, containers = await run(make_executor, git_repo, build_ids, container_roles, branch="feature", commit=head)
    assert (pushed.status, pushed.reason, containers) == ("skipped", "[skip ci] in the commit message", [])


async def test_a_pull_requests_own_when_does_not_skip_it(make_executor, git_repo, build_ids, container_roles):
    base = git_repo.commit("master", {".pbft-ci.yml": spec_when({"branch": "*"})})
    head = git_repo.commit("feature", {".pbft-ci.yml": failing_spec(when={"event": "push"})})

    result, containers = await run(make_executor, git_repo, build_ids, container_roles, **opened(git_repo, head, base))

    assert (result.status, result.exit_code, result.commit) == ("failure", 3, head), log_text(result)
    assert containers == ["build"]
    decided = f"== the base branch's .pbft-ci.yml at {base[:12]} decides whether the pull request builds"
    assert decided in log_text(result)


async def test_the_base_branchs_when_skips_a_pull_request_and_the_log_names_that_spec(
    make_executor, git_repo, build_ids, container_roles
):
    base = git_repo.commit("master", {".pbft-ci.yml": spec_when({"event": "push"})})
    # The head's own spec would build it: it is not the one that decides.
    head = git_repo.commit("feature", {".pbft-ci.yml": failing_spec(when={"event": "pull_request"})})

    result, containers = await run(make_executor, git_repo, build_ids, container_roles, **opened(git_repo, head, base))

    reason = f"when: event pull_request is not push (the base branch's spec at {base[:12]})"
    assert result.to_dict() == {"status": "skipped", "exit_code": None, "commit": head, "reason": reason}
    assert result.spec is None  # the head's spec was never read
    assert containers == []
    text = log_text(result)
    assert f"== skipped: {reason}" in text and "the build ran" not in text


async def test_a_pull_request_whose_base_no_node_can_agree_on_builds(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", {".pbft-ci.yml": spec_when({"event": "push"})})
    head = git_repo.commit("feature", {".pbft-ci.yml": failing_spec(when={"event": "push"})}, message="[skip ci]")
    elsewhere = git_repo.commit("other", {"README.md": "b\n"})

    for before in (None, elsewhere):
        result, containers = await run(
            make_executor, git_repo, build_ids, container_roles, **opened(git_repo, head, before)
        )
        assert (result.status, result.exit_code, containers) == ("failure", 3, ["build"]), (before, log_text(result))
        assert "the pull request is not skipped" in log_text(result)
