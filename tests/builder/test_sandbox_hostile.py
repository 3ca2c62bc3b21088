"""Hostile builds against the real Docker engine: each is contained, and the node keeps building.

All builds share one executor (one event loop for the module), as they would
on a node: every hostile build runs next to a normal build that must succeed,
and the last test builds normally after all of them. Limits are small so that
the file runs in well under a minute.
"""

import asyncio
import logging
import time
from pathlib import Path

import pytest

from builder import BuildOrder, BuildResult, Executor, ExecutorSettings
from builder.plan.compile import ROOT_REFUSED
from builder.workspace.checkouts import INBOXES_DIR
from shared.config import BuildConfig
from tests.builder.executor_helpers import GitRepo, build_container_filters, leftovers_of, log_text, spec

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

LIMITS = BuildConfig(
    timeout_s=10.0,
    memory_mb=64,
    pids_limit=64,
    output_cap_bytes=20_000,
    tmp_mb=8,
    workspace_mb=16,
    home_mb=8,
)
# The container's limit: the processes' 64 MB plus room for every tmpfs to be full.
MEMORY_BREAKDOWN = "104 MB (64 processes + 16 /workspace + 8 /tmp + 8 /dev/shm + 8 /home/build)"
HOSTILE_TIMEOUT_S = 3
NORMAL = {".pbft-ci.yml": spec("sh test.sh"), "test.sh": "echo normal build ran\n"}


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("hostile") / "origin")
    repo.commit("master", NORMAL)
    return repo


@pytest.fixture(scope="module")
def node_data_dir(tmp_path_factory) -> Path:
    """node_executor's data directory, which labels everything it makes on the engine."""
    return tmp_path_factory.mktemp("data").resolve()


@pytest.fixture(scope="module")
def node_executor(node_data_dir, tmp_path_factory, docker_client, default_image):
    executor = Executor(ExecutorSettings(data_dir=node_data_dir, log_dir=tmp_path_factory.mktemp("log"),
        node_id=9, limits=LIMITS, max_concurrent=2), docker_client=docker_client)
    yield executor
    executor.close()


async def run_build(executor, origin, build_id, branch) -> BuildResult:
    return await executor.run(BuildOrder(
        build_id=build_id, repository_name="hostile", repository_url=str(origin.path), branch=branch
    ))


async def hostile_next_to_normal(executor, origin, build_ids, docker_client, branch, files, caplog) -> BuildResult:
    """Build `files` on `branch` while a normal build runs; the normal one must succeed.

    One of the two usually runs in the container the executor prepared
    while an earlier build ran, the other in one started for it.
    """
    caplog.set_level(logging.DEBUG, logger="builder.run")
    origin.commit(branch, files)
    hostile_id = build_ids()
    hostile, normal = await asyncio.gather(
        run_build(executor, origin, hostile_id, branch), run_build(executor, origin, build_ids(), "master")
    )
    assert normal.status == "success", log_text(normal)
    filters = build_container_filters(caplog.records, hostile_id)
    running = docker_client.containers.list(filters={**filters, "status": "running"}, ignore_removed=True)
    assert not running, "nothing of the hostile build may still run when its result is returned"
    left, _ = leftovers_of(docker_client, filters)
    assert not left, "the hostile build's containers are removed right after its result"
    return hostile


def running_container(docker_client, caplog, build_id: str) -> list:
    """The container the build runs in, once it runs (a list of one), whether prepared for it or not."""
    filters = {**build_container_filters(caplog.records, build_id), "status": "running"}
    return docker_client.containers.list(filters=filters, ignore_removed=True)


