"""Fixtures of the build side's tests: a Docker engine, the default image, git repositories, executors,
an image registry."""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import ContainerCollection

from builder import Executor, ExecutorSettings
from shared.config import BuildConfig
from tests.builder.executor_helpers import DEFAULT_IMAGE, PYTHON_IMAGE, REPO_ROOT, GitRepo, leftovers_of
from tests.support.registry import REGISTRY, running_registry


def _engine_or_skip() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine answers: {exc}")
    return client


@pytest.fixture(scope="session")
def docker_client():
    client = _engine_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="session")
def default_image(docker_client) -> str:
    """The default build image, built by the project's own script when missing."""
    try:
        docker_client.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(REPO_ROOT / "scripts" / "build-image.sh")], check=True)
    return DEFAULT_IMAGE


@pytest.fixture
def python_image(docker_client) -> str:
    try:
        docker_client.images.get(PYTHON_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{PYTHON_IMAGE} is built by `PBFT_CI_TEST_IMAGES=1 scripts/setup.sh`")
    return PYTHON_IMAGE


@pytest.fixture
def git_repo(tmp_path) -> GitRepo:
    return GitRepo(tmp_path / "origin")


@pytest.fixture
def make_executor(tmp_path, docker_client, default_image, build_ids):
    """Executors over this test's data and log dirs, closed after the test.

    Closed before `build_ids` checks for leftovers (it is set up first, so torn
    down last): a closed executor has removed every finished build's containers.
    Then nothing labelled with the executor may remain either: that covers the
    containers prepared before any build was known, which carry no build id.
    """
    executors = []

    def make(*, data_dir: str = "data", node_id: int = 7, **limit_overrides) -> Executor:
        """`data_dir` (under the test's tmp_path) differs between executors that stand for different nodes."""
        max_concurrent = limit_overrides.pop("max_concurrent", 2)
        repository_bounds = limit_overrides.pop("repository_bounds", {})
        executor = Executor(ExecutorSettings(data_dir=tmp_path / data_dir,
            log_dir=tmp_path / "log",
            node_id=node_id,
            limits=BuildConfig(**limit_overrides),
            max_concurrent=max_concurrent,
            repository_bounds=repository_bounds,
        ), docker_client=docker_client)
        executors.append(executor)
        return executor

    yield make
    for executor in executors:
        executor.close()
    for executor in executors:
        left, volumes = leftovers_of(docker_client, {"label": f"pbft-ci.executor={executor.engine.instance_id}"})
        assert not left, f"containers left behind by the executor: {[c.id[:12] for c in left]}"
        assert not volumes, f"volumes left behind by the executor: {[v.name for v in volumes]}"


@pytest.fixture
def build_ids(docker_client):
    """Fresh build ids; afterwards, no container or workspace volume labelled with one may remain."""
    issued = []

    def new_id() -> str:
        issued.append(f"t-{uuid.uuid4().hex[:12]}")
        return issued[-1]

    yield new_id
    for build_id in issued:
        left, volumes = leftovers_of(docker_client, {"label": f"pbft-ci.build={build_id}"})
        assert not left, f"containers left behind by {build_id}: {[c.id[:12] for c in left]}"
        assert not volumes, f"volumes left behind by {build_id}: {[v.name for v in volumes]}"


@pytest.fixture
def container_roles(monkeypatch) -> dict[str, list[str]]:
    """The `pbft-ci.role` label of every container created during the test, in order, per build id."""
    created: dict[str, list[str]] = {}
    create = ContainerCollection.create

    def counting_create(self, image, command=None, **kwargs):
        labels = kwargs.get("labels") or {}
        created.setdefault(labels.get("pbft-ci.build", ""), []).append(labels.get("pbft-ci.role", ""))
        return create(self, image, command, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", counting_create)
    return created


@pytest.fixture
def registry(tmp_path, docker_client) -> Iterator[str]:
    """A real registry on loopback (tests/support/registry.py): its host:port. Afterwards no
    image of the engine is named after it."""
    if not Path(REGISTRY).exists():
        pytest.skip("docker-registry is installed by `PBFT_CI_TEST_IMAGES=1 scripts/setup.sh`")
    with running_registry(tmp_path / "registry") as host:
        try:
            yield host
        finally:
            for image in docker_client.images.list():
                for tag in image.tags:
                    if tag.startswith(f"{host}/"):
                        docker_client.images.remove(tag, force=True)
            for image in docker_client.images.list(filters={"label": "pbft-ci.test-image"}):
                docker_client.images.remove(image.id, force=True)
