"""What a node's executor is made with: its folders, its engine and the limits of its builds.

The repositories' own settings are not here: each build carries those it was ordered with
(builder/order.py), so a reload never changes a build that started."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from shared.config import BuildConfig, DockerEngineConfig


@dataclass(frozen=True)
class ExecutorSettings:
    data_dir: Path  # this node's own: mirrors, caches, artifacts; it labels the node's containers
    log_dir: Path  # where build logs are written
    node_id: int
    limits: BuildConfig = BuildConfig()
    max_concurrent: int = 2  # builds at once on this node
    engine: DockerEngineConfig = DockerEngineConfig()  # where builds run
    # Every node and client host of the network: networked builds must reach none of them.
    peer_hosts: tuple[str, ...] = ()
    # How many builds of a repository run at once, for those that bound it (builder/queue.py).
    repository_bounds: Mapping[str, int] = field(default_factory=dict)
    # This node's credentials for the registries it pulls from (builder/engine/images.py).
    registry_auth: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Variables every build of this node gets (node/byzantine.py's flaky mode).
    extra_environment: Mapping[str, str] = field(default_factory=dict)