# (commands, allowed statuses, exit code when it is a failure, text the log must show)
HOSTILE = {
    "fork_bomb": (
        ["bomb() { bomb | bomb & }; while :; do bomb; done"], {"failure", "timeout"}, None, "",
    ),
    "spawn_loop": (
        ["while :; do sh -c 'sleep 60' & done"], {"failure", "timeout"}, None, "",
    ),
    "endless_allocation": (
        # `tail` keeps the last lines of a stream with no line end in memory, all of it,
        # growing as fast as it reads (a shell's $(yes) took over the 3 s deadline on a
        # loaded machine); the memory cgroup OOM-kills it.
        ["tail /dev/zero"], {"failure"}, 137, f"== killed: out of memory (limit {MEMORY_BREAKDOWN})",
    ),
    "endless_loop": (["while :; do :; done"], {"timeout"}, None, ""),
    "network": (
        # nc rather than wget: the image's static wget crashes without a
        # network, which would pass for the wrong reason.
        ["nc -w 2 1.1.1.1 53 < /dev/null"], {"failure"}, 1, "Network is unreachable",
    ),
    # /etc/passwd is the node's file, bind-mounted read-only: the build user
    # is refused before the read-only mount is even reached.
    "write_passwd": (["echo owned > /etc/passwd"], {"failure"}, None, "can't create /etc/passwd"),
    "write_etc": (["touch /etc/owned"], {"failure"}, None, "Read-only file system"),
    "fill_home": (["dd if=/dev/zero of=$HOME/fill bs=1M"], {"failure"}, 1, "No space left on device"),
    "write_root": (["touch /owned"], {"failure"}, None, "Read-only file system"),
    "write_usr": (["mkdir -p /usr/local/bin"], {"failure"}, None, "Read-only file system"),
    "fill_tmp": (["dd if=/dev/zero of=/tmp/fill bs=1M"], {"failure"}, 1, "No space left on device"),
    "fill_shm": (["dd if=/dev/zero of=/dev/shm/fill bs=1M"], {"failure"}, 1, "No space left on device"),
    "fill_workspace": (["dd if=/dev/zero of=fill bs=1M"], {"failure"}, 1, "No space left on device"),
}


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_build_is_contained(node_executor, origin, build_ids, docker_client, name, caplog):
    commands, statuses, exit_code, shown = HOSTILE[name]
    files = {".pbft-ci.yml": spec(*commands, timeout_s=HOSTILE_TIMEOUT_S)}

    started = time.monotonic()
    result = await hostile_next_to_normal(node_executor, origin, build_ids, docker_client, name, files, caplog)

    text = log_text(result)
    assert result.status in statuses, text
    assert time.monotonic() - started < HOSTILE_TIMEOUT_S + 10
    if result.status == "failure":
        assert result.exit_code != 0
        if exit_code is not None:
            assert result.exit_code == exit_code, text
    else:
        assert result.reason == f"build exceeded {HOSTILE_TIMEOUT_S} s"
    assert shown in text
    assert len(text.encode()) <= LIMITS.output_cap_bytes + 1024


