"""The executor tells the node's trouble from the build's, against the real Docker engine.

A build container killed from outside (`docker kill`, as an operator or the
host's tooling would) exits 137 like a build killed by its own hand, but it is
not the build's result: the build runs again in a fresh container, and if
that is killed too the node reports its `error` with the cause. A build that
kills itself, or exits 137, is still the build's failure. A node whose disk
is too full to keep a successful build's artifacts says so as its `error`,
never as the build's success or failure.
"""

import asyncio
import logging
import os
import subprocess
import time

import pytest

from builder import BuildOrder
from builder.run import KILLED_OUTSIDE
from tests.builder.executor_helpers import build_container_filters, live_log, log_text, outcome, spec

pytestmark = pytest.mark.docker

SLOW = {".pbft-ci.yml": spec("echo started", "sleep 4", "echo done")}
WAIT_S = 60


async def running_build_container(docker_client, filters: dict, skip: set[str], log_path) -> str:
    """The id of the build's running container not in `skip`, once the build printed `started` in it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = [container for container in docker_client.containers.list(filters=filters) if container.id not in skip]
        started = log_path.exists() and log_path.read_text().count("started") > len(skip)
        if found and started:
            return found[0].id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no running build container for {filters}")


async def run_and_kill(executor, git_repo, build_id, docker_client, caplog, tmp_path, kills: int):
    """Run the build, killing its container from outside `kills` times while its commands run."""
    task = asyncio.create_task(executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master"
    )))
    log_path = live_log(tmp_path, build_id)
    killed: set[str] = set()
    for _ in range(kills):
        filters = build_container_filters(caplog.records, build_id) if not killed else {
            "label": [f"pbft-ci.build={build_id}", "pbft-ci.role=build"]}
        container_id = await running_build_container(docker_client, {**filters, "status": "running"}, killed,
                                                     log_path)
        docker_client.containers.get(container_id).kill()
        killed.add(container_id)
    return await asyncio.wait_for(task, WAIT_S)


async def test_a_build_container_killed_from_outside_runs_again_and_succeeds(
    make_executor, git_repo, build_ids, docker_client, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    head = git_repo.commit("master", SLOW)

    result = await run_and_kill(make_executor(), git_repo, build_ids(), docker_client, caplog, tmp_path, kills=1)

    assert outcome(result) == {"status": "success", "exit_code": 0, "commit": head}, log_text(result)
    text = log_text(result)
    assert f"== {KILLED_OUTSIDE}: the build runs again, in a fresh container\n" in text
    assert text.count("started") == 2 and text.count("done") == 1


async def test_a_build_container_killed_twice_is_the_nodes_error_with_the_cause(
    make_executor, git_repo, build_ids, docker_client, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    head = git_repo.commit("master", SLOW)

    result = await run_and_kill(make_executor(), git_repo, build_ids(), docker_client, caplog, tmp_path, kills=2)

    assert {**outcome(result), "reason": result.reason} == {
        "status": "error", "exit_code": None, "commit": head, "reason": f"{KILLED_OUTSIDE}, twice",
    }


# (Not the last command: the shell execs that one as the container's first process, which
# ignores a SIGKILL from within.)
@pytest.mark.parametrize("command", ["sh -c 'kill -9 $$'", "exit 137"])
async def test_a_build_that_kills_itself_is_the_builds_failure(make_executor, git_repo, build_ids, command):
    head = git_repo.commit("master", {".pbft-ci.yml": spec("echo started", command, "echo not reached")})

    result = await make_executor().run(BuildOrder(
        build_id=build_ids(), repository_name="example", repository_url=str(git_repo.path), branch="master"
    ))

    assert outcome(result) == {"status": "failure", "exit_code": 137, "commit": head}, log_text(result)
    assert KILLED_OUTSIDE not in log_text(result)


@pytest.fixture
def full_data_dir(tmp_path):
    """A 2 MB tmpfs as a node's data directory; unmounted afterwards (requested before
    make_executor, so the executor is closed first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = tmp_path / "small"
    directory.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield "small"
    finally:
        subprocess.run(["umount", str(directory)], check=True)


async def test_a_node_whose_disk_cannot_keep_the_artifacts_reports_its_error(
    full_data_dir, make_executor, git_repo, build_ids
):
    head = git_repo.commit("master", {".pbft-ci.yml": spec(
        "head -c 3000000 /dev/zero > big.bin", "echo built", artifacts=["big.bin"])})

    result = await make_executor(data_dir=full_data_dir).run(BuildOrder(
        build_id=build_ids(), repository_name="example", repository_url=str(git_repo.path), branch="master"
    ))

    assert {**outcome(result), "reason": result.reason} == {
        "status": "error", "exit_code": None, "commit": head, "reason": "could not copy the artifacts to this node",
    }, log_text(result)
