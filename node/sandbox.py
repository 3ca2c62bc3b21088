"""Running one build inside a locked-down Docker container.

Everything here is blocking (docker SDK over HTTP); the executor calls it from
a worker thread. Problems the build owner should see as an ``error`` result are
raised as SandboxError with a deterministic reason, so that honest nodes report
the same text; the daemon's own message goes to the build log as detail.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

TMPFS_SIZE = "64m"


@dataclass(frozen=True)
class BuildLimits:
    image: str = "pbft-ci/busybox:latest"
    timeout_s: float = 300.0
    memory_mb: int = 256
    cpus: float = 1.0
    pids_limit: int = 128
    output_cap_bytes: int = 1_000_000
    user: str = "1000:1000"


class SandboxError(Exception):
    """A build could not be run; `reason` is deterministic, `detail` is for the log."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ContainerOutcome:
    exit_code: int | None  # None when the deadline killed the container
    output: bytes          # at most the output cap
    truncated: bool


def _host_config(limits: BuildLimits) -> dict:
    """Container options shared by spec builds and Dockerfile builds."""
    memory = f"{limits.memory_mb}m"
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
        user=limits.user,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMPFS_SIZE}"},
    )


def run_container(
    client: docker.DockerClient,
    *,
    image: str,
    command: list[str] | None,
    workspace: Path | None,
    limits: BuildLimits,
    timeout_s: float,
    labels: dict[str, str],
) -> ContainerOutcome:
    """Run `command` (or the image's CMD) to completion or until the deadline.

    With a workspace, it is bind-mounted read-write at /workspace and the root
    file system is read-only. Without one (an image built from the
    repository's Dockerfile) the sources live in the image, so its root file
    system stays writable; it is thrown away with the container anyway.
    """
    options = _host_config(limits)
    if workspace is not None:
        options.update(
            volumes={str(workspace): {"bind": "/workspace", "mode": "rw"}},
            working_dir="/workspace",
            read_only=True,
        )
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        # Never pull: there is no registry, and an image fetched on one node
        # but not another would make honest nodes disagree.
        raise SandboxError(f"image not found: {image}") from None
    except docker.errors.APIError as exc:
        raise SandboxError("docker error: could not inspect image", str(exc)) from None

    container = None
    try:
        container = client.containers.create(image, command, labels=labels, detach=True, **options)
        container.start()
        exit_code = _wait(container, timeout_s)
        output, truncated = _read_output(container, limits.output_cap_bytes)
        return ContainerOutcome(exit_code, output, truncated)
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError("docker error: container failed to run", str(exc)) from None
    finally:
        if container is not None:
            _remove(container)


def _wait(container, timeout_s: float) -> int | None:
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


def _read_output(container, cap_bytes: int) -> tuple[bytes, bool]:
    """Stream stdout and stderr after exit, keeping at most `cap_bytes` in memory."""
    chunks = []
    size = 0
    stream = container.logs(stdout=True, stderr=True, stream=True, follow=False)
    try:
        for chunk in stream:
            if size + len(chunk) > cap_bytes:
                chunks.append(chunk[: cap_bytes - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    finally:
        stream.close()
    return b"".join(chunks), False


def _remove(container) -> None:
    """Remove the container, retrying briefly while the daemon finishes a kill."""
    for attempt in range(5):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            if attempt == 4:
                raise
            time.sleep(0.2)


def build_image(
    client: docker.DockerClient, *, context: Path, tag: str, limits: BuildLimits, timeout_s: float
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