async def test_gigabytes_of_output_are_capped_and_never_stored(
    node_executor, origin, build_ids, docker_client, caplog
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    files = {".pbft-ci.yml": spec("yes 'a line of output that goes on and on'", timeout_s=HOSTILE_TIMEOUT_S)}
    origin.commit("output_flood", files)
    build_id = build_ids()
    running = asyncio.create_task(run_build(node_executor, origin, build_id, "output_flood"))
    while not (containers := running_container(docker_client, caplog, build_id)) and not running.done():
        await asyncio.sleep(0.05)
    # The daemon keeps no log of its own to grow; the capture is all there is.
    assert containers and containers[0].attrs["HostConfig"]["LogConfig"]["Type"] == "none"

    result = await running

    text = log_text(result)
    assert result.status == "timeout"
    assert f"== output truncated at {LIMITS.output_cap_bytes} bytes" in text
    assert len(text.encode()) <= LIMITS.output_cap_bytes + 1024


async def test_container_is_never_privileged(node_executor, origin, build_ids, docker_client, caplog):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    origin.commit("inspect", {".pbft-ci.yml": spec(
        "echo uid=$(id -u)",
        "grep CapEff /proc/self/status",
        "df -k /workspace /tmp /dev/shm",
        "echo interfaces: $(ls /sys/class/net)",
        "nc -w 2 localhost 9 < /dev/null 2>&1 || true",
        "sleep 2",
    )})
    build_id = build_ids()
    running = asyncio.create_task(run_build(node_executor, origin, build_id, "inspect"))
    while not (containers := running_container(docker_client, caplog, build_id)) and not running.done():
        await asyncio.sleep(0.05)
    assert containers, "the build container was not seen running"
    host = containers[0].attrs["HostConfig"]
    config = containers[0].attrs["Config"]
    mounts = containers[0].attrs["Mounts"]
    workspace = next(m for m in mounts if m["Destination"] == "/workspace")
    volume_options = docker_client.volumes.get(workspace["Name"]).attrs["Options"]

    result = await running

    assert result.status == "success", log_text(result)
    assert host["Privileged"] is False
    assert not host["Devices"] and not host["DeviceCgroupRules"] and not host["CapAdd"]
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["IpcMode"] == "private"
    assert host["PidMode"] == "" and host["UsernsMode"] == "" and host["UTSMode"] == ""
    # No network sandbox from the engine at all (its set-up cost half a short build's
    # container): a namespace with a loopback and nothing else, where localhost still resolves.
    assert host["NetworkMode"] == "none" and config["NetworkDisabled"] is True
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == (64 + 16 + 8 + 8 + 8) * 1024 * 1024
    assert host["PidsLimit"] == 64
    assert host["ShmSize"] == 8 * 1024 * 1024
    assert "size=8m" in host["Tmpfs"]["/tmp"] and "nosuid" in host["Tmpfs"]["/tmp"]
    assert "size=8m" in host["Tmpfs"]["/home/build"] and "mode=0700" in host["Tmpfs"]["/home/build"]
    assert config["User"] == "1000:1000"
    # Read-only but /workspace; the one of the node's folders is the container's empty inbox.
    assert sorted((m["Type"], m["Destination"], m["RW"]) for m in mounts) == [
        ("bind", "/.pbft-ci/src", False), ("bind", "/etc/group", False), ("bind", "/etc/hosts", False),
        ("bind", "/etc/passwd", False), ("volume", "/workspace", True),
    ]
    inbox = next(m for m in mounts if m["Destination"] == "/.pbft-ci/src")
    assert Path(inbox["Source"]).parent.name == INBOXES_DIR
    assert volume_options["type"] == "tmpfs" and "size=16m" in volume_options["o"]
    text = log_text(result)
    assert "uid=1000" in text
    assert "CapEff:\t0000000000000000" in text
    assert "interfaces: lo\n" in text
    assert "(127.0.0.1): Connection refused" in text, text


async def test_spec_asking_for_root_is_refused_unless_allowed(node_executor, origin, build_ids, docker_client):
    head = origin.commit("as_root", {".pbft-ci.yml": spec("id -u", user="root")})

    result = await run_build(node_executor, origin, build_ids(), "as_root")

    assert result.to_dict() == {"status": "error", "exit_code": None, "commit": head, "reason": ROOT_REFUSED}


async def test_root_build_when_allowed_still_has_no_privileges(tmp_path, origin, build_ids, docker_client):
    origin.commit("as_root_allowed", {".pbft-ci.yml": spec(
        "echo uid=$(id -u)",
        "grep CapEff /proc/self/status",
        "echo built > artefact",
        "touch /etc/owned 2>/dev/null && echo root-writable || echo root-read-only",
        "echo owned >> /etc/passwd 2>/dev/null && echo passwd-writable || echo passwd-read-only",
        "echo home=$HOME && touch $HOME/x && echo home-writable",
        user="root",
    )})
    executor = Executor(ExecutorSettings(data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=9,
        limits=BuildConfig(allow_root=True, memory_mb=64)), docker_client=docker_client)
    try:
        result = await run_build(executor, origin, build_ids(), "as_root_allowed")
    finally:
        executor.close()

    text = log_text(result)
    assert result.status == "success", text
    assert "uid=0" in text
    assert "CapEff:\t0000000000000000" in text
    assert "root-read-only" in text
    assert "passwd-read-only" in text
    assert "home=/home/build" in text and "home-writable" in text


async def test_the_node_still_builds_after_the_hostile_builds(
        node_executor, node_data_dir, origin, build_ids, docker_client):
    result = await run_build(node_executor, origin, build_ids(), "master")

    assert result.status == "success", log_text(result)
    assert "normal build ran" in log_text(result)
    assert node_executor.running == 0
    # The next build's container is started on a thread of its own while this build runs; on a loaded
    # engine, that start can outlast an echo.
    await asyncio.wait_for(asyncio.wrap_future(node_executor.engine.ready.settled()), 60)
    # Only the container prepared for the next build remains, with its volumes. Counted by this
    # executor's own label: other tests' executors (node 9's too) come and go on the same engine.
    mine = f"pbft-ci.data={node_data_dir}"
    containers, _ = leftovers_of(docker_client, {"label": [mine, "pbft-ci.role=build"]})
    assert not containers
    prepared = docker_client.containers.list(all=True, filters={"label": mine}, ignore_removed=True)
    volumes = docker_client.volumes.list(filters={"label": mine})
    assert [container.labels["pbft-ci.role"] for container in prepared] == ["ready"]
    # Its workspace, and the build user's passwd and group files (builder/engine/identity.py).
    assert sorted(volume.attrs["Labels"].get("pbft-ci.role", "workspace") for volume in volumes) == [
        "identity", "workspace",
    ]
    node_executor.close()
    containers, volumes = leftovers_of(docker_client, {"label": mine})
    assert not containers and not volumes
