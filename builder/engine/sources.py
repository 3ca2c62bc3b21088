"""The sources of a spec build put onto its /workspace tmpfs, held mounted by a running container
(a gated build container, or a pipeline's holder), every entry owned by the build user.

Three ways, the same tree each way:

- Copied by the gate (`fill_gated`): when the engine runs on this host, every gated build
  container has an inbox, a folder of the node's of its own, mounted read-only at SOURCES_DIR
  (builder/engine/gate.py). The node renames the build's checkout into it (a rename on one file
  system: nothing is copied on the host), the gate runs `cp -PR` from it onto /workspace as
  the build user, before any of the build runs, says it is done, and the node renames the
  checkout back: the build's script later finds the inbox empty. A copy from page cache to
  tmpfs inside the engine's host, with no call through the API: a tiny tree's upload took
  about 120 ms, its copy a few; a tree of 30,000 files needs no container of its own either.
  Only the inbox is mounted, never the node's checkouts folder above it, so the copy sees no
  other build's tree. `-P` copies a symbolic link as a link, never following it.
- Copied through a mount (`fill_workspace`, a pipeline's holder): when the engine runs on
  this host and the tree is large (MOUNT_FROM_ENTRIES, MOUNT_FROM_BYTES), a short-lived
  container of the build's image, with the build's limits and hardening and as the build user,
  mounts the build's own checkout folder read-only at SOURCES_DIR beside the workspace and runs
  `cp -PR` from one to the other. A small tree is streamed even then: a container's start
  costs more than its upload.
- Streamed: GNU tar on the node writes an archive of the checkout and it goes to the engine
  through the API as it is written; the engine unpacks it inside the container. It works for
  any engine, one on another machine too, but every file passes through the API: a repository
  of 30,000 files and 224 MB took about 7.5 s of an 11.3 s build.

A copy falls back to streaming, with a line in the node log, when it cannot run (no `cp` in
the image, an engine that does not see the node's path after all) or fails for another reason
than room (a checkout the build user may not read, for a node whose umask keeps its files from
others); streaming then writes every file over whatever the copy wrote. A tree that does not fit
ends the build with the same reason every way, since each writes the same files.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount

from builder.engine.gate import COPY_SOURCES, INBOX_TREE, SOURCES_COPIED, SOURCES_NOT_COPIED, GatedContainer
from builder.engine.sandbox import Sandbox, SandboxError, host_config, kill_quietly, numeric_owner
from builder.plan.containerpaths import SOURCES_DIR, WORKSPACE_DIR
from builder.plan.resources import memory_budget

log = logging.getLogger(__name__)

# The workspace's archive goes to the engine in pieces of this size, as tar writes it.
_UPLOAD_CHUNK_BYTES = 1024 * 1024

# A tree with at least this many entries, or of at least this many bytes, is copied through a
# mount when the engine allows it: streaming costs about 0.25 ms an entry, the copy a
# container's start (0.3-0.6 s) and about 0.08 ms an entry.
MOUNT_FROM_ENTRIES = 3000
MOUNT_FROM_BYTES = 64 * 1024 * 1024

# How long the copy may take; a tree that fits the workspace is copied in seconds.
_COPY_TIMEOUT_S = 300

# What a copy that ran out of room says (cp runs with LC_ALL=C).
_NO_ROOM = "No space left on device"
# The last of what a gate's copy said that the node keeps for its log.
_SAID_BYTES = 64 * 1024


def fill_gated(sandbox: Sandbox, gated: GatedContainer, workspace: Path) -> None:
    """Put the checkout `workspace`, its .git included, onto the /workspace of `gated`, a build
    container waiting at its gate for its first line: copied by the gate from its inbox if it
    has one, else streamed."""
    if gated.inbox is not None and _copy_through_inbox(sandbox, gated, workspace):
        return
    _stream(sandbox, gated.container, workspace)


def _copy_through_inbox(sandbox: Sandbox, gated: GatedContainer, workspace: Path) -> bool:
    """Have the gate copy the tree from its inbox (see the module's docstring); False, logged,
    when streaming should do it instead."""
    tree = gated.inbox / INBOX_TREE
    try:
        os.rename(workspace, tree)
    except OSError as exc:
        # Not on the inbox's file system (a caller's own folder): the gate is written its
        # first line with the script.
        log.info("streaming the sources of build %s: the checkout cannot move to its container's inbox: %s",
                 workspace.name, exc)
        return False
    try:
        gated.open_gate(COPY_SOURCES)
        copied, said = _gate_says(gated)
    finally:
        os.rename(tree, workspace)
    if copied:
        return True
    if _NO_ROOM in said:
        raise SandboxError(f"sources do not fit the {sandbox.limits.workspace_mb} MB workspace", said)
    log.warning("streaming the sources of build %s: the gate's copy failed: %s", workspace.name, said.strip()[-500:])
    return False


def _gate_says(gated: GatedContainer) -> tuple[bool, str]:
    """Read the gate's output up to SOURCES_COPIED or SOURCES_NOT_COPIED: whether it copied,
    and the last of what cp said. Nothing of the build's comes before: its script is not there
    yet. A gate that says neither within _COPY_TIMEOUT_S (an image's cp that never ends) is killed."""
    copied_line, failed_line = f"{SOURCES_COPIED}\n".encode(), f"{SOURCES_NOT_COPIED}\n".encode()
    timer = threading.Timer(_COPY_TIMEOUT_S, kill_quietly, (gated.container,))
    timer.start()
    said = b""
    try:
        for chunk in gated.output:
            said = (said + chunk)[-_SAID_BYTES:]
            if said.endswith(copied_line):
                return True, ""
            if said.endswith(failed_line):
                return False, said[:-len(failed_line)].decode(errors="replace")
    except (OSError, ValueError, requests.exceptions.RequestException) as exc:
        raise SandboxError("docker error: container stopped before the build started", f"{exc}\n") from None
    finally:
        timer.cancel()
    raise SandboxError("docker error: container stopped before the build started", said.decode(errors="replace"))


def fill_workspace(sandbox: Sandbox, container, workspace: Path, *, image_id: str, volume: str) -> None:
    """Put the checkout `workspace`, its .git included, onto the workspace tmpfs `volume`, which
    `container` (of image `image_id`, running) keeps mounted at /workspace."""
    if sandbox.sources_mountable and _large(workspace):
        if _copy_through_mount(sandbox, workspace, image_id, volume):
            return
    _stream(sandbox, container, workspace)


def _large(workspace: Path) -> bool:
    """Whether the tree has MOUNT_FROM_ENTRIES entries or MOUNT_FROM_BYTES bytes; it stops
    counting as soon as it knows."""
    entries = size = 0
    folders = [workspace]
    while folders:
        with os.scandir(folders.pop()) as listing:
            for entry in listing:
                entries += 1
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
                if entries >= MOUNT_FROM_ENTRIES or size >= MOUNT_FROM_BYTES:
                    return True
    return False


def _copy_through_mount(sandbox: Sandbox, workspace: Path, image_id: str, volume: str) -> bool:
    """Copy the tree in a container of its own that mounts it read-only (see the module's
    docstring); False, logged, when streaming should do it instead."""
    options = host_config(sandbox, memory_budget(sandbox.limits, with_workspace=True))
    options.update(
        mounts=[
            Mount(SOURCES_DIR, str(workspace), type="bind", read_only=True),
            Mount(WORKSPACE_DIR, volume, type="volume", no_copy=True),
        ],
        environment={"LC_ALL": "C"},
        read_only=True,
        # cp says little (a line per file it cannot copy); the daemon keeps at most this much.
        log_config=LogConfig(type="json-file", config={"max-size": "256k", "max-file": "1"}),
    )
    copier = None
    try:
        copier = sandbox.client.containers.create(
            image_id, ["cp", "-PR", f"{SOURCES_DIR}/.", f"{WORKSPACE_DIR}/"],
            entrypoint=[], labels={**sandbox.labels, "pbft-ci.role": "sources"}, detach=True, **options,
        )
        copier.start()
        exit_code = copier.wait(timeout=_COPY_TIMEOUT_S)["StatusCode"]
        said = "" if exit_code == 0 else copier.logs(stdout=True, stderr=True, tail=20).decode(errors="replace")
    except docker.errors.APIError as exc:
        # No cp in the image, or no such path where the engine runs: nothing was copied.
        log.info("streaming the sources of build %s: a copy through a mount could not start: %s",
                 workspace.name, exc.explanation or exc)
        return False
    finally:
        if copier is not None:
            sandbox.remove([copier], [])
    if exit_code == 0:
        return True
    if _NO_ROOM in said:
        raise SandboxError(f"sources do not fit the {sandbox.limits.workspace_mb} MB workspace", said)
    log.warning("streaming the sources of build %s: the copy through a mount exited %s: %s",
                workspace.name, exit_code, said.strip()[-500:])
    return False


def _stream(sandbox: Sandbox, container, workspace: Path) -> None:
    """Send the tree to the engine as GNU tar writes it: Python's tarfile would spend many
    seconds on a repository of 30,000 files, and a temporary copy of it would take the node's
    disk. Symbolic links are stored as links, never followed; the engine unpacks inside the
    container, so a link cannot reach the host."""
    uid, gid = numeric_owner(sandbox.user)
    size_mb = sandbox.limits.workspace_mb
    command = [
        "tar", "--create", "--file=-", f"--directory={workspace}", f"--owner={uid}", f"--group={gid}",
        "--numeric-owner", ".",
    ]
    with tempfile.TemporaryFile() as errors, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as tar:
        try:
            container.put_archive(WORKSPACE_DIR, iter(functools.partial(tar.stdout.read, _UPLOAD_CHUNK_BYTES), b""))
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
