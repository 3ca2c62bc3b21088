"""A spec build's container held at a gate: started before its script is known (so it can be
started before the build is, builder/engine/ready.py), filled with the sources while it waits,
then handed the build's secrets and script on its stdin.

GATE_COMMAND reads them up to end of file and execs `/bin/sh -e -c <script> [arguments]`; the
secrets are set by the gate's shell, never written on a command line, which is public on its
host (/proc/<pid>/cmdline, `ps`) where an environment is not.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

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
    remove_all,
    tmpfs_volume,
)
from builder.plan.resources import memory_budget


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

