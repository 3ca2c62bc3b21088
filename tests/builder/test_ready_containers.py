"""Prepared build containers: a spec build starts in a container started before it came.

The first tests drive builder/engine/ready.py with stand-ins for containers; the rest
build against the real Docker engine and check that a build in a prepared
container gives exactly what a build in a fresh one gives.
"""

import asyncio
import io
import logging
import re
import threading
import time

import pytest
from docker.models.containers import Container, ContainerCollection

from builder import BuildOrder, BuildResult, Executor, ExecutorSettings
from shared.config_build import BuildConfig
from builder.engine.ready import ReadyContainers
from tests.builder.executor_helpers import leftovers_of, log_text, spec, wait_for_prepared

PASSING = {".pbft-ci.yml": spec("sh test.sh"), "test.sh": "echo tests passed\n"}


class FakeContainer:
    def __init__(self, key):
        self.key = key
        self.alive = True
        self.discarded = False

    def running(self) -> bool:
        return self.alive

    def discard(self) -> None:
        self.discarded = True


def settled(ready: ReadyContainers) -> None:
    """Wait until the background starts and removals asked for so far are done."""
    ready.settled().result(timeout=10)


def test_a_prepared_container_is_taken_once():
    ready = ReadyContainers(FakeContainer)
    ready.prepare("a")
    settled(ready)

    first, second = ready.take("a"), ready.take("a")

    assert first.key == "a" and second is None
    ready.close()
    assert not first.discarded, "a taken container is the build's to remove"


def test_at_most_one_container_per_key_and_the_least_recently_used_key_is_dropped():
    started = []
    ready = ReadyContainers(lambda key: started.append(FakeContainer(key)) or started[-1], max_keys=2)

    for key in ("a", "a", "b", "a", "c"):
        ready.prepare(key)
        settled(ready)

    assert [container.key for container in started] == ["a", "b", "c"]
    assert ready.keys == ["a", "c"]
    assert [container.key for container in started if container.discarded] == ["b"]
    ready.close()
    assert all(container.discarded for container in started)


def test_a_container_that_died_while_waiting_is_removed_and_never_taken():
    ready = ReadyContainers(FakeContainer)
    ready.prepare("a")
    settled(ready)
    dead = ready.take("a")
    ready.prepare("a")
    settled(ready)
    waiting = ready._waiting["a"]
    waiting.alive = False

    assert ready.take("a") is None
    settled(ready)
    assert waiting.discarded and ready.keys == []
    ready.close()
    assert not dead.discarded


def test_close_removes_a_container_still_starting_and_starts_no_more():
    starting, release = threading.Event(), threading.Event()
    started = []

    def slow_start(key):
        starting.set()
        release.wait(10)
        started.append(FakeContainer(key))
        return started[-1]

    ready = ReadyContainers(slow_start)
    ready.prepare("a")
    ready.prepare("b")
    assert starting.wait(10)
    closing = threading.Thread(target=ready.close)
    closing.start()
    release.set()
    closing.join(10)

    assert [container.key for container in started] == ["a"]
    assert started[0].discarded
    ready.prepare("c")
    assert ready.keys == [] and len(started) == 1


def gated_start(release: threading.Event, starting: threading.Event, started: list):
    def start(key):
        starting.set()
        assert release.wait(10)
        started.append(FakeContainer(key))
        return started[-1]
    return start


def wait_until_waiting(ready: ReadyContainers) -> None:
    """Until a take blocks on the start under way (the condition's waiters are threading's own)."""
    deadline = time.monotonic() + 10
    while not ready._started._waiters:
        assert time.monotonic() < deadline, "the take never waited"
        time.sleep(0.001)


def waiting_take(ready: ReadyContainers, key: str) -> tuple[threading.Thread, list]:
    """A build's take of `key` on a thread of its own, once it blocks on the start under way:
    the thread, and the list its answer goes to."""
    taken = []
    taker = threading.Thread(target=lambda: taken.append(ready.take(key, wait_s=30)))
    taker.start()
    wait_until_waiting(ready)
    return taker, taken


