"""What goes into a build's container besides its sources (builder/engine/sources.py) and what
comes out of it: the cache it restores, and after it exits 0 its new cache and its artifacts,
read from a holder that keeps the tmpfs mounted (see builder/engine/container.py).

The engine reads the archives; what becomes of them on the node is the workspace's
(builder/workspace/artifacts.py), which it reaches only through `ArtifactsOut`."""

from __future__ import annotations

import logging
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Protocol

import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.types import Mount

from builder.engine.sandbox import (
    Sandbox,
    SandboxError,
    build_identity,
    host_config,
    joined,
    numeric_owner,
    remove_all,
)
from builder.plan.artifactpatterns import ArtifactError, archive_path, archive_roots
from builder.plan.cachemounts import CacheMounts
from builder.plan.containerpaths import OUT_TAR, RESTORE_TAR
from builder.plan.resources import memory_budget

log = logging.getLogger(__name__)


# How long a holder outlives the build's deadline: the node's time to copy
# the cache and the artifacts out, which may mean reading a full workspace
# from an engine on another machine.
_HOLDER_GRACE_S = 300


class ArtifactSink(Protocol):
    """Takes the archives of the workspace in and says the artifacts' digests, or raises
    ArtifactError with the reason they cannot be taken."""

    max_entries: int  # the most archive entries it reads

    def add_archive(self, archive: IO[bytes], root: str) -> None: ...

    def finish(self) -> dict[str, str]: ...


class ArtifactsOut(Protocol):
    """The artifacts a build declares, as the engine takes them out after an exit 0: the
    `patterns` say which parts of /workspace it archives, and each `collector()` is a fresh
    sink for those archives (builder/workspace/artifacts.py's ArtifactCopy and Collector,
    which write the files on this node)."""

    @property
    def patterns(self) -> tuple[str, ...]: ...

    def collector(self) -> ArtifactSink: ...


def upload_restore(container, restore_tar: Path, user: str) -> None:
    """Copy the cache a build gets to RESTORE_TAR in its gated container, readable by the build user only.

    A copy that fails (it does not fit the cache tmpfs, the engine refused)
    only costs the build its cache: the wrapper finds no tar, says "cache
    dropped" and the build goes on, as for any cache that does not extract.
    """
    directory, _, name = RESTORE_TAR.rpartition("/")
    uid, gid = numeric_owner(user)

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


def hold_mounts(
    sandbox: Sandbox, image_id: str, mounts: list[Mount], timeout_s: float, *,
    network: str | None = None, hosts: tuple[str, ...] | None = None,
) -> Container:
    """Start a container that keeps `mounts` (the cache tmpfs, the workspace) mounted after the build's exit.

    It mounts those and nothing else, runs nothing but sleep, and outlives
    the build's deadline by _HOLDER_GRACE_S, the time the node has to copy
    the cache and the artifacts out. A pipeline's holder also owns the network
    namespace its steps and services join (builder/engine/steps.py): `network` (none
    otherwise), and `hosts`, names that resolve to its loopback address there. A holder
    given no `hosts` is no pod: nothing joins it, and it has no network sandbox either.
    """
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=True, with_cache=True))
    options.update(
        environment=build_identity(sandbox, image_id).environment(),
        mounts=list(mounts),
        read_only=True,
    )
    if network is not None:
        options = joined(options, network)
    if hosts is not None:
        # A pod: steps and services join its namespace, which needs the engine's network sandbox
        # even on network "none".
        options.pop("network_disabled", None)
        if hosts:
            options["extra_hosts"] = {host: "127.0.0.1" for host in hosts}
    holder = sandbox.client.containers.create(
        image_id, ["/bin/sh", "-c", f"sleep {int(timeout_s) + _HOLDER_GRACE_S}"],
        entrypoint=[], labels={**sandbox.labels, "pbft-ci.role": "holder"}, detach=True, **options,
    )
    try:
        holder.start()
    except BaseException:
        remove_all([holder], [])
        raise
    return holder


def copy_cache_out(holder, cache: CacheMounts) -> tuple[bool, str]:
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


def copy_artifacts_out(holder, artifacts: ArtifactsOut, workspace_mb: int) -> tuple[dict[str, str] | None, str]:
    """The artifacts read from the holder's workspace into `artifacts.collector()`, or why they cannot be taken.

    A problem of the build (builder/plan/artifactpatterns.py's ArtifactError) is returned as
    its deterministic reason. A problem of this node or its engine raises
    SandboxError: the holder gone (its tmpfs then reads as empty, which must
    not pass for a build that wrote nothing), the engine refusing, the
    node's disk. Each archive is read as it streams, never held whole.
    """
    gone = "docker error: the workspace was gone before its artifacts were copied"
    holder.reload()
    if holder.status != "running":
        raise SandboxError(gone)
    collector = artifacts.collector()
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


class ReportsOut(Protocol):
    """The test reports a build declares, as the engine takes them out whatever its end: one
    ArtifactsOut per pattern (builder/workspace/testreports.py's ReportCopy), so that a
    pattern that matched nothing (a step that never ran) costs no other report."""

    def each(self) -> list[ArtifactsOut]: ...


def copy_reports_out(holder, reports: ReportsOut | None, workspace_mb: int) -> tuple[dict[str, str] | None, str]:
    """The test reports read from the holder's workspace as copy_artifacts_out reads artifacts
    (path -> digest), and why any pattern's were not ("; "-joined). A build's reports never
    change its verdict, so nothing raises here: the engine's or the disk's trouble is a reason
    like the build's own."""
    if reports is None or holder is None:
        return None, ""
    found: dict[str, str] = {}
    problems = []
    for copy in reports.each():
        try:
            copied, problem = copy_artifacts_out(holder, copy, workspace_mb)
        except SandboxError as exc:
            return None, exc.reason
        found.update(copied or {})
        if problem:
            problems.append(problem)
    return dict(sorted(found.items())), "; ".join(problems)


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

