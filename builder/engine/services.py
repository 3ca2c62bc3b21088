"""A pipeline's services (builder/plan/pipeline.py): containers started before its first step, in
the build's own network namespace, removed with the build.

Every container of a pipeline joins the network namespace of its holder (builder/engine/steps.py),
as the containers of a pod do: a service listens on the namespace's loopback, and its
name resolves there to 127.0.0.1 (an /etc/hosts entry the holder carries). The namespace
has no other interface unless the repository has a build network (builder/engine/network.py), so
no other build, no process of the node's host, no peer and nothing outside reaches a
service, and a service reaches none of them.

A service is hardened like a step: the build user, no capabilities, no new privileges,
a read-only root file system, a pids limit and a CPU and memory share of the build's.
What it may write is a tmpfs each: /tmp, /run, HOME, /dev/shm and every path its image
declares a volume, each of the build's `tmp_mb` (those of HOME, `home_mb`), counted in
its memory limit so that filling one ends in "No space left on device".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from docker.types import Healthcheck

from builder.plan.resources import memory_budget
from builder.engine.exits import OutputCapture
from builder.engine.sandbox import (
    Sandbox, SandboxError, build_identity, host_config, identity_mounts, joined, remove_all,
)

# How often the engine runs a service's readiness command, and how long one run may take.
READY_INTERVAL_S = 0.5
READY_COMMAND_TIMEOUT_S = 10.0
# A service's output kept for the build log (written after the steps, never live: it would
# interleave with theirs).
SERVICE_OUTPUT_BYTES = 16 * 1024
_SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class PlannedService:
    """A service as it will run: its image checked, its environment complete."""

    name: str
    image: str
    image_id: str
    script: str | None  # None: the image's own entrypoint and command
    environment: dict[str, str]
    ready_command: str | None
    ready_timeout_s: float


class RunningService:
    def __init__(self, planned: PlannedService, container, capture: OutputCapture) -> None:
        self.planned = planned
        self.container = container
        self._capture = capture

    def output(self) -> bytes:
        """What it wrote so far, at most SERVICE_OUTPUT_BYTES; its output is no longer read after."""
        self._capture.close()
        data, truncated = self._capture.finish()
        return data + (b"\n[output cut]\n" if truncated else b"")

    def close(self) -> None:
        self._capture.close()


def start_service(sandbox: Sandbox, planned: PlannedService, *, pod: str) -> RunningService:
    """Create and start `planned` in the network namespace of container `pod`."""
    limits = sandbox.limits
    image = sandbox.client.images.get(planned.image_id)
    declared = sorted((image.attrs.get("Config") or {}).get("Volumes") or {})
    budget = memory_budget(limits, with_workspace=False)
    options = host_config(sandbox, budget)
    identity = build_identity(sandbox, planned.image_id)
    writable = ["/run", *declared]
    memory = f"{budget.total_mb + limits.tmp_mb * len(writable)}m"
    options = joined(options, f"container:{pod}")
    options.update(
        mem_limit=memory,
        memswap_limit=memory,
        read_only=True,
        environment={**identity.environment(), **planned.environment},
        mounts=identity_mounts(identity, options),
    )
    options["tmpfs"] = {
        **options["tmpfs"],
        **{path: f"rw,exec,nosuid,nodev,size={limits.tmp_mb}m,mode=1777" for path in writable if path not in options["tmpfs"]},
    }
    if planned.ready_command is not None:
        options["healthcheck"] = Healthcheck(
            test=["CMD-SHELL", planned.ready_command],
            interval=int(READY_INTERVAL_S * _SECOND_NS),
            timeout=int(READY_COMMAND_TIMEOUT_S * _SECOND_NS),
            retries=1_000_000,
            start_period=0,
        )
    command, entrypoint = None, None
    if planned.script is not None:
        entrypoint, command = ["/bin/sh", "-e", "-c"], [planned.script]
    container = sandbox.client.containers.create(
        planned.image_id, command, entrypoint=entrypoint, detach=True,
        labels={**sandbox.labels, "pbft-ci.role": "service", "pbft-ci.service": planned.name}, **options,
    )
    try:
        capture = OutputCapture(container.attach(stdout=True, stderr=True, stream=True), SERVICE_OUTPUT_BYTES)
        container.start()
    except BaseException:
        remove_all([container], [])
        raise
    return RunningService(planned, container, capture)


def wait_until_ready(services: list[RunningService], deadline: float) -> None:
    """Return once every service runs and those with a readiness command passed it; raise
    SandboxError naming the first that exited, or that was not ready in its time."""
    started = time.monotonic()
    waiting = list(services)
    while waiting:
        for service in list(waiting):
            service.container.reload()
            state = service.container.attrs.get("State", {})
            name = service.planned.name
            if state.get("Status") != "running":
                raise SandboxError(f"service {name!r} exited with code {state.get('ExitCode')} before it was ready")
            health = (state.get("Health") or {}).get("Status")
            if service.planned.ready_command is None or health == "healthy":
                waiting.remove(service)
            elif time.monotonic() - started > service.planned.ready_timeout_s:
                raise SandboxError(f"service {name!r} was not ready within {service.planned.ready_timeout_s:g} s")
            elif time.monotonic() > deadline:
                raise SandboxError(f"service {name!r} was not ready before the build's deadline")
        if waiting:
            time.sleep(0.1)
