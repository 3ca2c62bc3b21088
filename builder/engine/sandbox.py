"""Running one build inside a locked-down Docker container.

Everything here is blocking (docker SDK over HTTP); the executor calls it from
a worker thread. Problems the build owner should see as an ``error`` result are
raised as SandboxError with a deterministic reason, so that honest nodes report
the same text; the daemon's own message goes to the build log as detail.

What bounds a hostile build: network none (or, for a repository allowed the
network, one that reaches only beyond this host and its peers: builder/engine/network.py); memory without swap (an endless
allocation is OOM-killed, exit 137); a pids limit (a fork bomb runs out of
processes); a CPU share; a wall-clock deadline enforced with kill; a read-only
root file system, so only /workspace, /tmp, /dev/shm, the home directory
and (for a build with caches) /pbft-cache/out are writable, each a
size-limited tmpfs; output read live with a byte cap and
never stored by the daemon. Builds run as the node's build user, never
privileged, with no capabilities.

What a real test suite needs besides: a writable HOME, a passwd entry for its
uid (builder/engine/identity.py) and a /tmp it may run programs from.

A spec build is one container: started held at a gate (GATE_COMMAND), filled
with the sources while it waits, then handed its script. Because nothing about
the build is fixed before the script arrives, the container can be started
before the build is known (builder/engine/ready.py). A build that saves a cache or
declares artifacts is the one exception: a second, idle container keeps the
cache tmpfs and the workspace mounted until the node has copied the new cache
and the artifacts out (see run_container).

Every spec build gets the same environment for reproducible output
(builder/plan/civars.py `reproducible_environment`): SOURCE_DATE_EPOCH, the commit's time, and a
fixed time zone and locale.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import requests.exceptions
from docker.models.volumes import Volume
from docker.types import LogConfig, Mount

from builder.engine.identity import BuildIdentity, Identities, IdentityError
from builder.plan.containerpaths import HOME_DIR
from builder.plan.resources import MemoryBudget
from builder.plan.variations import BUILD_HOSTNAME
from shared.config import BuildConfig

log = logging.getLogger(__name__)



ENGINE_LOST = "the build engine stopped answering while the build ran (restarted or stopped)"


class SandboxError(Exception):
    """A build could not be run; `reason` is deterministic, `detail` is for the log.
    `engine_lost`: the connection to the engine broke under the build, the node's trouble."""

    def __init__(self, reason: str, detail: str = "", *, engine_lost: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.engine_lost = engine_lost


@dataclass(frozen=True)
class Sandbox:
    """What every container and volume of one build is made with: the engine's `client`, the
    `limits` of each container (a pipeline's containers each get a share), the build `user`,
    the passwd and group files made for it on the engine (`identities`, builder/engine/identity.py)
    and the `labels` that mark what the executor made. `remove_later` (e.g. a single-thread
    executor's submit), given, takes the removal of what a build made, so that its outcome is
    not held up by the daemon tearing it down; without it the removal is done at once.
    `inboxes`, where the engine runs on this host and sees its file system: the node's folder,
    on the file system of its checkouts, where each gated container gets a folder of its own,
    mounted read-only, that a checkout is copied from onto the workspace (builder/engine/sources.py)."""

    client: docker.DockerClient
    limits: BuildConfig
    user: str
    identities: Identities
    labels: dict[str, str]
    remove_later: Callable[[Callable[[], None]], object] | None = None
    inboxes: Path | None = None
    hostname: str | None = None  # its containers' (a varied build's own); None: BUILD_HOSTNAME
    build_path: str | None = None  # where a varied build's scripts run, its workspace mounted there too

    @property
    def sources_mountable(self) -> bool:
        """Whether a checkout of this host may be mounted (read-only) into a container."""
        return self.inboxes is not None

    def labelled(self, labels: dict[str, str]) -> Sandbox:
        """The same, its containers marked with `labels` as well (a pipeline step's name)."""
        return replace(self, labels={**self.labels, **labels})

    def remove(self, containers: list, volumes: list) -> None:
        """Remove a build's containers, then its volumes: now, or handed to `remove_later`."""
        removal = functools.partial(remove_all, containers, volumes)
        if self.remove_later is None:
            removal()
        else:
            self.remove_later(removal)


@dataclass(frozen=True)
class RunAs:
    """How a build's containers run: each container's limits (a pipeline's get a share), the
    build user (uid:gid), and the labels that mark them as this build's."""

    limits: BuildConfig
    user: str
    labels: dict[str, str]
    hostname: str | None = None  # a varied build's own (builder/plan/variations.py); None: BUILD_HOSTNAME
    build_path: str | None = None  # a varied build's own; None: /workspace alone


@dataclass(frozen=True)
class Hooks:
    """What a running build tells its executor, each from the worker thread that runs it: its
    output as it comes, a line of the node's between a pipeline's steps, each container as soon
    as there is one (so a cancel can kill it), that its commands started; and what it asks:
    whether its cancel came (a pipeline, before each step)."""

    on_output: Callable[[bytes], None] | None = None
    on_section: Callable[[str], None] | None = None
    on_container: Callable[[object], None] | None = None
    on_started: Callable[[], None] | None = None
    cancelled: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Script:
    """A spec build's script, which the gate runs as `sh -e -c <text> <arguments...>` with
    `secrets` in its environment, and the checkout on this node (`workspace`) copied onto the
    container's /workspace tmpfs before it runs."""

    text: str
    workspace: Path
    arguments: tuple[str, ...] = ()
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ContainerOutcome:
    exit_code: int | None  # None when the deadline killed the container
    output: bytes          # at most the output cap
    truncated: bool
    oom_killed: bool = False
    # For a build with caches that exited 0: whether its cache tar was copied
    # to CacheMounts.save_to, and if not, why (a line for the build log).
    cache_copied: bool = False
    cache_problem: str = ""
    # How long the build's own commands ran, as the node saw it: from the
    # script's delivery to the gate (for a Dockerfile build, from its start) to the
    # container's exit or the kill at the deadline.
    commands_ms: int | None = None
    # For a build with ArtifactCopy that exited 0: the artifacts copied to its
    # `dest`, {path: "sha256:<hex>"} sorted by path, or the deterministic
    # reason they could not be taken (builder/workspace/artifacts.py).
    artifacts: dict[str, str] | None = None
    artifacts_problem: str = ""
    # For a build that declares test reports, whatever its end: the report files copied to
    # its report copy's `dest` ({path: digest}), or why none could be.
    reports: dict[str, str] | None = None
    reports_problem: str = ""
    # Stopped by a kill that neither the deadline nor the kernel's memory limit sent (`docker
    # kill`, a host's operator or tooling): the node's trouble, not a result of the build.
    killed_outside: bool = False


def joined(options: dict, network_mode: str) -> dict:
    """`options` (host_config's) for a container on `network_mode`: one on a network gets the
    engine's network sandbox (host_config disables it), and one joining another container's
    namespace ("container:<id>") shares its host name and may not set its own."""
    options["network_mode"] = network_mode
    if network_mode != "none":
        options.pop("network_disabled", None)
    if network_mode.startswith("container:"):
        options.pop("hostname", None)
    return options


def identity_mounts(identity: BuildIdentity, options: dict) -> list[Mount]:
    """The identity's mounts for a container created with `options`: /etc/hosts as well where
    its networking is disabled, since the engine writes none there."""
    return identity.mounts(hosts=options.get("network_disabled", False))


def host_config(sandbox: Sandbox, budget: MemoryBudget) -> dict:
    """Container options shared by spec builds, Dockerfile builds and cache holders."""
    limits, user = sandbox.limits, sandbox.user
    memory = f"{budget.total_mb}m"
    uid, gid = numeric_owner(user)
    return dict(
        network_mode="none",
        # No network sandbox at all, rather than one with a loopback only: the engine's
        # set-up and tear-down of the sandbox were half the CPU a short build's container cost
        # it. Still a network namespace of its own with `lo` up (127.0.0.1 and ::1) and no
        # other interface. A container that needs the sandbox (a build network: `joined`; a
        # pipeline's pod: `transfer.hold_mounts`) gets it back.
        network_disabled=True,
        # The same on every node (docker's default is the container's id), unless varied. A
        # container joining another's network namespace takes its host name: see `joined`.
        hostname=sandbox.hostname or BUILD_HOSTNAME,
        mem_limit=memory,
        # Equal to mem_limit: the container gets no swap on top of its memory.
        memswap_limit=memory,
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids_limit,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        privileged=False,
        # Explicit rather than the daemon's default, which an operator may change.
        ipc_mode="private",
        # Under host memory pressure the kernel should pick a build, not the node.
        oom_score_adj=500,
        user=user,
        # Docker mounts a tmpfs noexec unless told otherwise; test suites
        # write helper scripts to /tmp and tools install into ~/.local/bin,
        # then run them. nosuid keeps a set-uid file written there inert.
        tmpfs={
            "/tmp": f"rw,exec,nosuid,nodev,size={limits.tmp_mb}m",
            HOME_DIR: f"rw,exec,nosuid,nodev,size={limits.home_mb}m,uid={uid},gid={gid},mode=0700",
        },
        # The output is read live over an attach (see OutputCapture), so the
        # daemon keeps no copy at all. A size-capped json-file log was
        # measured to be worse: the daemon JSON-encodes the whole flood of a
        # build writing without end, and a kill at the deadline then waits
        # seconds for the logger to drain.
        log_config=LogConfig(type="none"),
        # /dev/shm is the one writable place the read-only root leaves
        # besides /tmp and /workspace; bound it like /tmp.
        shm_size=f"{limits.tmp_mb}m",
    )


def kill_quietly(container) -> None:
    """Kill a build's container; one that already stopped, or is gone, is left to its thread."""
    try:
        container.kill()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass


def remove_all(containers: list, volumes: list) -> None:
    """Remove a build's containers, then its volumes, which the containers kept mounted."""
    try:
        for container in containers:
            _remove(container)
    finally:
        for volume in volumes:
            _remove_volume(volume)


def check_image(client: docker.DockerClient, image: str) -> tuple[str, tuple[str, ...]]:
    """The id of an image the engine holds, a Dockerfile build's, just built, and the command it
    runs (its ENTRYPOINT then its CMD; empty if it has none). The build runs that id, so the
    passwd entry made for it fits what runs even if the tag is moved meanwhile. (A spec's images
    are found or pulled by builder/engine/images.py.)"""
    try:
        found = client.images.get(image)
        config = found.attrs.get("Config") or {}
        return found.id, (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))
    except docker.errors.ImageNotFound:
        # Made by this build's Dockerfile moments ago: something on the engine removed it since.
        raise SandboxError(f"image not found: {image} (not on this node's engine, although this build's "
                           "Dockerfile has just made it: was it removed meanwhile, by docker image prune?)") from None
    except docker.errors.APIError as exc:
        raise SandboxError("docker error: could not inspect image", str(exc)) from None


