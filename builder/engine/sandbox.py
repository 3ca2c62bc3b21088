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
(`reproducible_environment`): SOURCE_DATE_EPOCH, the commit's time, and a
fixed time zone and locale.
"""

from __future__ import annotations

import functools
import logging
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.models.volumes import Volume
from docker.types import CancellableStream, LogConfig, Mount

from builder.plan.artifactpatterns import archive_roots
from builder.workspace.artifacts import MAX_FILES, ArtifactError, Collector, archive_path
from builder.engine.attach import StdinAttach
from builder.workspace.caches import OUT_DIR, OUT_TAR, RESTORE_TAR
from builder.engine.identity import Identities, IdentityError
from builder.plan.spec import HOME_DIR
from shared.config import BuildConfig

log = logging.getLogger(__name__)

ROOT_USER = "0:0"
# Ends every script the node writes to a gated container's stdin. A script cut
# short (the node died while writing it, or gave up) lacks it, and the gate
# then runs nothing. It starts with a newline so that the gate can strip it
# and leave the script exactly as written, trailing newlines included.
SCRIPT_END = "\n# pbft-ci: end of build script"
# Ends the line before the script that exports the build's secrets (gate_input). Its line
# breaks keep it out of that line, which holds none (`exported` escapes them).
SECRETS_END = "\n# pbft-ci: end of the build's secrets\n"
# A spec build's container runs this: it reads the build's secrets and script from
# stdin up to end of file, which the node writes once the sources are in
# /workspace, exports the secrets, and execs `/bin/sh -e -c <script> [arguments]`,
# the same process a script given on the command line would run as. Without
# SECRETS_END and SCRIPT_END it exits 1 and runs nothing. The secrets are set by
# the gate's shell, not written into the script, because a process's command line
# is public on its host (/proc/<pid>/cmdline, `ps`) and its environment is not.
GATE_COMMAND = [
    "/bin/sh", "-c",
    'end=$1; sep=$2; shift 2; input=$(cat) && case "$input" in '
    '*"$sep"*"$end") input=${input%"$end"}; eval "${input%%"$sep"*}" && '
    'exec /bin/sh -e -c "${input#*"$sep"}" "$@";; esac; exit 1',
    "pbft-ci-gate", SCRIPT_END, SECRETS_END,
]
# Seconds to let the output reader drain what the daemon still holds once the
# container has stopped, before we cut the connection.
_OUTPUT_DRAIN_S = 5.0
# How long an exit code 137 waits for the engine's word of an OOM kill (ended_out_of_memory).
_OOM_REPORT_CHECKS, _OOM_REPORT_PAUSE_S = 5, 0.2
# The workspace's archive goes to the engine in pieces of this size, as tar writes it.
_UPLOAD_CHUNK_BYTES = 1024 * 1024
# How long a holder outlives the build's deadline: the node's time to copy
# the cache and the artifacts out, which may mean reading a full workspace
# from an engine on another machine.
_HOLDER_GRACE_S = 300
# The time zone and locale every build gets. C.UTF-8 is built into glibc
# (2.35 and Debian's for long before) and musl; an image without it (busybox
# has no locales at all) behaves as in the C locale, the same on every node.
BUILD_TZ = "UTC"
BUILD_LOCALE = "C.UTF-8"


def reproducible_environment(commit_time_s: int) -> dict[str, str]:
    """What https://reproducible-builds.org asks for: the commit's time instead of the
    clock's (SOURCE_DATE_EPOCH), and a time zone and locale that no node chooses."""
    return {
        "SOURCE_DATE_EPOCH": str(max(commit_time_s, 0)),
        "TZ": BUILD_TZ,
        "LC_ALL": BUILD_LOCALE,
        "LANG": BUILD_LOCALE,
    }


