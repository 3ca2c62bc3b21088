"""How a build's container ends: its output read live up to a cap, its exit or the kill at its
deadline, and whether the kernel's OOM killer or someone outside the build ended it."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

# How long an exit code 137 waits for the engine's word of an OOM kill (ended_out_of_memory).
_OOM_REPORT_CHECKS, _OOM_REPORT_PAUSE_S = 5, 0.2

# Seconds to let the output reader drain what the daemon still holds once the
# container has stopped, before we cut the connection.
_OUTPUT_DRAIN_S = 5.0


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

