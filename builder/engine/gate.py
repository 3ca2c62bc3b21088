"""A spec build's container held at a gate: started before its script is known (so it can be
started before the build is, builder/engine/ready.py), filled with the sources while it waits,
then handed the build's secrets and script on its stdin.

GATE_COMMAND first reads one line: COPY_SOURCES, and it copies the checkout the node has put
in its inbox (a folder of the node's, mounted read-only at SOURCES_DIR) onto /workspace and
says how that went (SOURCES_COPIED, SOURCES_NOT_COPIED); anything else, and the node puts the
sources there itself. Then it reads the secrets and the script up to end of file and execs
`/bin/sh -e -c <script> [arguments]`; the secrets are set by the gate's shell, never written
on a command line, which is public on its host (/proc/<pid>/cmdline, `ps`) where an
environment is not.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.models.volumes import Volume
from docker.types import CancellableStream, Mount

from builder.engine.attach import StdinAttach
from builder.engine.sandbox import (
    Sandbox,
    SandboxError,
    build_identity,
    host_config,
    identity_mounts,
    joined,
    remove_all,
    tmpfs_volume,
)
from builder.plan.variations import CLOCK_VARIABLE, UMASK_VARIABLE
from builder.plan.containerpaths import SOURCES_DIR, WORKSPACE_DIR
from builder.plan.resources import memory_budget


# Ends every script the node writes to a gated container's stdin. A script cut
# short (the node died while writing it, or gave up) lacks it, and the gate
# then runs nothing. It starts with a newline so that the gate can strip it
# and leave the script exactly as written, trailing newlines included.
SCRIPT_END = "\n# pbft-ci: end of build script"


# Ends the line before the script that exports the build's secrets (gate_input). Its line
# breaks keep it out of that line, which holds none (`exported` escapes them).
SECRETS_END = "\n# pbft-ci: end of the build's secrets\n"


# The first line the node writes to a gate: copy the sources from the inbox; or not (NO_COPY).
COPY_SOURCES = "copy"
NO_COPY = "none"
# What the gate says once it has copied them, or failed to (after what cp said); nothing else
# reaches the build's output before its script runs.
SOURCES_COPIED = "pbft-ci-gate: sources copied"
SOURCES_NOT_COPIED = "pbft-ci-gate: sources not copied"
# The inbox's folder the node renames the checkout to for the copy.
INBOX_TREE = "tree"

# A spec build's container runs this: it reads the first line (see the module's docstring),
# then the build's secrets and script from stdin up to end of file, which the node writes once
# the sources are in /workspace, exports the secrets, and execs `/bin/sh -e -c <script>
# [arguments]`, the same process a script given on the command line would run as. Without
# SECRETS_END and SCRIPT_END it exits 1 and runs nothing. The secrets are set by the gate's
# shell, not written into the script, because a process's command line is public on its host
# (/proc/<pid>/cmdline, `ps`) and its environment is not. `cp -PR` copies links as links.
GATE_COMMAND = [
    "/bin/sh", "-c",
    'end=$1; sep=$2; shift 2; IFS= read -r how || exit 1; '
    f'if [ "$how" = {COPY_SOURCES} ]; then '
    f'if said=$(LC_ALL=C cp -PR {SOURCES_DIR}/{INBOX_TREE}/. {WORKSPACE_DIR}/ 2>&1); then echo "{SOURCES_COPIED}"; '
    f'else printf "%s\\n{SOURCES_NOT_COPIED}\\n" "$said"; fi; fi; '
    'input=$(cat) && case "$input" in '
    '*"$sep"*"$end") input=${input%"$end"}; eval "${input%%"$sep"*}" && '
    'exec /bin/sh -e -c "${input#*"$sep"}" "$@";; esac; exit 1',
    "pbft-ci-gate", SCRIPT_END, SECRETS_END,
]


# A Dockerfile build's container started ahead (builder/engine/ready.py): it reads the first line
# and the exported variables as GATE_COMMAND does, then execs its arguments after the gate's, the
# image's own ENTRYPOINT and CMD, which so run as the container's first process with the image's
# working directory, as `docker start` would have run them. An image without /bin/sh cannot have
# one: its builds start their container when they come.
IMAGE_GATE_COMMAND = [
    "/bin/sh", "-c",
    'end=$1; sep=$2; shift 2; IFS= read -r how || exit 1; '
    'input=$(cat) && case "$input" in '
    '*"$sep"*"$end") input=${input%"$end"}; eval "${input%%"$sep"*}" && exec "$@";; esac; exit 1',
    "pbft-ci-gate", SCRIPT_END, SECRETS_END,
]


# The time zone and locale every build gets. C.UTF-8 is built into glibc
# (2.35 and Debian's for long before) and musl; an image without it (busybox
# has no locales at all) behaves as in the C locale, the same on every node.
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
    # A node's variation of the umask (builder/plan/variations.py), set on the same line.
    umask = environment.get(UMASK_VARIABLE, "")
    mask = f"umask {umask}; " if re.fullmatch(r"0[0-7]{3}", umask) else ""
    # And of the clock: libfaketime, where the image has Debian's, for the programs the script starts.
    clock = environment.get(CLOCK_VARIABLE, "")
    if re.fullmatch(r"\+[0-9]{1,5}d", clock):
        mask += ('for lib in /usr/lib/*/faketime/libfaketime.so.1; do if [ -r "$lib" ]; then export '
                 f'LD_PRELOAD="$lib${{LD_PRELOAD:+:$LD_PRELOAD}}" FAKETIME={clock} FAKETIME_DONT_FAKE_MONOTONIC=1; '
                 'break; fi; done; ')
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
    return f"{mask}export {' '.join(assignments)}; {''.join(trims)}{script}"


def gate_input(script: str, secrets: dict[str, str] | None = None, *, first_line: bool = True) -> str:
    """What the node writes to a gated container's stdin (GATE_COMMAND): NO_COPY's line (unless
    `first_line` is False: the gate has read its first line already), one line that exports
    `secrets`, SECRETS_END, the script, SCRIPT_END."""
    opening = NO_COPY + "\n" if first_line else ""
    return opening + exported(secrets or {}, "") + SECRETS_END + script + SCRIPT_END + "\n"


@dataclass
class GatedContainer:
    """A spec build's container, started and held at GATE_COMMAND until its script comes.

    While it waits, the gate keeps the empty tmpfs `volume` mounted at
    /workspace. `stdin` and `output` are the attaches to its input and to its
    output, both opened before it started: nothing it writes is missed, however
    late the reading starts, and a node that dies closes the gate's stdin.
    `inbox`, where the engine runs on this host: the node's empty folder the
    container mounts read-only at SOURCES_DIR, for the gate to copy the sources
    from (builder/engine/sources.py); elsewhere an empty read-only tmpfs is
    mounted there, so that every build sees the same layout. `opened`: the gate
    has been written its first line.
    """

    container: Container
    volume: Volume | None  # None: a Dockerfile build's (start_image_gate), whose sources are in its image
    stdin: StdinAttach
    output: CancellableStream
    inbox: Path | None = None
    opened: bool = False

    def open_gate(self, line: str) -> None:
        """Write the gate's first line (COPY_SOURCES or NO_COPY)."""
        assert not self.opened, "a gate reads one first line"
        self.opened = True
        try:
            self.stdin.send_all(f"{line}\n".encode())
        except OSError as exc:
            raise SandboxError("docker error: could not start the build", str(exc)) from None

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
        remove_all([self.container], [self.volume] if self.volume is not None else [])
        self.remove_inbox()

    def remove_inbox(self) -> None:
        """Remove the inbox folder (the container may keep its mount: it sees an empty folder)."""
        if self.inbox is not None:
            shutil.rmtree(self.inbox, ignore_errors=True)