def exported(environment: dict[str, str], script: str) -> str:
    """`script` with `environment` exported first, on its first line, so that the
    line numbers the shell reports are those of the script as written: a value with
    line breaks (a commit message) is written on that line as `printf '%b'` of its
    escaped form.

    A container prepared before its build was known (builder/engine/ready.py) cannot
    have the commit's time in its environment; the script it is handed can.
    """
    if not environment:
        return script
    assignments, trims = [], []
    for name, value in sorted(environment.items()):
        if "\n" in value or "\r" in value:
            # %b reads only the escapes written here (every backslash of the value is doubled
            # first). A command substitution drops trailing line breaks: the "x" after them
            # keeps them, and is trimmed once the value is set.
            escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            assignments.append(f"{name}=\"$(printf '%bx' {shlex.quote(escaped)})\"")
            trims.append(f'{name}="${{{name}%x}}"; ')
        else:
            assignments.append(f"{name}={shlex.quote(value)}")
    return f"export {' '.join(assignments)}; {''.join(trims)}{script}"


def gate_input(script: str, secrets: dict[str, str] | None = None) -> str:
    """What the node writes to a gated container's stdin (GATE_COMMAND): one line that exports
    `secrets`, SECRETS_END, the script, SCRIPT_END."""
    return exported(secrets or {}, "") + SECRETS_END + script + SCRIPT_END + "\n"


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
    not held up by the daemon tearing it down; without it the removal is done at once."""

    client: docker.DockerClient
    limits: BuildConfig
    user: str
    identities: Identities
    labels: dict[str, str]
    remove_later: Callable[[Callable[[], None]], object] | None = None

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
    # Stopped by a kill that neither the deadline nor the kernel's memory limit sent (`docker
    # kill`, a host's operator or tooling): the node's trouble, not a result of the build.
    killed_outside: bool = False


@dataclass(frozen=True)
class CacheMounts:
    """A build's caches as the sandbox sees them.

    `restore_tar` (a file on this node, or None) is uploaded to RESTORE_TAR,
    on the tmpfs of `size_mb` that the build writes its new cache to
    (OUT_TAR) once the wrapper has extracted and deleted it: a copy, since
    the engine may run on another machine, and the build may do with its
    copy what it likes; after a build that exited 0 the node copies that tar, at most
    `size_mb`, to `save_to` and nowhere else. Without `save_to` (the cache
    is kept as it is) nothing is copied.
    """

    restore_tar: Path | None
    size_mb: int
    save_to: Path | None


@dataclass(frozen=True)
class ArtifactCopy:
    """The artifacts a spec build declares, and where the node puts them after it exits 0.

    The files are read from the engine's archive of the workspace, kept
    mounted after the build by the holder (see run_container), and written
    under `dest`, a directory of this node.
    """

    patterns: tuple[str, ...]
    dest: Path
    max_bytes: int
    max_files: int = MAX_FILES


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


def host_config(sandbox: Sandbox, budget: MemoryBudget) -> dict:
    """Container options shared by spec builds, Dockerfile builds and cache holders."""
    limits, user = sandbox.limits, sandbox.user
    memory = f"{budget.total_mb}m"
    uid, gid = _numeric_owner(user)
    return dict(
        network_mode="none",
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


@dataclass
class GatedContainer:
    """A spec build's container, started and held at GATE_COMMAND until its script comes.

    While it waits, the gate keeps the empty tmpfs `volume` mounted at
    /workspace. `stdin` and `output` are the attaches to its input and to its
    output, both opened before it started: nothing it writes is missed, however
    late the reading starts, and a node that dies closes the gate's stdin.
    """

    container: Container
    volume: Volume
    stdin: StdinAttach
    output: CancellableStream

    def running(self) -> bool:
        """Whether it still waits at its gate; not after a kill or an engine restart."""
        try:
            self.container.reload()
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        return self.container.status == "running"

    def close_stdin(self) -> None:
        """End the attach to its stdin; before the script's end, the gate then runs nothing."""
        self.stdin.close()

    def discard(self) -> None:
        """Close both attaches and remove the container, then its workspace volume."""
        self.close_stdin()
        self.output.close()
        remove_all([self.container], [self.volume])


