"""Fixtures for the executor tests: a Docker engine, the default image, git repositories.

Imported by tests/test_executor.py (tests/conftest.py belongs to the protocol
tests), so everything here is a fixture or a helper that module uses.
"""

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml
from docker.models.containers import ContainerCollection

from node.executor import Executor
from shared.config import BuildConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = BuildConfig().image

# Fixed identity and dates make the test commits independent of the machine's
# git configuration.
_GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@pbft-ci.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@pbft-ci.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


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


class GitRepo:
    """A throwaway non-bare repository that tests fill one commit at a time."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self._git("init", "--quiet", "--initial-branch=master", "--template=")

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], env=_GIT_ENV, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, branch: str, files: dict[str, str], message: str = "change") -> str:
        """Commit `files` (written over the branch's tree) on `branch`, creating it from master."""
        if self._git("branch", "--list", branch):
            self._git("checkout", "--quiet", branch)
        elif self._git("branch", "--list"):
            self._git("checkout", "--quiet", "-b", branch, "master")
        else:
            self._git("checkout", "--quiet", "--orphan", branch)
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        self._git("add", "--all")
        self._git("commit", "--quiet", "--no-verify", "-m", message)
        return self._git("rev-parse", "HEAD")

    def tag(self, name: str, commit: str, *, annotated: bool = False) -> None:
        """Tag `commit` as `name`; an annotated tag is an object of its own, as forges send for tag pushes."""
        self._git("tag", *(["-a", "-m", name] if annotated else []), name, commit)


def spec(*commands: str, **options) -> str:
    """The text of a .pbft-ci.yml running `commands`, with optional image / timeout_s."""
    return yaml.safe_dump({"commands": list(commands), **options})


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

    def make(*, data_dir: str = "data", **limit_overrides) -> Executor:
        """`data_dir` (under the test's tmp_path) differs between executors that stand for different nodes."""
        max_concurrent = limit_overrides.pop("max_concurrent", 2)
        executor = Executor(
            data_dir=tmp_path / data_dir,
            log_dir=tmp_path / "log",
            node_id=7,
            limits=BuildConfig(**limit_overrides),
            max_concurrent=max_concurrent,
            docker_client=docker_client,
        )
        executors.append(executor)
        return executor

    yield make
    for executor in executors:
        executor.close()
    for executor in executors:
        left, volumes = leftovers_of(docker_client, {"label": f"pbft-ci.executor={executor._instance_id}"})
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


def leftovers_of(docker_client, filters: dict, removal_s: float = 30.0) -> tuple[list, list]:
    """The containers and volumes matching `filters` that remain once the executor's
    removal thread, which tears a build down right after its result, has had time to.

    Volumes have no id filter: with one (a container found by its id), only
    containers are looked for.
    """
    deadline = time.monotonic() + removal_s
    while True:
        # The executor removes containers meanwhile: one listed may be gone when inspected.
        containers = docker_client.containers.list(all=True, filters=filters, ignore_removed=True)
        volumes = [] if "id" in filters else docker_client.volumes.list(filters=filters)
        if not (containers or volumes) or time.monotonic() > deadline:
            return containers, volumes
        time.sleep(0.1)


def build_container_filters(log_records, build_id: str) -> dict:
    """Docker filters for the container a build runs in.

    A container prepared before the build came carries no build id; the
    executor names it in a debug line of the node log (`log_records`, e.g.
    caplog.records at DEBUG for node.executor). Any other is found by label.
    """
    pattern = re.compile(rf"build id={re.escape(build_id)} node=\d+ runs in prepared container (\w+)")
    for record in log_records:
        found = pattern.search(record.getMessage())
        if found:
            return {"id": found.group(1)}
    return {"label": [f"pbft-ci.build={build_id}", "pbft-ci.role=build"]}


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


def outcome(result) -> dict:
    """A build's agreed result but the spec it ran (tests/test_executor.py checks that on its own)."""
    return {"status": result.status, "exit_code": result.exit_code, "commit": result.commit}


async def build(executor, git_repo, build_ids, branch="master", repository_name="example", **kwargs):
    """One executor run of `git_repo`'s `branch` under a fresh build id: the BuildResult."""
    return await executor.run(
        build_id=build_ids(), repository_name=repository_name, repository_url=str(git_repo.path), branch=branch,
        **kwargs,
    )


def log_text(result) -> str:
    """The build log a BuildResult names."""
    with open(result.log_path, encoding="utf-8", errors="replace") as file:
        return file.read()