@dataclass(frozen=True)
class GateSetup:
    """What a gated container is started with besides its image.

    `arguments` follow the script the gate will run (`sh -e -c <script>
    arguments...`); `cache_mounts` and `network` are those of a build with
    caches or a build network; `workspace`, a pipeline's shared workspace volume
    (builder/engine/steps.py), which the container then mounts instead of a fresh one and
    leaves for the pipeline to remove.
    """

    arguments: tuple[str, ...] = ()
    cache_mounts: tuple[Mount, ...] = ()
    network: str | None = None
    workspace: Volume | None = None


def start_gated_container(
    sandbox: Sandbox, image_id: str, role: str, setup: GateSetup = GateSetup(),
) -> GatedContainer:
    """Create and start a spec build's container with a fresh workspace (or `setup.workspace`),
    held at its gate, labelled with `role`. Whatever it made is removed again if it fails."""
    arguments, cache_mounts, network, workspace = setup.arguments, setup.cache_mounts, setup.network, setup.workspace
    budget = memory_budget(sandbox.limits, with_workspace=True, with_cache=bool(cache_mounts))
    options = host_config(sandbox, budget)
    identity = build_identity(sandbox, image_id)
    volume = container = stdin = output = inbox = None
    made = []
    try:
        volume = workspace
        mounts = []
        if volume is None:
            volume = tmpfs_volume(sandbox, "workspace", sandbox.limits.workspace_mb, mode="0755")
            made.append(volume)
            inbox = _make_inbox(sandbox.inboxes) if sandbox.inboxes is not None else None
            mounts.append(_inbox_mount(inbox))
        if sandbox.build_path is not None:
            # A varied build runs where its node's variation says, its workspace there as well.
            mounts.append(Mount(sandbox.build_path, volume.name, type="volume", no_copy=True))
        if network is not None:
            options = joined(options, network)
        options.update(
            environment=identity.environment(),
            mounts=[Mount(WORKSPACE_DIR, volume.name, type="volume", no_copy=True), *mounts,
                    *identity_mounts(identity, options), *cache_mounts],
            working_dir=sandbox.build_path or WORKSPACE_DIR,
            read_only=True,
            stdin_open=True,
        )
        # Not detached: only then does docker-py set StdinOnce, which makes the
        # daemon close the build's stdin when the node's attach ends, after the
        # script or without it.
        # entrypoint=[]: the gate is the whole command. The image's ENTRYPOINT would be run
        # instead, with the gate as its arguments (a step's image is a tool's, often with one).
        container = sandbox.client.containers.create(
            image_id, [*GATE_COMMAND, *arguments], entrypoint=[], labels={**sandbox.labels, "pbft-ci.role": role},
            detach=False, **options,
        )
        stdin = StdinAttach(container.attach_socket(params={"stdin": 1, "stream": 1}))
        output = container.attach(stdout=True, stderr=True, stream=True)
        container.start()
        return GatedContainer(container, volume, stdin, output, inbox)
    except BaseException:
        if stdin is not None:
            stdin.close()
        if output is not None:
            output.close()
        remove_all([container] if container is not None else [], made)
        if inbox is not None:
            shutil.rmtree(inbox, ignore_errors=True)
        raise


