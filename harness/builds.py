"""Repositories a real network builds, and what its builds leave behind: a one-commit
repository whose build is a given spec, and the containers, volumes and checkouts of nodes
that were killed before they could remove their own."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker

from builder.workspace.checkouts import checkouts_root

SLOW_SPEC = "commands:\n  - echo build started\n  - sleep 4\n  - echo build finished\n"


def slow_repository(path, spec: str = SLOW_SPEC) -> None:
    """A one-commit git repository on master whose build is `spec`."""
    path.mkdir()
    (path / ".pbft-ci.yml").write_text(spec)
    for command in (["init", "-q", "-b", "master"], ["add", "."],
                    ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "slow build"]):
        subprocess.run(["git", "-C", str(path), *command], check=True)


def remove_builds_under(directory: Path) -> None:
    """Remove the build containers, workspace volumes and checkouts of nodes whose data lives
    under `directory`: a node a test killed with `kill -9` and never started again left them."""
    remove_builds(lambda data_dir: data_dir.is_relative_to(directory))
    # A node's data directory is <the network's data_dir>/node-<id>; its checkouts folder
    # (in memory) is named for it, and a killed node leaves it, empty or not.
    for data_dir in (*directory.glob("data/node-*"), *directory.glob("*/data/node-*")):
        shutil.rmtree(checkouts_root(data_dir.resolve()), ignore_errors=True)


def remove_builds(of_data_dir: Callable[[Path], bool]) -> None:
    """Remove the build containers, then the volumes, and the checkouts of nodes whose data
    directory passes `of_data_dir`."""
    engine = docker.from_env()
    label = {"label": "pbft-ci.data"}
    try:
        # Other nodes' finished builds may be removed while this lists them: those are gone already.
        for container in engine.containers.list(all=True, filters=label, ignore_removed=True):  # before their volumes
            if of_data_dir(Path(container.labels["pbft-ci.data"])):
                container.remove(force=True)
                shutil.rmtree(checkouts_root(Path(container.labels["pbft-ci.data"])), ignore_errors=True)
        for volume in engine.volumes.list(filters=label):
            if of_data_dir(Path(volume.attrs["Labels"]["pbft-ci.data"])):
                volume.remove(force=True)
    finally:
        engine.close()
