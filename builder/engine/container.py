"""One build container run to its end: a spec build's (gated, filled, handed its script) or a
Dockerfile build's (the image's CMD), with its cache and artifacts copied out after an exit 0
and everything it made removed after."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.models.volumes import Volume
from docker.types import Mount

from builder.engine.exits import OutputCapture, ended_out_of_memory, killed_by_engine, wait_for_exit
from builder.engine.gate import GatedContainer, GateSetup, deliver_script, exported, start_gated_container
from builder.engine.sandbox import (
    ENGINE_LOST,
    ContainerOutcome,
    Hooks,
    Sandbox,
    SandboxError,
    Script,
    build_identity,
    host_config,
    identity_mounts,
    tmpfs_volume,
)
from builder.engine.sources import fill_gated
from builder.engine.transfer import (
    ArtifactsOut,
    copy_artifacts_out,
    copy_cache_out,
    copy_reports_out,
    ReportsOut,
    hold_mounts,
    upload_restore,
)
from builder.plan.cachemounts import CacheMounts
from builder.plan.containerpaths import OUT_DIR
from builder.plan.resources import memory_budget


@dataclass(frozen=True)
class ContainerJob:
    """One build container: its image (check_image's or images.py's id), its script (None: the
    image's CMD, a Dockerfile build), its deadline from the start of its commands, the variables
    exported to it, and for a spec build its caches, build network and artifacts."""

    image_id: str
    script: Script | None
    timeout_s: float
    environment: Mapping[str, str] = field(default_factory=dict)
    cache: CacheMounts | None = None
    network: str | None = None
    artifacts: ArtifactsOut | None = None
    reports: ReportsOut | None = None  # its test reports, copied out whatever its end


def run_container(
    sandbox: Sandbox, job: ContainerJob, hooks: Hooks = Hooks(), ready: GatedContainer | None = None,
) -> ContainerOutcome:
    """Run `job.script` (or, without one, the image's CMD) in `job.image_id` to completion or
    until the deadline, `job.timeout_s` after its commands start.

    The containers and volumes are removed before returning, or handed to the
    sandbox's `remove_later`.

    With a script, its workspace's tree is copied onto a size-limited tmpfs at
    /workspace and the root file system is read-only. Without one (an image
    built from the repository's Dockerfile) the sources live in the image, so
    its root file system stays writable; it is thrown away with the container.
    Either way the build gets HOME, a passwd entry and the tmpfs mounts.
    `hooks.on_output` gets each piece of output as it comes (from another thread),
    so the build log grows while the build runs. With `job.network` (a Docker
    network builder/engine/network.py made and guards) the build container joins it
    instead of having none.

    A spec build runs in one container. The tmpfs workspace is emptied
    whenever nothing has it mounted, and the daemon mounts a stopped
    container's volumes for an archive upload only while the call lasts; so
    the container is started first, held at GATE_COMMAND, which keeps the
    tmpfs mounted, the sources are uploaded into it, and then the script is
    written to the gate. `ready`, a container start_gated_container started
    earlier for this image, user and these limits (with no cache, no network
    and no script arguments), is used instead of starting one: the build's script,
    not the container, is what makes it this build. `hooks.on_started` is called
    once the build's commands run. `job.environment` is exported to the build
    (for a spec build, by the first line of the script it is handed). `hooks.on_container`
    gets the build's container as soon as there is one, before any of the build runs in it.

    With `job.cache` (spec builds only) the build gets the cache mounts. A build
    that saves its cache (`cache.save_to`) or declares `job.artifacts` also gets
    a holder: an idle container that mounts the cache tmpfs, the workspace,
    or both, from before the build's script is handed to it until the node
    has copied OUT_TAR and the artifacts out, because a tmpfs would vanish
    with the build container's exit. It is the one case of two containers.
    The alternative, a wrapper keeping the build container alive after the
    build until a second signal, was not taken: the container's exit would no
    longer be the build's end, so the exit code, the deadline kill, the OOM
    flag and the end of stray background processes would each need a second
    channel, one the build (running as the same user as the wrapper) could
    forge or kill. The holder adds one container start only to builds that
    keep something after they end.

    The cache and the artifacts are copied only after a build that exited 0; test reports
    (`job.reports`) whatever its end.
    """
    script, cache = job.script, job.cache
    assert ready is None or (cache is None and job.network is None and not (script and script.arguments)), \
        "a prepared container has no cache mounts, network or arguments"
    assert job.artifacts is None or script is not None, "only a spec build has artifacts"
    made = _Made()
    try:
        cache_mounts = _cache_mounts(sandbox, cache, made)
        if script is not None:
            _start_spec_build(sandbox, job, hooks, ready, cache_mounts, made)
        elif ready is not None:
            _start_prepared_image_build(sandbox, job, hooks, ready, made)
        else:
            _start_image_build(sandbox, job, hooks, made)
        released = time.monotonic()
        if hooks.on_started is not None:
            hooks.on_started()
        exit_code = wait_for_exit(made.container, job.timeout_s)
        commands_ms = round((time.monotonic() - released) * 1000)
        return _outcome(sandbox, made, exit_code, commands_ms, job)
    except requests.exceptions.ConnectionError as exc:
        # The engine went away under the build (its service restarted, it crashed): whatever
        # the build's container did, this node did not see it finish.
        raise SandboxError(ENGINE_LOST, f"{exc}\n", engine_lost=True) from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError("docker error: container failed to run", str(exc)) from None
    finally:
        _release(sandbox, made)


@dataclass
class _Made:
    """What one run_container has made so far, for its end to close and remove."""

    gated: GatedContainer | None = None
    cache_volume: Volume | None = None
    holder: Container | None = None
    container: Container | None = None
    capture: OutputCapture | None = None


def _cache_mounts(sandbox: Sandbox, cache: CacheMounts | None, made: _Made) -> list[Mount]:
    """The tmpfs a build with caches writes its new cache to, mounted at OUT_DIR."""
    if cache is None:
        return []
    made.cache_volume = tmpfs_volume(sandbox, "cache", cache.size_mb, mode="0700")
    return [Mount(OUT_DIR, made.cache_volume.name, type="volume", no_copy=True)]


def _start_spec_build(
    sandbox: Sandbox, job: ContainerJob, hooks: Hooks, ready: GatedContainer | None, cache_mounts: list[Mount],
    made: _Made,
) -> None:
    """A gated container (`ready`, or one started now) filled with the sources, a holder if the
    build keeps something after it ends, and the build's script handed to the gate."""
    script, cache, image_id = job.script, job.cache, job.image_id
    made.gated = ready or start_gated_container(
        sandbox, image_id, "build",
        GateSetup(arguments=script.arguments, cache_mounts=tuple(cache_mounts), network=job.network),
    )
    container = made.container = made.gated.container
    if hooks.on_container is not None:
        hooks.on_container(container)
    held = []
    if cache is not None and cache.save_to is not None:
        held += cache_mounts
    if job.artifacts is not None or job.reports is not None:
        held.append(Mount("/workspace", made.gated.volume.name, type="volume", no_copy=True))
    if held:
        # The build container has both tmpfs mounted already and keeps
        # them until its exit; the holder shares the mounts from here on.
        made.holder = hold_mounts(sandbox, image_id, held, job.timeout_s)
    fill_gated(sandbox, made.gated, script.workspace)
    # Read from here on: the gate's word on its copy of the sources came first (fill_gated).
    made.capture = OutputCapture(made.gated.output, sandbox.limits.output_cap_bytes, hooks.on_output)
    if cache is not None and cache.restore_tar is not None:
        upload_restore(container, cache.restore_tar, sandbox.user)
    # Killed meanwhile (by Executor.close, or behind the node's back),
    # it must not pass for a build that ran and failed.
    container.reload()
    if container.status != "running":
        raise SandboxError("docker error: container stopped before the build started")
    deliver_script(made.gated, exported(dict(job.environment), script.text), script.secrets)
    made.gated.close_stdin()


def _start_prepared_image_build(
    sandbox: Sandbox, job: ContainerJob, hooks: Hooks, ready: GatedContainer, made: _Made,
) -> None:
    """A Dockerfile build in a container started ahead (gate.start_image_gate): handed the
    build's variables, its gate execs the image's command."""
    made.gated = ready
    container = made.container = ready.container
    if hooks.on_container is not None:
        hooks.on_container(container)
    made.capture = OutputCapture(ready.output, sandbox.limits.output_cap_bytes, hooks.on_output)
    container.reload()
    if container.status != "running":
        raise SandboxError("docker error: container stopped before the build started")
    deliver_script(ready, "", dict(job.environment))
    ready.close_stdin()


def _start_image_build(sandbox: Sandbox, job: ContainerJob, hooks: Hooks, made: _Made) -> None:
    """A Dockerfile build's container, running the image's CMD with its output attached."""
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=False))
    identity = build_identity(sandbox, job.image_id)
    options.update(environment={**identity.environment(), **job.environment},
                   mounts=identity_mounts(identity, options))
    container = made.container = sandbox.client.containers.create(
        job.image_id, None, labels={**sandbox.labels, "pbft-ci.role": "build"}, detach=True, **options
    )
    if hooks.on_container is not None:
        hooks.on_container(container)
    # Attached before start: no output is missed however fast it comes.
    made.capture = OutputCapture(
        container.attach(stdout=True, stderr=True, stream=True), sandbox.limits.output_cap_bytes, hooks.on_output
    )
    container.start()


def _outcome(
    sandbox: Sandbox, made: _Made, exit_code: int | None, commands_ms: int, job: ContainerJob,
) -> ContainerOutcome:
    """How the stopped build ended, with its cache and artifacts copied out after an exit 0."""
    container = made.container
    output, truncated = made.capture.finish()
    oom_killed = ended_out_of_memory(sandbox.client, container, exit_code)
    killed_outside = exit_code not in (None, 0) and not oom_killed and killed_by_engine(sandbox.client, container)
    copied, problem = False, ""
    found, artifacts_problem = None, ""
    cache, artifacts = job.cache, job.artifacts
    if made.holder is not None and exit_code == 0:
        if cache is not None and cache.save_to is not None:
            copied, problem = copy_cache_out(made.holder, cache)
        if artifacts is not None:
            found, artifacts_problem = copy_artifacts_out(made.holder, artifacts, sandbox.limits.workspace_mb)
    reports, reports_problem = copy_reports_out(made.holder, job.reports, sandbox.limits.workspace_mb)
    return ContainerOutcome(
        exit_code, output, truncated, oom_killed, copied, problem, commands_ms, found, artifacts_problem,
        reports, reports_problem, killed_outside,
    )


def _release(sandbox: Sandbox, made: _Made) -> None:
    """Close the attaches and remove the containers and volumes a run made, whatever it got to."""
    if made.gated is not None:
        # Closed before the script's end: the gate exits and the build never runs.
        made.gated.close_stdin()
        made.gated.remove_inbox()
        if made.capture is None:
            made.gated.output.close()
    if made.capture is not None:
        made.capture.close()
    sandbox.remove(
        [leftover for leftover in (made.container, made.holder) if leftover is not None],
        [leftover for leftover in (made.gated and made.gated.volume, made.cache_volume) if leftover is not None],
    )