def start_gated_container(
    sandbox: Sandbox,
    image_id: str,
    *,
    role: str,
    arguments: tuple[str, ...] = (),
    cache_mounts: tuple[Mount, ...] = (),
    network: str | None = None,
    workspace: Volume | None = None,
) -> GatedContainer:
    """Create and start a spec build's container with a fresh workspace, held at its gate.

    `arguments` follow the script the gate will run (`sh -e -c <script>
    arguments...`); `cache_mounts` and `network` are those of a build with
    caches or a build network; `workspace`, a pipeline's shared workspace volume
    (builder/engine/steps.py), which the container then mounts instead of a fresh one and
    leaves for the pipeline to remove. Whatever it made is removed again if it fails.
    """
    budget = memory_budget(sandbox.limits, with_workspace=True, with_cache=bool(cache_mounts))
    options = host_config(sandbox, budget)
    identity = build_identity(sandbox, image_id)
    volume = container = stdin = output = None
    made = []
    try:
        volume = workspace
        if volume is None:
            volume = tmpfs_volume(sandbox, "workspace", sandbox.limits.workspace_mb, mode="0755")
            made.append(volume)
        options.update(
            environment=identity.environment(),
            mounts=[Mount("/workspace", volume.name, type="volume", no_copy=True), *identity.mounts(), *cache_mounts],
            working_dir="/workspace",
            read_only=True,
            stdin_open=True,
        )
        if network is not None:
            options["network_mode"] = network
        # Not detached: only then does docker-py set StdinOnce, which makes the
        # daemon close the build's stdin when the node's attach ends, after the
        # script or without it.
        container = sandbox.client.containers.create(
            image_id, [*GATE_COMMAND, *arguments], labels={**sandbox.labels, "pbft-ci.role": role}, detach=False,
            **options,
        )
        stdin = StdinAttach(container.attach_socket(params={"stdin": 1, "stream": 1}))
        output = container.attach(stdout=True, stderr=True, stream=True)
        container.start()
        return GatedContainer(container, volume, stdin, output)
    except BaseException:
        if stdin is not None:
            stdin.close()
        if output is not None:
            output.close()
        remove_all([container] if container is not None else [], made)
        raise


