"""Build slots and cancels against a real git repository and the real Docker engine: a
repository's own bound holds while another repository's build takes a free slot; a running
build's container is killed by a cancel and its result is `cancelled` (never `failure 137`,
never run again as a host fault); a build cancelled before it starts never gets a container.
The fixtures check that no container or volume of any build is left."""

import asyncio
import time

import pytest
import yaml

from builder import BuildOrder
from builder.executor import CANCELLED
from tests.builder.executor_helpers import live_log, log_text, spec, until_logged

pytestmark = pytest.mark.docker

SLOW = {".pbft-ci.yml": spec("echo started", "sleep 60", "echo finished")}
CANCELLED_RESULT = {"status": "cancelled", "exit_code": None, "commit": None, "reason": CANCELLED}


def start(executor, git_repo, build_id):
    return asyncio.create_task(executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master")))


async def until_running(build_ids_to_roles, build_id) -> None:
    async with asyncio.timeout(60):
        while not build_ids_to_roles.get(build_id):
            await asyncio.sleep(0.05)


async def test_a_running_build_is_stopped_and_cancelled(
    make_executor, git_repo, build_ids, container_roles, tmp_path
):
    git_repo.commit("master", SLOW)
    executor = make_executor()
    build_id = build_ids()
    running = start(executor, git_repo, build_id)
    await until_running(container_roles, build_id)
    await until_logged(live_log(tmp_path, build_id), "\nstarted")

    started_s = time.monotonic()
    assert await executor.cancel(build_id) is True
    result = await running

    assert time.monotonic() - started_s < 10
    assert result.to_dict() == CANCELLED_RESULT
    text = log_text(result)
    assert "started" in text and "finished" not in text and "runs again" not in text, text
    assert container_roles[build_id] == ["build"]  # not run again as if the host had killed it


async def test_a_cancel_kills_every_step_running_at_once(make_executor, git_repo, build_ids, container_roles, tmp_path):
    git_repo.commit("master", {".pbft-ci.yml": yaml.safe_dump({"steps": [
        {"name": "one", "commands": ["echo one started", "sleep 60"]},
        {"name": "two", "commands": ["echo two started", "sleep 60"], "depends_on": []},
        {"name": "after", "commands": ["echo after"], "depends_on": ["one", "two"]},
    ]})})
    executor = make_executor()
    build_id = build_ids()
    running = start(executor, git_repo, build_id)
    await until_running(container_roles, build_id)
    await until_logged(live_log(tmp_path, build_id), "started")
    async with asyncio.timeout(30):  # both steps' containers made
        while container_roles[build_id].count("step") < 2:
            await asyncio.sleep(0.05)

    started_s = time.monotonic()
    assert await executor.cancel(build_id) is True
    result = await running

    assert time.monotonic() - started_s < 10  # neither step's sleep ran out
    assert result.to_dict() == CANCELLED_RESULT
    assert "\nafter\n" not in log_text(result)
    assert container_roles[build_id] == ["holder", "step", "step"]


async def test_a_build_cancelled_before_it_starts_never_gets_a_container(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", SLOW)
    executor = make_executor()
    build_id = build_ids()

    assert await executor.cancel(build_id) is False  # not here yet: kept until it comes
    result = await start(executor, git_repo, build_id)

    assert result.to_dict() == CANCELLED_RESULT
    assert build_id not in container_roles


async def test_a_build_waiting_for_a_slot_is_cancelled_where_it_waits(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", SLOW)
    executor = make_executor(max_concurrent=1)
    first, second = build_ids(), build_ids()
    running = start(executor, git_repo, first)
    await until_running(container_roles, first)
    waiting = start(executor, git_repo, second)
    await asyncio.sleep(0.2)

    assert await executor.cancel(second) is True
    assert (await waiting).to_dict() == CANCELLED_RESULT
    assert second not in container_roles and not running.done()

    await executor.cancel(first)
    assert (await running).status == "cancelled"


@pytest.mark.parametrize("build_id", ["../x", "", "a b"])
async def test_a_malformed_build_id_cancels_nothing(make_executor, build_id):
    assert await make_executor().cancel(build_id) is False


async def test_a_repositorys_bound_queues_its_builds_while_another_repository_runs(
    make_executor, git_repo, build_ids, container_roles
):
    git_repo.commit("master", SLOW)
    executor = make_executor(max_concurrent=2, repository_bounds={"busy": 1})

    def run(build_id, repository):
        return asyncio.create_task(executor.run(BuildOrder(
            build_id=build_id, repository_name=repository, repository_url=str(git_repo.path), branch="master")))

    async def until(condition) -> None:
        async with asyncio.timeout(60):
            while not condition():
                await asyncio.sleep(0.05)

    first, second, other = build_ids(), build_ids(), build_ids()
    tasks = [run(first, "busy"), run(second, "busy"), run(other, "quiet")]
    # Not started yet, no build holds a slot: each waits, as the node's view says (node/driver.py).
    assert not any(executor.has_slot(build_id) for build_id in (first, second, other))
    # The node's second slot goes to the quiet repository, not to the busy one's next build.
    await until(lambda: (executor.running, executor.queued) == (2, 1))
    assert executor.is_queued(second) and not executor.is_queued(other)
    assert [executor.has_slot(build_id) for build_id in (first, second, other)] == [True, False, True]

    await executor.cancel(first)
    await until(lambda: not executor.is_queued(second))  # the slot it freed went to the next busy build
    assert executor.has_slot(second) and not executor.has_slot(first)
    assert not tasks[1].done()
    assert (await tasks[0]).status == "cancelled"
    for build_id in (second, other):
        await executor.cancel(build_id)
    assert [(await task).status for task in tasks] == ["cancelled"] * 3
    assert (executor.running, executor.queued) == (0, 0)
