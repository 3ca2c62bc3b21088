"""A node whose builds run on another Docker engine (`build.docker_host`): a second dockerd of this test's own.

The second engine has its own data root, exec root and sockets: a unix
socket, and tcp on loopback that only TLS clients with a certificate of the
test's CA may use. Its builds are told apart from the main engine's by the
engines' event streams. The engine shares this machine's file system, so the
tests also check that nothing the node mounts is a path of the node's own:
every bind mount's source lies in a volume of the engine it runs on, as it
would have to on another machine. ssh:// has no test engine here (no sshd):
its configuration is tested in tests/test_config_docker_engine.py.
"""

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker.errors
import pytest
from docker.models.containers import ContainerCollection

from builder import BuildOrder, BuildResult, Executor, ExecutorSettings, RepositorySettings
from builder.engine import network as buildnet
from builder.engine.images import EVERY_ENGINE_NEEDS_IT
from builder.engine.sandbox import ENGINE_LOST
from builder.plan.containerpaths import SOURCES_DIR
from harness.network import free_port, write_network
from node import contexts
from shared.config import BuildConfig, DockerEngineConfig, load_config
from tests.builder.cached_project import cache_lines, cached_project
from tests.builder.executor_helpers import log_text, spec
from tests.support.second_engine import ServerTLS, load_image, make_certificates, start_second_engine

pytestmark = pytest.mark.docker