def run_container(
    sandbox: Sandbox,
    image_id: str,
    script: Script | None,
    *,
    timeout_s: float,
    environment: dict[str, str] | None = None,
    cache: CacheMounts | None = None,
    network: str | None = None,
    artifacts: ArtifactCopy | None = None,
    ready: GatedContainer | None = None,
    on_output: Callable[[bytes], None] | None = None,
    on_started: Callable[[], None] | None = None,
    on_container: Callable[[Any], None] | None = None,
) -> ContainerOutcome:
    """Run `script` (or, without one, the image's CMD) in `image_id` (check_image's) to
    completion or until the deadline, `timeout_s` after its commands start.

    The containers and volumes are removed before returning, or handed to the
    sandbox's `remove_later`.

    With a script, its workspace's tree is copied onto a size-limited tmpfs at
    /workspace and the root file system is read-only. Without one (an image
    built from the repository's Dockerfile) the sources live in the image, so
    its root file system stays writable; it is thrown away with the container.
    Either way the build gets HOME, a passwd entry and the tmpfs mounts.
    `on_output` gets each piece of output as it comes (from another thread),
    so the build log grows while the build runs. With `network` (a Docker
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
    not the container, is what makes it this build. `on_started` is called
    once the build's commands run. `environment` is exported to the build
    (for a spec build, by the first line of the script it is handed). `on_container` gets
    the build's container as soon as there is one, before any of the build runs in it.

    With `cache` (spec builds only) the build gets the cache mounts. A build
    that saves its cache (`cache.save_to`) or declares `artifacts` also gets
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

    The cache and the artifacts are copied only after a build that exited 0.
    """
    assert ready is None or (cache is None and network is None and not (script and script.arguments)), \
        "a prepared container has no cache mounts, network or arguments"
    assert artifacts is None or script is not None, "only a spec build has artifacts"
    made = _Made()
    try:
        cache_mounts = _cache_mounts(sandbox, cache, made)
        if script is not None:
            _start_spec_build(sandbox, image_id, script, environment or {}, cache, cache_mounts, network, ready,
                              artifacts, timeout_s, on_output, on_container, made)
        else:
            _start_image_build(sandbox, image_id, environment or {}, on_output, on_container, made)
        released = time.monotonic()
        if on_started is not None:
            on_started()
        exit_code = wait_for_exit(made.container, timeout_s)
        commands_ms = round((time.monotonic() - released) * 1000)
        return _outcome(sandbox, made, exit_code, commands_ms, cache, artifacts)
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
    sandbox: Sandbox, image_id: str, script: Script, environment: dict[str, str], cache: CacheMounts | None,
    cache_mounts: list[Mount], network: str | None, ready: GatedContainer | None, artifacts: ArtifactCopy | None,
    timeout_s: float, on_output, on_container, made: _Made,
) -> None:
    """A gated container (`ready`, or one started now) filled with the sources, a holder if the
    build keeps something after it ends, and the build's script handed to the gate."""
    made.gated = ready or start_gated_container(
        sandbox, image_id, role="build", arguments=script.arguments, cache_mounts=tuple(cache_mounts),
        network=network,
    )
    container = made.container = made.gated.container
    if on_container is not None:
        on_container(container)
    made.capture = OutputCapture(made.gated.output, sandbox.limits.output_cap_bytes, on_output)
    held = []
    if cache is not None and cache.save_to is not None:
        held += cache_mounts
    if artifacts is not None:
        held.append(Mount("/workspace", made.gated.volume.name, type="volume", no_copy=True))
    if held:
        # The build container has both tmpfs mounted already and keeps
        # them until its exit; the holder shares the mounts from here on.
        made.holder = hold_mounts(sandbox, image_id, held, timeout_s)
    fill_workspace(sandbox, container, script.workspace)
    if cache is not None and cache.restore_tar is not None:
        _upload_restore(container, cache.restore_tar, sandbox.user)
    # Killed meanwhile (by Executor.close, or behind the node's back),
    # it must not pass for a build that ran and failed.
    container.reload()
    if container.status != "running":
        raise SandboxError("docker error: container stopped before the build started")
    deliver_script(made.gated.stdin, exported(environment, script.text), script.secrets)
    made.gated.close_stdin()


def _start_image_build(
    sandbox: Sandbox, image_id: str, environment: dict[str, str], on_output, on_container, made: _Made,
) -> None:
    """A Dockerfile build's container, running the image's CMD with its output attached."""
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=False))
    identity = build_identity(sandbox, image_id)
    options.update(environment={**identity.environment(), **environment}, mounts=identity.mounts())
    container = made.container = sandbox.client.containers.create(
        image_id, None, labels={**sandbox.labels, "pbft-ci.role": "build"}, detach=True, **options
    )
    if on_container is not None:
        on_container(container)
    # Attached before start: no output is missed however fast it comes.
    made.capture = OutputCapture(
        container.attach(stdout=True, stderr=True, stream=True), sandbox.limits.output_cap_bytes, on_output
    )
    container.start()


def _outcome(
    sandbox: Sandbox, made: _Made, exit_code: int | None, commands_ms: int, cache: CacheMounts | None,
    artifacts: ArtifactCopy | None,
) -> ContainerOutcome:
    """How the stopped build ended, with its cache and artifacts copied out after an exit 0."""
    container = made.container
    output, truncated = made.capture.finish()
    oom_killed = ended_out_of_memory(sandbox.client, container, exit_code)
    killed_outside = exit_code not in (None, 0) and not oom_killed and killed_by_engine(sandbox.client, container)
    copied, problem = False, ""
    found, artifacts_problem = None, ""
    if made.holder is not None and exit_code == 0:
        if cache is not None and cache.save_to is not None:
            copied, problem = _copy_cache_out(made.holder, cache)
        if artifacts is not None:
            found, artifacts_problem = copy_artifacts_out(made.holder, artifacts, sandbox.limits.workspace_mb)
    return ContainerOutcome(
        exit_code, output, truncated, oom_killed, copied, problem, commands_ms, found, artifacts_problem,
        killed_outside,
    )


