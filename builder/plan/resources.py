"""What a build's containers may use: memory (with room for their tmpfs), CPUs and processes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from builder.plan.containerpaths import HOME_DIR, OUT_DIR
from shared.config import BuildConfig


@dataclass(frozen=True)
class MemoryBudget:
    """A container's memory limit: the processes' share plus room for every tmpfs to be full.

    tmpfs pages are charged to the memory cgroup of the container writing
    them, so with the processes' share alone a build filling its workspace is
    OOM-killed long before the workspace is full. With room for every tmpfs
    on top, filling one ends in "No space left on device" at its size, as on
    a disk. The price: while the tmpfs are empty, processes may use the whole
    sum.
    """

    processes_mb: int
    workspace_mb: int  # 0 when the build has no /workspace tmpfs (a Dockerfile build)
    tmp_mb: int
    shm_mb: int
    home_mb: int
    cache_mb: int = 0  # the tmpfs a build with caches writes its new cache to

    @property
    def total_mb(self) -> int:
        return self.processes_mb + self.workspace_mb + self.tmp_mb + self.shm_mb + self.home_mb + self.cache_mb

    def breakdown(self) -> str:
        parts = [f"{self.processes_mb} processes"]
        if self.workspace_mb:
            parts.append(f"{self.workspace_mb} /workspace")
        parts += [f"{self.tmp_mb} /tmp", f"{self.shm_mb} /dev/shm", f"{self.home_mb} {HOME_DIR}"]
        if self.cache_mb:
            parts.append(f"{self.cache_mb} {OUT_DIR}")
        return f"{self.total_mb} MB ({' + '.join(parts)})"


def memory_budget(limits: BuildConfig, *, with_workspace: bool, with_cache: bool = False) -> MemoryBudget:
    # /dev/shm is a tmpfs of its own, as large as /tmp (shm_size below).
    return MemoryBudget(
        processes_mb=limits.memory_mb,
        workspace_mb=limits.workspace_mb if with_workspace else 0,
        tmp_mb=limits.tmp_mb,
        shm_mb=limits.tmp_mb,
        home_mb=limits.home_mb,
        cache_mb=limits.cache_mb if with_cache else 0,
    )


def share(limits: BuildConfig, containers: int) -> BuildConfig:
    """Each container's limits when `containers` run at once (a step and the services): the
    build's processes' memory, CPUs and pids divided among them."""
    if containers == 1:
        return limits
    return dataclasses.replace(
        limits, memory_mb=max(limits.memory_mb // containers, 1), cpus=limits.cpus / containers,
        pids_limit=max(limits.pids_limit // containers, 1),
    )