def test_a_build_that_comes_while_its_container_starts_takes_that_one_when_it_is_up():
    starting, release, started = threading.Event(), threading.Event(), []
    ready = ReadyContainers(gated_start(release, starting, started))
    ready.prepare("a")
    assert starting.wait(10)
    taker, taken = waiting_take(ready, "a")
    assert not taken  # still waiting: the start has not ended
    release.set()
    taker.join(10)

    assert taken == started and len(started) == 1 and ready.keys == []
    ready.close()


def test_a_start_that_outlasts_the_wait_is_kept_for_the_next_build():
    starting, release, started = threading.Event(), threading.Event(), []
    ready = ReadyContainers(gated_start(release, starting, started))
    ready.prepare("a")
    assert starting.wait(10)

    assert ready.take("a", wait_s=0.05) is None
    assert ready.take("b", wait_s=30) is None  # nothing starts for "b": no wait at all
    release.set()
    settled(ready)
    assert ready.take("a") is started[0]
    ready.close()


def test_a_build_waiting_for_a_start_that_fails_starts_its_own_at_once():
    starting, release = threading.Event(), threading.Event()

    def failing(key):
        starting.set()
        assert release.wait(10)
        raise RuntimeError("engine busy")

    ready = ReadyContainers(failing)
    ready.prepare("a")
    assert starting.wait(10)
    taker, taken = waiting_take(ready, "a")
    release.set()
    taker.join(10)
    assert not taker.is_alive() and taken == [None]
    ready.close()