def _release(sandbox: Sandbox, made: _Made) -> None:
    """Close the attaches and remove the containers and volumes a run made, whatever it got to."""
    if made.gated is not None:
        # Closed before the script's end: the gate exits and the build never runs.
        made.gated.close_stdin()
        if made.capture is None:
            made.gated.output.close()
    if made.capture is not None:
        made.capture.close()
    sandbox.remove(
        [leftover for leftover in (made.container, made.holder) if leftover is not None],
        [leftover for leftover in (made.gated and made.gated.volume, made.cache_volume) if leftover is not None],
    )


def remove_all(containers: list, volumes: list) -> None:
    """Remove a build's containers, then its volumes, which the containers kept mounted."""
    try:
        for container in containers:
            _remove(container)
    finally:
        for volume in volumes:
            _remove_volume(volume)


def check_image(client: docker.DockerClient, image: str) -> str:
    """The id of an image the engine holds: a Dockerfile build's, just built. The build runs
    that id, so the passwd entry made for it fits what runs even if the tag is moved
    meanwhile. (A spec's images are found or pulled by builder/engine/images.py.)"""
    try:
        return client.images.get(image).id
    except docker.errors.ImageNotFound:
        # Made by this build's Dockerfile moments ago: something on the engine removed it since.
        raise SandboxError(f"image not found: {image} (not on this node's engine, although this build's "
                           "Dockerfile has just made it: was it removed meanwhile, by docker image prune?)") from None
    except docker.errors.APIError as exc:
        raise SandboxError("docker error: could not inspect image", str(exc)) from None


def build_identity(sandbox: Sandbox, image_id: str):
    """The build user's passwd and group files for `image_id`, as the container mounts them."""
    uid, gid = _numeric_owner(sandbox.user)
    try:
        return sandbox.identities.get(sandbox.client, image_id=image_id, uid=uid, gid=gid)
    except IdentityError as exc:
        raise SandboxError(str(exc)) from None


def _numeric_owner(user: str) -> tuple[int, int]:
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
    uid, gid = _numeric_owner(sandbox.user)
    options = f"size={size_mb}m,uid={uid},gid={gid},mode={mode},nosuid,nodev"
    return sandbox.client.volumes.create(
        name=f"pbft-ci-{role}-{uuid.uuid4().hex}",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": options},
        labels=sandbox.labels,
    )


def fill_workspace(sandbox: Sandbox, container, workspace: Path) -> None:
    """Copy the workspace tree, its .git included, into /workspace of the build container,
    running and held at its gate, every entry owned by the build user.

    GNU tar writes the archive and it streams to the engine as it is written: a
    repository of 30,000 files would spend many seconds in Python's tarfile, and a
    temporary copy of it on the node's disk. Symbolic links are stored as links, never
    followed; the engine unpacks inside the container, so a link cannot reach the host.
    """
    uid, gid = _numeric_owner(sandbox.user)
    size_mb = sandbox.limits.workspace_mb
    command = [
        "tar", "--create", "--file=-", f"--directory={workspace}", f"--owner={uid}", f"--group={gid}",
        "--numeric-owner", ".",
    ]
    with tempfile.TemporaryFile() as errors, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as tar:
        try:
            container.put_archive("/workspace", iter(functools.partial(tar.stdout.read, _UPLOAD_CHUNK_BYTES), b""))
        except docker.errors.APIError as exc:
            tar.kill()
            # Most likely the sources do not fit; the same tree and limit
            # give the same outcome on every node.
            raise SandboxError(f"sources do not fit the {size_mb} MB workspace", str(exc)) from None
        except BaseException:
            tar.kill()
            raise
        # The engine has read the archive to its end: tar is exiting.
        if tar.wait() != 0:
            errors.seek(0)
            raise SandboxError("could not archive the workspace on this node", errors.read().decode(errors="replace"))