def _make_inbox(inboxes: Path) -> Path:
    """A new empty folder under `inboxes` for one container; the build user may read what the
    node puts in it (the folders above it may be the node's alone: only this one is mounted).
    The checkouts folder above `inboxes` must exist: the executor made it and checked it is
    the node's own (builder/workspace/checkouts.py)."""
    inboxes.mkdir(mode=0o700, exist_ok=True)
    inbox = Path(tempfile.mkdtemp(dir=inboxes))
    inbox.chmod(0o755)
    return inbox


def _inbox_mount(inbox: Path | None) -> Mount:
    if inbox is None:
        return Mount(SOURCES_DIR, None, type="tmpfs", read_only=True, tmpfs_size=4096, tmpfs_mode=0o755)
    return Mount(SOURCES_DIR, str(inbox), type="bind", read_only=True)


def deliver_script(gated: GatedContainer, script: str, secrets: dict[str, str] | None = None) -> None:
    """Write `secrets` and the script to the gated container's stdin (gate_input, after NO_COPY
    if the gate has not been written its first line) and end it: the build starts.

    Ending our side makes the daemon close the container's stdin
    (StdinOnce): the gate's `cat` ends, and the build finds its stdin at end
    of file, as a build without a gate would. A script is text from YAML,
    where a lone surrogate can be escaped; it becomes "?" rather than an
    encoding error.
    """
    if not gated.opened:
        gated.open_gate(NO_COPY)
    try:
        gated.stdin.send_all(gate_input(script, secrets, first_line=False).encode(errors="replace"))
        gated.stdin.end_input()
    except OSError as exc:
        raise SandboxError("docker error: could not start the build", str(exc)) from None



def start_image_gate(sandbox: Sandbox, image_id: str, command: tuple[str, ...]) -> GatedContainer:
    """Create and start a Dockerfile build's container, held at IMAGE_GATE_COMMAND until the
    build's variables come, then running `command` (the image's own): as container.py's
    _start_image_build would start it, with no workspace and a writable root file system."""
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=False))
    identity = build_identity(sandbox, image_id)
    options.update(environment=identity.environment(), mounts=identity_mounts(identity, options), stdin_open=True)
    container = stdin = output = None
    try:
        # Not detached, for StdinOnce (start_gated_container); entrypoint=[]: the gate is the
        # whole command, and it runs the image's ENTRYPOINT itself, in `command`.
        container = sandbox.client.containers.create(
            image_id, [*IMAGE_GATE_COMMAND, *command], entrypoint=[],
            labels={**sandbox.labels, "pbft-ci.role": "ready"}, detach=False, **options,
        )
        stdin = StdinAttach(container.attach_socket(params={"stdin": 1, "stream": 1}))
        output = container.attach(stdout=True, stderr=True, stream=True)
        container.start()
        return GatedContainer(container, None, stdin, output)
    except BaseException:
        if stdin is not None:
            stdin.close()
        if output is not None:
            output.close()
        remove_all([container] if container is not None else [], [])
        raise