def build_identity(sandbox: Sandbox, image_id: str):
    """The build user's passwd and group files for `image_id`, as the container mounts them."""
    uid, gid = numeric_owner(sandbox.user)
    try:
        return sandbox.identities.get(sandbox.client, image_id=image_id, uid=uid, gid=gid)
    except IdentityError as exc:
        raise SandboxError(str(exc)) from None


def numeric_owner(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise SandboxError(f"build user must be numeric uid:gid, not {user!r}")
    return int(uid), int(gid or uid)


def tmpfs_volume(sandbox: Sandbox, role: str, size_mb: int, *, mode: str) -> Volume:
    """A tmpfs volume of `size_mb`, owned by the build user: the workspace, or the cache tar's.

    Why tmpfs: overlay2 on ext4 has no per-container disk quota (storage_opt
    size needs xfs with pquota), and a bind mount of a host directory is
    bounded only by the host's disk. A tmpfs has a hard size, its pages are
    charged to the memory cgroup of whoever writes them, and it vanishes when
    the last container using it is gone.
    """
    uid, gid = numeric_owner(sandbox.user)
    options = f"size={size_mb}m,uid={uid},gid={gid},mode={mode},nosuid,nodev"
    return sandbox.client.volumes.create(
        name=f"pbft-ci-{role}-{uuid.uuid4().hex}",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": options},
        labels=sandbox.labels,
    )


def _remove(container) -> None:
    """Remove the container, retrying briefly while the daemon finishes a kill."""
    _remove_with_retries(container)


def _remove_volume(volume) -> None:
    """Remove the workspace volume; the daemon may still be releasing its mount."""
    _remove_with_retries(volume)


def _remove_with_retries(thing, attempts: int = 5, pause_s: float = 0.2) -> None:
    for attempt in range(attempts):
        try:
            thing.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause_s)


def build_image(
    client: docker.DockerClient, *, context: Path, tag: str, limits: BuildConfig, timeout_s: float
) -> tuple[str, str]:
    """Build the repository's Dockerfile offline; return the build log text and the id of the
    image this build made (the tag may name another by now: check_image)."""
    memory = limits.memory_mb * 1024 * 1024
    try:
        built, log_lines = client.images.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
            container_limits={"memory": memory, "memswap": memory},
            timeout=timeout_s,
        )
    except docker.errors.BuildError as exc:
        raise SandboxError("image build failed", _build_log_text(exc.build_log)) from None
    except requests.exceptions.ReadTimeout:
        raise SandboxError(f"image build exceeded {timeout_s:g} s") from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError("docker error: image build failed", str(exc)) from None
    return _build_log_text(log_lines), built.id


def _build_log_text(log_lines) -> str:
    return "".join(line.get("stream", "") or line.get("error", "") for line in log_lines)