def _upload_restore(container, restore_tar: Path, user: str) -> None:
    """Copy the cache a build gets to RESTORE_TAR in its gated container, readable by the build user only.

    A copy that fails (it does not fit the cache tmpfs, the engine refused)
    only costs the build its cache: the wrapper finds no tar, says "cache
    dropped" and the build goes on, as for any cache that does not extract.
    """
    directory, _, name = RESTORE_TAR.rpartition("/")
    uid, gid = _numeric_owner(user)

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.mode = uid, gid, 0o400
        info.uname = info.gname = ""
        return info

    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(restore_tar, arcname=name, filter=owned)
        archive.seek(0)
        try:
            container.put_archive(directory, archive)
        except docker.errors.APIError as exc:
            log.warning("could not upload the cache to build container %s: %s", container.id[:12], exc)


def deliver_script(stdin: StdinAttach, script: str, secrets: dict[str, str] | None = None) -> None:
    """Write `secrets` and the script to the gated container's stdin (gate_input) and end it:
    the build starts.

    Ending our side makes the daemon close the container's stdin
    (StdinOnce): the gate's `cat` ends, and the build finds its stdin at end
    of file, as a build without a gate would. A script is text from YAML,
    where a lone surrogate can be escaped; it becomes "?" rather than an
    encoding error.
    """
    try:
        stdin.send_all(gate_input(script, secrets).encode(errors="replace"))
        stdin.end_input()
    except OSError as exc:
        raise SandboxError("docker error: could not start the build", str(exc)) from None


def hold_mounts(
    sandbox: Sandbox, image_id: str, mounts: list[Mount], timeout_s: float, *,
    network: str | None = None, hosts: tuple[str, ...] = (),
) -> Container:
    """Start a container that keeps `mounts` (the cache tmpfs, the workspace) mounted after the build's exit.

    It mounts those and nothing else, runs nothing but sleep, and outlives
    the build's deadline by _HOLDER_GRACE_S, the time the node has to copy
    the cache and the artifacts out. A pipeline's holder also owns the network
    namespace its steps and services join (builder/engine/steps.py): `network` (none
    otherwise), and `hosts`, names that resolve to its loopback address there.
    """
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=True, with_cache=True))
    options.update(
        environment=build_identity(sandbox, image_id).environment(),
        mounts=list(mounts),
        read_only=True,
    )
    if network is not None:
        options["network_mode"] = network
    if hosts:
        options["extra_hosts"] = {host: "127.0.0.1" for host in hosts}
    holder = sandbox.client.containers.create(
        image_id, ["/bin/sh", "-c", f"sleep {int(timeout_s) + _HOLDER_GRACE_S}"],
        labels={**sandbox.labels, "pbft-ci.role": "holder"}, detach=True, **options,
    )
    try:
        holder.start()
    except BaseException:
        _remove(holder)
        raise
    return holder


