"""Helpers of the executor tests: git repositories to build, build specs, what a build left behind.
The fixtures (a Docker engine, the default image, executors) are in tests/builder/conftest.py."""

import asyncio
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import docker.errors
import yaml

from builder import BuildOrder
from shared.config import BuildConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGE = BuildConfig().image
# Debian with python3, pytest and git (scripts/build-debian-image.sh), which the test set-up builds.
PYTHON_IMAGE = "pbft-ci/debian-python:bookworm"

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

    def pull_request(self, number: int, commit: str) -> str:
        """Point the forge's ref of pull request `number` at `commit`, as GitHub and Gitea keep
        it in the target repository; returns the ref."""
        ref = f"refs/pull/{number}/head"
        self._git("update-ref", ref, commit)
        return ref

    def tag(self, name: str, commit: str, *, annotated: bool = False) -> None:
        """Tag `commit` as `name`; an annotated tag is an object of its own, as forges send for tag pushes."""
        self._git("tag", *(["-a", "-m", name] if annotated else []), name, commit)


def spec(*commands: str, **options) -> str:
    """The text of a .pbft-ci.yml running `commands`, with optional image / timeout_s."""
    return yaml.safe_dump({"commands": list(commands), **options})


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
    caplog.records at DEBUG for builder.run). Any other is found by label.
    """
    pattern = re.compile(rf"build id={re.escape(build_id)} node=\d+ runs in prepared container (\w+)")
    for record in log_records:
        found = pattern.search(record.getMessage())
        if found:
            return {"id": found.group(1)}
    return {"label": [f"pbft-ci.build={build_id}", "pbft-ci.role=build"]}


def outcome(result) -> dict:
    """A build's agreed result but the spec it ran (tests/test_executor.py checks that on its own)."""
    return {"status": result.status, "exit_code": result.exit_code, "commit": result.commit}


async def build(executor, git_repo, build_ids, branch="master", repository_name="example", **kwargs):
    """One executor run of `git_repo`'s `branch` under a fresh build id: the BuildResult."""
    return await executor.run(BuildOrder(
        build_id=build_ids(), repository_name=repository_name, repository_url=str(git_repo.path), branch=branch,
        **kwargs,
    ))


def live_log(tmp_path: Path, build_id: str) -> Path:
    """The log the make_executor fixture's executor (node 7, logs in `tmp_path`/log) writes while `build_id` runs."""
    return tmp_path / "log" / f"build-node7-{build_id}.log"


async def until_logged(log_path: Path, text: str) -> None:
    """Until the build's live log holds `text`: a container is created well before its
    first command runs, longer still on a busy machine."""
    async with asyncio.timeout(60):
        while not (log_path.exists() and text in log_path.read_text(errors="replace")):
            await asyncio.sleep(0.05)


def log_text(result) -> str:
    """The build log a BuildResult names."""
    with open(result.log_path, encoding="utf-8", errors="replace") as file:
        return file.read()


class Listener:
    """A TCP server on every host address that counts the connections it gets."""

    def __init__(self):
        self.socket = socket.create_server(("0.0.0.0", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


def host_address() -> str:
    """An address of this host other than loopback when there is a route, else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


async def wait_for_prepared(executor, count: int = 1, timeout_s: float = 30) -> list:
    """The keys with a prepared container, once there are `count` of them."""
    deadline = time.monotonic() + timeout_s
    while len(executor.engine.ready.keys) < count:
        assert time.monotonic() < deadline, "no container was prepared"
        await asyncio.sleep(0.05)
    return executor.engine.ready.keys


def remove_images(docker_client, *names) -> None:
    """Remove the images `names` (tags or ids) a test made; one gone already is no error."""
    for name in names:
        try:
            docker_client.images.remove(name, force=True)
        except docker.errors.ImageNotFound:
            pass
