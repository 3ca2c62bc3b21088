"""`include:` through whole builds on the real Docker engine: a node reads the included files
from git at the built commit (builder/workspace/fetch.py), never from its checkout, so a link
in the tree is refused as no regular file, never followed; and four nodes build a spec written
with anchors, templates and includes exactly as the spec written out."""

import os

import pytest

from builder import BuildOrder, Executor, ExecutorSettings
from shared.config import BuildConfig
from tests.builder.executor_helpers import GitRepo, build, log_text, spec
from tests.builder.reuse_specs import INCLUDED, TEMPLATES, WITH_REUSE, WRITTEN_OUT, comparable

pytestmark = pytest.mark.docker


async def test_a_spec_builds_with_the_files_it_includes_read_at_its_commit(make_executor, git_repo, build_ids):
    head = git_repo.commit("master", {
        "ci/common.yml": "environment: {GREETING: from-the-included-file}\n",
        ".pbft-ci.yml": "include: [ci/common.yml]\n" + spec('echo "greeting=$GREETING"'),
    })

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.commit) == ("success", head), log_text(result)
    assert "greeting=from-the-included-file\n" in log_text(result)


async def test_an_included_link_is_refused_never_followed(make_executor, git_repo, build_ids, tmp_path):
    outside = tmp_path / "outside.yml"
    outside.write_text("environment: {GREETING: read-through-a-link}\n")
    (git_repo.path / "ci").mkdir()
    os.symlink(outside, git_repo.path / "ci" / "link.yml")
    git_repo.commit("master", {".pbft-ci.yml": "include: [ci/link.yml]\n" + spec('echo "greeting=$GREETING"')})

    result = await build(make_executor(), git_repo, build_ids)

    assert (result.status, result.reason) == (
        "error", ".pbft-ci.yml: include: ci/link.yml: no regular file of at most 65536 bytes there at the commit"
    ), log_text(result)


async def test_four_nodes_build_a_spec_with_anchors_templates_and_includes_as_its_written_out_form(
    tmp_path, docker_client, build_ids
):
    reused, written = GitRepo(tmp_path / "reused"), GitRepo(tmp_path / "written")
    reused.commit("master", {"ci/templates.yml": INCLUDED, ".pbft-ci.yml": TEMPLATES + WITH_REUSE})
    written.commit("master", {".pbft-ci.yml": WRITTEN_OUT})
    executors = [
        Executor(ExecutorSettings(data_dir=tmp_path / f"node-{node}", log_dir=tmp_path / "log", node_id=node,
                                  limits=BuildConfig()), docker_client=docker_client)
        for node in range(4)
    ]
    try:
        logs = []
        for repo in (reused, written):
            for executor in executors:
                result = await executor.run(BuildOrder(
                    build_id=build_ids(), repository_name="example", repository_url=str(repo.path), branch="master",
                ))
                assert result.status == "success", log_text(result)
                logs.append(comparable(log_text(result)))
    finally:
        for executor in executors:
            executor.close()

    assert all(log == logs[0] for log in logs), logs
    assert "one base from-anchor included" in logs[0] and "two two from-template included" in logs[0]
