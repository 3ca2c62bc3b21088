"""A build's triggers against a real git repository and the real Docker engine: `[skip ci]`
and the spec's `when:` decide, from the agreed request and the commit alone, whether a
build runs; a build that does not run ends `skipped` with the reason, in no container."""

import pytest
import yaml

from node.build.executor import BuildResult
from tests.node.executor_helpers import log_text

pytestmark = pytest.mark.docker


def spec_when(when) -> str:
    return yaml.safe_dump({"commands": ["echo the build ran"], "when": when})


async def run(make_executor, git_repo, build_ids, container_roles, **request) -> tuple[BuildResult, list[str]]:
    build_id = build_ids()
    result = await make_executor().run(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path),
        **{"branch": "master", **request},
    )
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
    result = await make_executor().run(
        build_id=build_ids(), repository_name="example", repository_url=str(tmp_path / "no-such-repository"),
        branch="master", event=event, before=before,
    )
    assert result.status == "error" and result.reason.startswith(problem), result.reason