def _copy_cache_out(holder, cache: CacheMounts) -> tuple[bool, str]:
    """Copy OUT_TAR out of the cache holder to `cache.save_to`, at most `cache.size_mb`.

    The daemon sends the file wrapped in a tar of its own; only a regular
    file is taken, and no more bytes than the limit are read.
    """
    max_bytes = cache.size_mb * 1024 * 1024
    holder.reload()
    if holder.status != "running":
        return False, "the tmpfs holding it was gone"
    try:
        stream, stat = holder.get_archive(OUT_TAR)
    except docker.errors.NotFound:
        return False, "the build wrote none (no cache path exists, or it did not fit)"
    except docker.errors.APIError as exc:
        return False, f"docker error: {exc.explanation or exc}"
    try:
        if stat.get("size", 0) > max_bytes:
            return False, f"larger than {cache.size_mb} MB"
        with tarfile.open(fileobj=_ChunkReader(stream, max_bytes + 1024 * 1024), mode="r|") as outer:
            member = outer.next()
            if member is None or not member.isfile() or member.size > max_bytes:
                return False, f"not a regular file of at most {cache.size_mb} MB"
            source = outer.extractfile(member)
            with open(cache.save_to, "xb") as target:
                while chunk := source.read(1024 * 1024):
                    target.write(chunk)
        return True, ""
    except _TooLarge:
        cache.save_to.unlink(missing_ok=True)
        return False, f"larger than {cache.size_mb} MB"
    except (tarfile.TarError, requests.exceptions.RequestException, OSError) as exc:
        cache.save_to.unlink(missing_ok=True)
        return False, f"could not be copied ({type(exc).__name__})"
    finally:
        # Ends the daemon's response when the copy stopped early.
        stream.close()


def copy_artifacts_out(holder, artifacts: ArtifactCopy, workspace_mb: int) -> tuple[dict[str, str] | None, str]:
    """The artifacts read from the holder's workspace into `artifacts.dest`, or why they cannot be taken.

    A problem of the build (builder/workspace/artifacts.py's ArtifactError) is returned as
    its deterministic reason. A problem of this node or its engine raises
    SandboxError: the holder gone (its tmpfs then reads as empty, which must
    not pass for a build that wrote nothing), the engine refusing, the
    node's disk. Each archive is read as it streams, never held whole.
    """
    gone = "docker error: the workspace was gone before its artifacts were copied"
    holder.reload()
    if holder.status != "running":
        raise SandboxError(gone)
    collector = Collector(
        artifacts.patterns, artifacts.dest, max_bytes=artifacts.max_bytes, max_files=artifacts.max_files
    )
    # An honest engine's archive of the workspace holds no more than the
    # workspace's bytes and a few headers per entry the collector reads.
    limit_bytes = workspace_mb * 1024 * 1024 + collector.max_entries * 4096
    try:
        for root in archive_roots(artifacts.patterns):
            try:
                stream, _ = holder.get_archive(archive_path(root))
            except docker.errors.NotFound:
                continue  # Nothing of that name in the workspace: its patterns match nothing.
            try:
                collector.add_archive(_ChunkReader(stream, limit_bytes), root)
            finally:
                stream.close()
        holder.reload()
        if holder.status != "running":
            raise SandboxError(gone)
        return collector.finish(), ""
    except ArtifactError as exc:
        return None, exc.reason
    except (docker.errors.APIError, requests.exceptions.RequestException, _TooLarge) as exc:
        raise SandboxError("docker error: could not copy the artifacts out", f"{exc!r}\n") from None
    except OSError as exc:
        raise SandboxError("could not copy the artifacts to this node", f"{exc}\n") from None


class _TooLarge(Exception):
    """The daemon sent more than the cache limit allows (plus the wrapping tar's headers)."""


class _ChunkReader:
    """A file-like view of the daemon's chunk stream that refuses to read past `limit_bytes`."""

    def __init__(self, chunks, limit_bytes: int):
        self._chunks = iter(chunks)
        self._current = b""
        self._offset = 0
        self._read_bytes = 0
        self._limit_bytes = limit_bytes

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if self._offset == len(self._current):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._read_bytes += len(chunk)
                if self._read_bytes > self._limit_bytes:
                    raise _TooLarge()
                self._current, self._offset = chunk, 0
                continue
            available = len(self._current) - self._offset
            take = available if size < 0 else min(size, available)
            parts.append(self._current[self._offset:self._offset + take])
            self._offset += take
            if size > 0:
                size -= take
        return b"".join(parts)


