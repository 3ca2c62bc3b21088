"""Builds around a configuration reload (node/server.py on SIGHUP), against a real git
repository and the real Docker engine: each build carries the repository settings of the
configuration it was ordered under (BuildOrder.of), so one ordered before the reload, even one
still waiting for a build slot, keeps them; one ordered after it gets the new ones."""

import asyncio
import dataclasses

import pytest

from builder.order import BuildOrder
from pbft.build import Operation
from shared.config import DEFAULT_SECRET_EVENTS, BuildConfig, BuildSecretConfig, RepositoryConfig
from tests.builder.executor_helpers import log_text, spec

pytestmark = pytest.mark.docker

SLOW = {".pbft-ci.yml": spec("sleep 60")}
# Passes only with the secret: what a build got shows in its verdict.
NEEDS_THE_SECRET = {".pbft-ci.yml": spec('test -n "${DEPLOY_TOKEN+x}"')}


async def until(condition) -> None:
    async with asyncio.timeout(60):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_build_waiting_for_a_slot_at_a_reload_keeps_the_settings_it_started_with(
    tmp_path, make_executor, git_repo, build_ids
):
    git_repo.commit("master", NEEDS_THE_SECRET)
    git_repo.commit("slow", SLOW)
    token = tmp_path / "deploy-token"
    token.write_text("a-deploy-token-value\n")
    repository = RepositoryConfig("example", str(git_repo.path), secrets=(
        BuildSecretConfig("DEPLOY_TOKEN", token, DEFAULT_SECRET_EVENTS),))
    executor = make_executor(max_concurrent=1)

    def run(build_id, branch):
        return asyncio.create_task(executor.run(BuildOrder.of(build_id, Operation("example", branch), repository)))

    slow, before, after = build_ids(), build_ids(), build_ids()
    slow_task = run(slow, "slow")
    await until(lambda: executor.running == 1)
    before_task = run(before, "master")
    await until(lambda: executor.is_queued(before))

    # The reload drops the repository's secrets.
    repository = dataclasses.replace(repository, secrets=())
    after_task = run(after, "master")
    await until(lambda: executor.is_queued(after))
    await executor.cancel(slow)

    assert (await slow_task).status == "cancelled"
    kept, new = await before_task, await after_task
    assert kept.status == "success", log_text(kept)
    assert (new.status, new.exit_code) == ("failure", 1), log_text(new)


async def test_a_build_runs_with_the_build_limits_of_the_network_document_it_was_ordered_under(
    make_executor, git_repo, build_ids
):
    # The network's owners lowered the time a build may take (a change through the order):
    # the order carries the limits of that moment, whatever the executor started with.
    git_repo.commit("master", {".pbft-ci.yml": spec("sleep 30")})
    repository = RepositoryConfig("example", str(git_repo.path))
    executor = make_executor(timeout_s=120)
    lowered = BuildConfig(timeout_s=1)
    result = await executor.run(BuildOrder.of(build_ids(), Operation("example", "master"), repository, lowered))
    assert result.status == "timeout", log_text(result)