def test_a_failed_start_leaves_no_container_and_a_later_one_is_tried_again():
    attempts = []

    def start(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise RuntimeError("engine busy")
        return FakeContainer(key)

    ready = ReadyContainers(start)
    ready.prepare("a")
    settled(ready)
    assert ready.take("a") is None
    ready.prepare("a")
    settled(ready)

    assert ready.take("a").key == "a"
    ready.close()


# Against the engine from here on.


async def build(executor, git_repo, build_id, **kwargs) -> BuildResult:
    return await executor.run(BuildOrder(
        build_id=build_id, repository_name=kwargs.pop("repository_name", "example"),
        repository_url=str(git_repo.path), branch="master", **kwargs,
    ))


def comparable_log(result: BuildResult) -> list[str]:
    """The build log without its build id and without the timings, which differ from build to build."""
    lines = log_text(result).splitlines()[1:]
    return [re.sub(r" duration_ms \d+", "", line) for line in lines]


# The lines `docker build` writes (the engine's classic builder), and the node's in their place.
IMAGE_BUILD_LINE = re.compile(r"^(Step \d+/\d+ : | ---> |Successfully (built|tagged) |Removing intermediate | ?== image )")


def without_image_build(lines: list[str]) -> list[str]:
    """A Dockerfile build's log without its image's build: the rest is the same on every node."""
    return [line for line in lines if not IMAGE_BUILD_LINE.match(line)]


async def removed(docker_client, container_id: str, timeout_s: float = 30) -> bool:
    """Whether the container is gone within `timeout_s`; the executor removes it in the background."""
    deadline = time.monotonic() + timeout_s
    while docker_client.containers.list(all=True, filters={"id": container_id}, ignore_removed=True):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def executor_containers(docker_client, executor, role: str) -> list:
    labels = [f"pbft-ci.executor={executor.engine.instance_id}", f"pbft-ci.role={role}"]
    return docker_client.containers.list(all=True, filters={"label": labels})


@pytest.fixture
def engine_calls(monkeypatch) -> list[tuple[str, str, str]]:
    """Every container create and start during the test: (call, pbft-ci.role label, thread name)."""
    calls = []
    create, start = ContainerCollection.create, Container.start

    def recording_create(self, image, command=None, **kwargs):
        role = (kwargs.get("labels") or {}).get("pbft-ci.role", "")
        calls.append(("create", role, threading.current_thread().name))
        return create(self, image, command, **kwargs)

    def recording_start(self, **kwargs):
        calls.append(("start", self.labels.get("pbft-ci.role", ""), threading.current_thread().name))
        return start(self, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", recording_create)
    monkeypatch.setattr(Container, "start", recording_start)
    return calls


@pytest.mark.docker
async def test_a_second_build_creates_and_starts_no_container_on_its_way(
    make_executor, git_repo, build_ids, container_roles, engine_calls, caplog
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    git_repo.commit("master", PASSING)
    executor = make_executor()
    first_id, second_id = build_ids(), build_ids()

    first = await build(executor, git_repo, first_id)
    await wait_for_prepared(executor)
    del engine_calls[:]
    second = await build(executor, git_repo, second_id)
    await wait_for_prepared(executor)

    assert first.status == second.status == "success", log_text(second)
    assert container_roles[first_id] == ["build"]
    assert container_roles.get(second_id, []) == []
    # The only container created and started since is the one prepared for
    # the next build, on the executor's preparing thread, which no result waits for.
    assert engine_calls and all(
        role == "ready" and thread.startswith("ready-node7") for _, role, thread in engine_calls
    ), engine_calls
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"build id={first_id} node=7 has no prepared container" in message for message in messages)
    assert any(f"build id={second_id} node=7 runs in prepared container" in message for message in messages)


@pytest.mark.docker
@pytest.mark.parametrize("commands, files", [
    (["sh test.sh"], {"test.sh": "echo tests passed\n"}),
    (["echo broken", "exit 3"], {}),
    (["false", "echo not reached"], {}),
    (["echo $0 $# \"$HOME\" \"$(pwd)\" \"$(id -u)\"", "ls -a", "cat", "echo stdin ended"], {"data.txt": "x\n"}),
    (["no-such-command"], {}),
])
async def test_a_prepared_container_gives_what_a_fresh_one_gives(
    make_executor, git_repo, build_ids, commands, files, caplog
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    head = git_repo.commit("master", {".pbft-ci.yml": spec(*commands), **files})
    executor = make_executor()
    fresh_id, prepared_id = build_ids(), build_ids()

    fresh = await build(executor, git_repo, fresh_id)
    await wait_for_prepared(executor)
    prepared = await build(executor, git_repo, prepared_id)

    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert f"build id={fresh_id} node=7 has no prepared container" in messages
    assert f"build id={prepared_id} node=7 runs in prepared container" in messages
    assert fresh.commit == head
    assert prepared.to_dict() == fresh.to_dict()
    assert comparable_log(prepared) == comparable_log(fresh)


@pytest.mark.docker
async def test_a_prepared_container_killed_behind_the_executors_back_is_not_used(
    make_executor, git_repo, build_ids, container_roles, docker_client
):
    git_repo.commit("master", PASSING)
    executor = make_executor()
    await build(executor, git_repo, build_ids())
    await wait_for_prepared(executor)
    [killed] = executor_containers(docker_client, executor, "ready")
    killed.kill()
    second_id = build_ids()

    result = await build(executor, git_repo, second_id)

    assert result.status == "success", log_text(result)
    assert "tests passed" in log_text(result)
    assert container_roles[second_id] == ["build"]
    assert await removed(docker_client, killed.id), "the dead container is removed"


@pytest.fixture
def other_image(docker_client, default_image, build_ids):
    """An image with an id of its own (a tag of the default image would share its id). Asked for
    before make_executor, so that it is removed after the executor closed: removing a tag whose
    image a container still uses leaves the image behind, untagged."""
    tag = f"pbft-ci-test/other:{build_ids()}"
    dockerfile = io.BytesIO(f"FROM {default_image}\nLABEL pbft-ci.test={tag}\n".encode())
    image, _ = docker_client.images.build(fileobj=dockerfile, tag=tag, network_mode="none", rm=True)
    yield tag
    docker_client.images.remove(image.id, force=True)


@pytest.mark.docker
@pytest.mark.parametrize("kind", ["another image", "caches"])
async def test_a_build_of_another_kind_starts_its_own_container(
    other_image, make_executor, git_repo, build_ids, container_roles, docker_client, kind
):
    git_repo.commit("master", PASSING)
    executor = make_executor()
    await build(executor, git_repo, build_ids())
    [default_key] = await wait_for_prepared(executor)
    if kind == "another image":
        git_repo.commit("master", {".pbft-ci.yml": spec("sh test.sh", image=other_image)})
    else:
        git_repo.commit("master", {".pbft-ci.yml": yaml_with_cache("sh test.sh")})
    second_id = build_ids()

    result = await build(executor, git_repo, second_id)

    assert result.status == "success", log_text(result)
    assert "build" in container_roles[second_id]
    # The prepared container waits on for the next build of its kind.
    if kind == "another image":
        keys = await wait_for_prepared(executor, count=2)
        assert keys[0] == default_key and keys[1][0] == docker_client.images.get(other_image).id
    else:
        assert executor.engine.ready.keys == [default_key]


def yaml_with_cache(*commands: str) -> str:
    return spec(*commands) + "cache:\n  paths: [~/.cache/x]\n"


@pytest.mark.docker
@pytest.mark.parametrize("when", ["prepared", "still starting"])
async def test_close_leaves_no_container_or_volume_of_the_executor(
    make_executor, git_repo, build_ids, docker_client, when
):
    git_repo.commit("master", PASSING)
    executor = make_executor()
    await build(executor, git_repo, build_ids())
    if when == "prepared":
        await wait_for_prepared(executor)

    executor.close()

    label = {"label": f"pbft-ci.executor={executor.engine.instance_id}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.volumes.list(filters=label) == []


@pytest.mark.docker
async def test_a_restarted_node_sweeps_the_containers_its_killed_process_prepared(
    make_executor, git_repo, build_ids, docker_client, tmp_path
):
    git_repo.commit("master", PASSING)
    killed = make_executor()
    build_id = build_ids()
    await build(killed, git_repo, build_id)
    await wait_for_prepared(killed)
    # The build's own container goes on the removal thread after its result.
    assert leftovers_of(docker_client, {"label": f"pbft-ci.build={build_id}"}) == ([], [])
    restarted = Executor(ExecutorSettings(data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=7,
                                          limits=killed._settings.limits), docker_client=docker_client)

    # The prepared container, its workspace volume and the volume of the build user's passwd and group files.
    assert restarted.sweep_leftovers() == 3
    label = {"label": f"pbft-ci.executor={killed.engine.instance_id}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.volumes.list(filters=label) == []
    restarted.close()


@pytest.mark.docker
async def test_a_build_runs_under_the_limits_of_its_order_not_those_the_node_started_with(
    make_executor, git_repo, build_ids
):
    """A change of `build:` through the order reaches a node as BuildOrder.limits; a container
    prepared under the node's own limits must not run a build ordered under others."""
    git_repo.commit("master", {".pbft-ci.yml": spec("df -k /tmp | tail -n 1", "df -k /workspace | tail -n 1")})
    executor = make_executor(tmp_mb=16, workspace_mb=32)
    ordered = BuildConfig(tmp_mb=24, workspace_mb=40)

    node_own = await build(executor, git_repo, build_ids())
    await wait_for_prepared(executor)
    first = await build(executor, git_repo, build_ids(), limits=ordered)
    await wait_for_prepared(executor)
    second = await build(executor, git_repo, build_ids(), limits=ordered)

    def sizes(result: BuildResult) -> list[str]:
        assert result.status == "success", log_text(result)
        return re.findall(r"^tmpfs\s+(\d+)", log_text(result), re.MULTILINE)

    assert sizes(node_own) == [str(16 * 1024), str(32 * 1024)]
    assert sizes(first) == sizes(second) == [str(24 * 1024), str(40 * 1024)]


DOCKERFILE_PROJECT = {
    "Dockerfile": (
        "FROM pbft-ci/busybox:latest\n"
        "ENV GREETING=hello\n"
        "WORKDIR /app\n"
        "COPY check.sh /app/check.sh\n"
        'ENTRYPOINT ["sh", "/app/check.sh"]\n'
        'CMD ["from-cmd"]\n'
    ),
    # What the image's command sees: its arguments, environment, first process, directory, user
    # and an empty stdin; the exit code decides the result.
    "check.sh": (
        'echo "$GREETING $# $1 pid $$ in $(pwd) as $(id -u) CI=$CI commit=${CI_COMMIT_SHA:-none}"\n'
        "cat\necho stdin ended\nexit 4\n"
    ),
}


@pytest.mark.docker
async def test_a_dockerfile_build_of_the_same_image_runs_its_command_in_a_prepared_container(
    make_executor, git_repo, build_ids, docker_client, caplog
):
    caplog.set_level(logging.DEBUG, logger="builder.run")
    head = git_repo.commit("master", DOCKERFILE_PROJECT)
    tag = f"pbft-ci-build/docker-only:{head[:12]}"
    ids = [build_ids() for _ in range(4)]
    try:
        executor = make_executor()
        await build(executor, git_repo, ids[0], repository_name="Docker_Only")  # builds the image
        executor.engine.ready.settled().result(timeout=30)
        # An image built once may well never come again (a push changes it): nothing is prepared.
        assert executor.engine.ready.keys == []
        await build(executor, git_repo, ids[1], repository_name="Docker_Only")
        await wait_for_prepared(executor)
        prepared = await build(executor, git_repo, ids[2], repository_name="Docker_Only")
        # Another node's executor, with the image already built and no container prepared.
        fresh = await build(make_executor(data_dir="other"), git_repo, ids[3], repository_name="Docker_Only")
    finally:
        docker_client.images.remove(tag, force=True)

    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert f"build id={ids[2]} node=7 runs in prepared container" in messages
    assert f"build id={ids[3]} node=7 has no prepared container" in messages
    assert (prepared.status, prepared.exit_code) == ("failure", 4), log_text(prepared)
    assert f"hello 1 from-cmd pid 1 in /app as 1000 CI=true commit={head}" in log_text(prepared)
    assert "stdin ended" in log_text(prepared)
    assert prepared.to_dict() == fresh.to_dict()
    # The same but for the image's build: this node's engine built it before, the other's builds it.
    assert f"== image {tag}: built on this node from commit {head[:12]}" in log_text(prepared)
    assert "Step 1/6 : FROM pbft-ci/busybox:latest" in log_text(fresh)
    assert without_image_build(comparable_log(prepared)) == without_image_build(comparable_log(fresh))


@pytest.mark.docker
async def test_an_image_without_a_shell_runs_its_command_in_a_container_of_its_own_each_time(
    make_executor, git_repo, build_ids, docker_client, default_image
):
    """No /bin/sh, no gate: the container prepared ahead cannot start, and the builds start theirs."""
    head = git_repo.commit("master", {"Dockerfile": (
        f"FROM {default_image} AS tools\n"
        "FROM scratch\n"
        "COPY --from=tools /bin/busybox /busybox\n"
        'CMD ["/busybox", "echo", "no shell here"]\n'
    )})
    tag = f"pbft-ci-build/docker-only:{head[:12]}"
    try:
        executor = make_executor()
        results = [await build(executor, git_repo, build_ids(), repository_name="Docker_Only") for _ in range(2)]
        executor.engine.ready.settled().result(timeout=30)
    finally:
        docker_client.images.remove(tag, force=True)

    for result in results:
        assert result.status == "success", log_text(result)
        assert "no shell here" in log_text(result)
    assert executor.engine.ready.keys == []