class OutputCapture:
    """Reads a container's output in a thread, keeping the first `cap_bytes`.

    Past the cap it detaches: the container keeps running until it exits or
    the deadline, and the daemon discards what it writes.
    """

    def __init__(self, stream, cap_bytes: int, on_output: Callable[[bytes], None] | None = None):
        self._stream = stream
        self._cap_bytes = cap_bytes
        self._on_output = on_output or (lambda chunk: None)
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False
        self._thread = threading.Thread(target=self._read, name="build-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self._stream:
                room = self._cap_bytes - self._size
                if len(chunk) > room:
                    self._chunks.append(chunk[:room])
                    self._on_output(chunk[:room])
                    self._truncated = True
                    return
                self._chunks.append(chunk)
                self._on_output(chunk)
                self._size += len(chunk)
        except (OSError, ValueError, requests.exceptions.RequestException):
            # The connection was cut: by close() after the drain time, or by a
            # daemon restart, which the wait reports on its own.
            pass
        finally:
            self._stream.close()

    def finish(self) -> tuple[bytes, bool]:
        """The output once the container has stopped."""
        self._thread.join(_OUTPUT_DRAIN_S)
        self.close()
        return b"".join(self._chunks), self._truncated

    def close(self) -> None:
        if self._thread.is_alive():
            self._stream.close()
            self._thread.join(_OUTPUT_DRAIN_S)


def ended_out_of_memory(client: docker.DockerClient, container: Container, exit_code: int | None) -> bool:
    """Whether the kernel's OOM killer ended (a process of) the stopped `container`, reloaded here.

    The engine's State.OOMKilled is not enough: the engine sets it when it hears of the OOM
    kill and resets it when it hears of the exit, so it reads false whenever the kill was
    reported first. The `oom` event it logs for the container stays; an exit code 137 asks
    for it, for a moment, as the event may come a little after the exit."""
    container.reload()
    if container.attrs.get("State", {}).get("OOMKilled"):
        return True
    if exit_code != 137:
        return False
    for _ in range(_OOM_REPORT_CHECKS):
        if _engine_event(client, container, "oom"):
            return True
        time.sleep(_OOM_REPORT_PAUSE_S)
    return False


def killed_by_engine(client: docker.DockerClient, container: Container) -> bool:
    """Whether the engine was told to kill `container` (it says so in its events) between its
    creation and its exit, both as the engine's clock has them. A build that kills itself, or
    whose processes die of a signal of their own, leaves no such event."""
    return _engine_event(client, container, "kill")


def _engine_event(client: docker.DockerClient, container: Container, action: str) -> bool:
    """Whether the engine logged `action` for `container` between its creation and its exit,
    both as the engine's clock has them (and a second after, the clock's resolution)."""
    state = container.attrs.get("State", {})
    since, until = _engine_time(container.attrs.get("Created", "")), _engine_time(state.get("FinishedAt", ""))
    if since is None or until is None:
        return False
    events = client.events(since=since, until=until + 1, decode=True,
                           filters={"container": container.id, "event": action})
    try:
        return any(event.get("Action") == action for event in events)
    finally:
        events.close()


def _engine_time(text: str) -> int | None:
    """Whole seconds since the epoch of a time the engine writes (RFC 3339, nanoseconds)."""
    try:
        return int(datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc).timestamp())
    except ValueError:
        return None


def wait_for_exit(container, timeout_s: float) -> int | None:
    """The container's exit code, or None after killing it at the deadline."""
    try:
        return int(container.wait(timeout=timeout_s)["StatusCode"])
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        # Over the unix socket a timed-out wait surfaces as either exception;
        # the container still running is what tells a deadline from a broken
        # connection (which makes reload() raise in turn).
        container.reload()
        if container.status not in ("running", "created", "restarting"):
            raise
    try:
        container.kill()
    except docker.errors.APIError:
        # It exited between the deadline and the kill; it still overran.
        pass
    return None


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
) -> str:
    """Build the repository's Dockerfile offline; return the build log text."""
    memory = limits.memory_mb * 1024 * 1024
    try:
        _, log_lines = client.images.build(
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
    return _build_log_text(log_lines)


def _build_log_text(log_lines) -> str:
    return "".join(line.get("stream", "") or line.get("error", "") for line in log_lines)