PASSING = {".pbft-ci.yml": spec("echo built on $(hostname)", "sh test.sh"), "test.sh": "echo tests passed\n"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def skip_without_dockerd():
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("a second Docker engine needs root and dockerd")


@pytest.fixture(scope="module")
def second_engine(docker_client, default_image, certificates, tmp_path_factory):
    """The second dockerd with the default build image loaded; afterwards nothing of the tests may be left on it."""
    skip_without_dockerd()
    tls = ServerTLS(certificates["ca"], certificates["server"], certificates["server-key"])
    engine = start_second_engine(tls=tls, tcp_port=free_port())
    try:
        load_image(docker_client, engine.client(), default_image, tmp_path_factory.mktemp("image"))
        yield engine
        client = engine.client()
        assert not client.containers.list(all=True), "containers left on the second engine"
        assert not client.volumes.list(), "volumes left on the second engine"
    finally:
        engine.stop()
    assert not engine.root.exists()


@pytest.fixture
def bind_sources(monkeypatch) -> list[str]:
    """The source of every bind mount of every container created during the test but the build
    containers' inboxes (the node's own folders: these engines run on this host)."""
    sources: list[str] = []
    create = ContainerCollection.create

    def recording_create(self, image, command=None, **kwargs):
        sources.extend(mount["Source"] for mount in kwargs.get("mounts") or []
                       if mount["Type"] == "bind" and mount["Target"] != SOURCES_DIR)
        return create(self, image, command, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", recording_create)
    return sources


def node_executor(tmp_path, git_repo, **build):
    """Node 0's executor, made as a node makes it from its configuration."""
    path = write_network(tmp_path, repositories={"example": str(git_repo.path)}, build=build)
    config = load_config(path, node_id=0)
    return contexts.node_executor(config, 0), config.data_dir / "node-0"


async def run(executor, git_repo, build_id, settings: RepositorySettings = RepositorySettings()) -> BuildResult:
    return await executor.run(BuildOrder(
        build_id=build_id, repository_name="example", repository_url=str(git_repo.path), branch="master",
        settings=settings,
    ))


def containers_created(client, since_s: float, data_dir) -> list[dict]:
    """The container-create events of `client`'s engine for the node whose data directory is `data_dir`."""
    events = client.events(
        since=int(since_s) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create", "label": f"pbft-ci.data={data_dir}"},
    )
    return list(events)


async def test_a_node_configured_with_a_second_engines_socket_runs_its_builds_there(
    tmp_path, second_engine, docker_client, git_repo, build_ids, bind_sources
):
    head = git_repo.commit("master", PASSING)
    executor, data_dir = node_executor(tmp_path, git_repo, docker_host=second_engine.unix_host)
    started_s = time.time()
    try:
        first = await run(executor, git_repo, build_ids())
        # The second build finds a container prepared for it, on the same engine.
        second = await run(executor, git_repo, build_ids())
    finally:
        executor.close()

    for result in (first, second):
        assert result.agreed_key()[:3] == ("success", 0, head), log_text(result)
        assert "tests passed" in log_text(result)
    on_second = containers_created(second_engine.client(), started_s, data_dir)
    assert {event["Actor"]["Attributes"]["pbft-ci.role"] for event in on_second} >= {"build", "identity-reader"}
    assert containers_created(docker_client, started_s, data_dir) == []
    # /etc/passwd and /etc/group come from a volume of the engine that runs the build.
    assert len(bind_sources) >= 4
    assert all(source.startswith(f"{second_engine.data_root}/volumes/") for source in bind_sources), bind_sources


async def test_a_cache_is_restored_on_the_second_engine(tmp_path, second_engine, git_repo, build_ids, bind_sources):
    executor, _ = node_executor(tmp_path, git_repo, docker_host=second_engine.unix_host)
    try:
        git_repo.commit("master", cached_project("one"))
        saved = await run(executor, git_repo, build_ids())
        git_repo.commit("master", cached_project("two", require=True))
        restored = await run(executor, git_repo, build_ids())
    finally:
        executor.close()

    assert saved.status == restored.status == "success", log_text(restored)
    assert cache_lines(saved)[-1].startswith("== cache saved key")
    assert cache_lines(restored)[0].startswith("== cache restore hit key")
    # Uploaded, not bind-mounted from the node's caches folder.
    assert "restored: home-one tox-one" in log_text(restored)
    assert all(source.startswith(f"{second_engine.data_root}/volumes/") for source in bind_sources), bind_sources


async def test_an_image_the_second_engine_lacks_is_an_error_result(
    tmp_path, second_engine, docker_client, default_image, git_repo, build_ids
):
    only_here = f"pbft-ci-test/only-on-the-first-engine:{build_ids()}"
    docker_client.images.get(default_image).tag(only_here)
    try:
        head = git_repo.commit("master", {".pbft-ci.yml": spec("true", image=only_here)})
        executor, _ = node_executor(tmp_path, git_repo, docker_host=second_engine.unix_host)
        try:
            result = await run(executor, git_repo, build_ids())
        finally:
            executor.close()
    finally:
        docker_client.images.remove(only_here)

    assert result.to_dict() == {
        "status": "error", "exit_code": None, "commit": head,
        "reason": f"image not found: {only_here} (not on this node's engine, and docker.io is not a registry this "
                  "network pulls from; build.registries: none). " + EVERY_ENGINE_NEEDS_IT,
    }


def test_a_restarted_node_sweeps_its_leftovers_from_the_engine_it_builds_on(
    tmp_path, second_engine, docker_client, default_image, git_repo
):
    executor, data_dir = node_executor(tmp_path, git_repo, docker_host=second_engine.unix_host)
    labels = {"pbft-ci.data": str(data_dir), "pbft-ci.build": "left-behind"}
    there = second_engine.client().containers.create(default_image, ["true"], labels=labels)
    here = docker_client.containers.create(default_image, ["true"], labels=labels)
    try:
        assert executor.sweep_leftovers() == 1
        with pytest.raises(docker.errors.NotFound):
            there.reload()
        here.reload()
    finally:
        executor.close()
        here.remove(force=True)


async def build_over_tls(tmp_path, engine, certificates, git_repo, build_id, ca: str, cert: str):
    """One build by a node reaching `engine` over tcp with the CA `ca` and the client certificate `cert`."""
    tls = {"ca_file": str(certificates[ca]), "cert_file": str(certificates[cert]),
           "key_file": str(certificates[f"{cert}-key"])}
    executor, data_dir = node_executor(
        tmp_path, git_repo, docker_host=f"tcp://127.0.0.1:{engine.tcp_port}", docker_tls=tls
    )
    try:
        return await run(executor, git_repo, build_id), data_dir
    finally:
        executor.close()


async def test_a_tcp_engine_builds_for_a_node_with_a_client_certificate_of_its_ca(
    tmp_path, second_engine, certificates, docker_client, git_repo, build_ids
):
    head = git_repo.commit("master", PASSING)
    started_s = time.time()
    result, data_dir = await build_over_tls(tmp_path, second_engine, certificates, git_repo, build_ids(), "ca", "client")

    assert result.agreed_key()[:3] == ("success", 0, head), log_text(result)
    assert containers_created(second_engine.client(), started_s, data_dir)
    assert containers_created(docker_client, started_s, data_dir) == []


@pytest.mark.parametrize("ca, cert", [
    # The engine does not know the node's certificate.
    ("ca", "stranger"),
    # The node does not know the engine's: someone else may be answering on that port.
    ("other-ca", "client"),
])
async def test_a_tcp_engine_and_a_node_that_do_not_trust_each_other_build_nothing(
    tmp_path, second_engine, certificates, git_repo, build_ids, ca, cert
):
    head = git_repo.commit("master", PASSING)
    started_s = time.time()
    result, data_dir = await build_over_tls(tmp_path, second_engine, certificates, git_repo, build_ids(), ca, cert)

    assert result.to_dict() == {
        "status": "error", "exit_code": None, "commit": head, "reason": "docker engine unavailable",
    }
    assert "SSL" in log_text(result) or "certificate" in log_text(result), log_text(result)
    assert containers_created(second_engine.client(), started_s, data_dir) == []


async def test_a_networked_build_is_refused_on_an_engine_whose_bridge_is_not_on_this_host(
    tmp_path, docker_client, default_image, git_repo, build_ids
):
    """The node's iptables rules guard only a bridge on its own host: an engine in another network
    namespace (as on another machine) gets no networked build, and nothing of the attempt is left."""
    skip_without_dockerd()
    namespace = f"pbftci-engine-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        engine = start_second_engine(netns=namespace)
        try:
            load_image(docker_client, engine.client(), default_image, tmp_path)
            head = git_repo.commit("master", {".pbft-ci.yml": spec("echo must not run")})
            executor = Executor(ExecutorSettings(data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=0,
                limits=BuildConfig(memory_mb=64, tmp_mb=8, workspace_mb=16, home_mb=8),
                engine=DockerEngineConfig(engine.unix_host), peer_hosts=("127.0.0.1",)))
            try:
                result = await run(executor, git_repo, build_ids(), RepositorySettings(networked=True))
            finally:
                executor.close()
            data_dir = (tmp_path / "data").resolve()
            assert not engine.client().networks.list(filters={"label": f"pbft-ci.data={data_dir}"})
            assert not engine.client().containers.list(all=True)
        finally:
            engine.stop()
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)

    assert result.to_dict() == {"status": "error", "exit_code": None, "commit": head, "reason": buildnet.UNAVAILABLE}
    assert "is not on this host" in log_text(result) and "must not run" not in log_text(result)
    tag = buildnet.network_tag(data_dir)
    for command in (["iptables", "-t", "filter", "-S"], ["iptables", "-t", "nat", "-S"], ["ip6tables", "-S"]):
        assert tag not in subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert not Path(f"/sys/class/net/{buildnet.BuildNetwork(data_dir, ()).bridge}").exists()


async def test_a_build_whose_engine_restarts_under_it_runs_again_once_the_engine_is_back(
    tmp_path, second_engine, git_repo, build_ids
):
    """The engine's service restarts while the build runs (an upgrade, a crash): dockerd
    stops the build's container on its way down. That is the node's trouble, not the
    build's: the build runs again once the engine answers, and the next build finds the
    node as before. Nothing of either is left on the engine (the fixture checks)."""
    head = git_repo.commit("master", {".pbft-ci.yml": spec("echo commands-begin", "sleep 15", "echo commands-end")})
    executor, _ = node_executor(tmp_path, git_repo, docker_host=second_engine.unix_host)
    build_id = build_ids()
    engine = second_engine.client()
    running = {"label": [f"pbft-ci.build={build_id}", "pbft-ci.role=build"], "status": "running"}
    try:
        task = asyncio.create_task(run(executor, git_repo, build_id))
        deadline = time.monotonic() + 60
        while not engine.containers.list(filters=running):
            assert time.monotonic() < deadline and not task.done(), "the build never ran"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # its commands run
        await asyncio.to_thread(second_engine.restart)
        result = await asyncio.wait_for(task, 120)
        git_repo.commit("master", PASSING)
        after = await run(executor, git_repo, build_ids())
    finally:
        executor.close()

    text = log_text(result)
    assert result.agreed_key()[:3] == ("success", 0, head), text
    assert f"== {ENGINE_LOST}: the build runs again, in a fresh container\n" in text
    # dockerd gives a container 10 s to stop before it kills it: the first run never ended.
    assert text.count("commands-begin") == 2 and text.count("commands-end") == 1
    assert after.status == "success", log_text(after)
