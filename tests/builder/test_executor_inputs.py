"""A manual run's inputs through whole builds on the real Docker engine, four nodes as four
executors: each reads the spec at the commit, checks the agreed request's values against its
`inputs:` and runs the build with the same CI_INPUT_* variables, or refuses alike."""

import pytest

from builder import BuildOrder, Executor, ExecutorSettings
from shared.config import BuildConfig
from tests.builder.executor_helpers import log_text, spec

pytestmark = pytest.mark.docker

INPUTS = """\
inputs:
  target: {type: choice, options: [staging, production]}
  dry_run: {type: boolean, default: true}
  note: {}
"""


async def test_four_nodes_build_with_the_runs_inputs_or_refuse_the_same_value_alike(
        tmp_path, docker_client, git_repo, build_ids):
    git_repo.commit("master", {".pbft-ci.yml": INPUTS + spec(
        'echo "target=$CI_INPUT_TARGET dry_run=$CI_INPUT_DRY_RUN note=[$CI_INPUT_NOTE]"')})
    executors = [
        Executor(ExecutorSettings(data_dir=tmp_path / f"node-{node}", log_dir=tmp_path / "log", node_id=node,
                                  limits=BuildConfig()), docker_client=docker_client)
        for node in range(4)
    ]

    def order(inputs):
        return BuildOrder(build_id=build_ids(), repository_name="example", repository_url=str(git_repo.path),
                          branch="master", event="manual", inputs=inputs)

    try:
        ran = [await executor.run(order((("target", "production"), ("note", "it's $HOME")))) for executor in executors]
        refused = [await executor.run(order((("target", "prod"),))) for executor in executors]
    finally:
        for executor in executors:
            executor.close()

    for result in ran:
        assert result.status == "success", log_text(result)
        # A value is data, never shell: `$HOME` reaches the build as written.
        assert "target=production dry_run=true note=[it's $HOME]\n" in log_text(result)
    assert {(result.status, result.reason) for result in refused} == {
        ("error", ".pbft-ci.yml: input target: 'prod' is not one of staging, production")}
