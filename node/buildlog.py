"""One build's log file on this node, written as the build goes.

Written live, not at the end, so that users can follow a running build
through the client (`GET /builds/{id}/log?node=N&follow=1`). The layout:

    == pbft-ci build <id> node <n> repo '<name>' branch '<branch>'
    == commit <sha>                      once resolved
    == settings ...                      what the sandbox runs with
    == cache restore ...                 for a build with caches: what it got
    <the build's output, capped>
    == output truncated at <cap> bytes   if it was
    == <notes>                           e.g. killed: out of memory
    == status <status> exit_code <code> duration_ms <ms> [reason <text>]

The status line is always last, so a reader knows the log is complete
when it sees one. So that a build cannot print lines of the node's own
(a fake `== status` would end a live reader early), an output line that
starts with `==` is written with one space in front. The build's output is written by the output reader's
thread while the build thread may add lines, hence the lock.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

STATUS_PREFIX = "== status "
NO_SANDBOX = "none: the build ended before its sandbox was set up"


class BuildLog:
    def __init__(self, path: Path, cap_bytes: int, header: str) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.truncated = False
        self._size = 0
        self._ends_with_newline = True
        self._held = b""  # a "=" that began a line, written once the next byte shows it is not "=="
        self._settings_written = False
        self._notes: list[str] = []
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb")
        except OSError:
            log.exception("could not open build log %s", path)
            self._file = None
        self._line(header)

    def commit(self, sha: str) -> None:
        self._line(f"commit {sha}")

    def settings(self, lines: list[str]) -> None:
        """The effective sandbox settings; at most once, before any output."""
        with self._lock:
            if self._settings_written:
                return
            self._settings_written = True
        for line in lines:
            self._line(f"settings {line}")

    def node_line(self, text: str) -> None:
        """A line of the node's written at once (e.g. a cache restored); only before the output starts.

        Later lines of the node go through `note`, which waits for the output
        to end so that a line never lands in the middle of one of the build's.
        """
        self._line(text)

    def write(self, chunk: bytes) -> None:
        """Build output, kept up to the cap; whatever comes later is dropped."""
        self.settings([NO_SANDBOX])
        with self._lock:
            room = self.cap_bytes - self._size
            if len(chunk) > room:
                self.truncated = True
                chunk = chunk[: max(room, 0)]
            self._size += len(chunk)
            self._append_output(chunk)

    def _append_output(self, chunk: bytes) -> None:
        """Called with the lock held: `chunk` with every line that starts with "==" escaped."""
        data, self._held = self._held + chunk, b""
        if data.endswith(b"\n=") or (data == b"=" and self._ends_with_newline):
            # One "=" at the start of a line: whether a second follows is up to the next piece.
            data, self._held = data[:-1], b"="
        if not data:
            return
        escaped = data.replace(b"\n==", b"\n ==")
        if self._ends_with_newline and escaped.startswith(b"=="):
            escaped = b" " + escaped
        self._ends_with_newline = data.endswith(b"\n")
        self._append(escaped)

    def note(self, text: str) -> None:
        """A line from the node about the build, written after the output and never capped."""
        self._notes.append(text)

    def close(self, status: str, exit_code: int | None, duration_ms: int, reason: str) -> str:
        """Write the closing lines; return the log's path, or "" if it could not be written."""
        self.settings([NO_SANDBOX])
        with self._lock:
            if self._held:
                self._append(self._held)
                self._ends_with_newline = False
            if not self._ends_with_newline:
                self._append(b"\n")
        if self.truncated:
            self._line(f"output truncated at {self.cap_bytes} bytes")
        for note in self._notes:
            self._line(note)
        reason = f" reason {reason}" if reason else ""
        self._line(f"{STATUS_PREFIX[3:]}{status} exit_code {exit_code} duration_ms {duration_ms}{reason}")
        with self._lock:
            if self._file is None:
                return ""
            self._file.close()
            self._file = None
        return str(self.path)

    def _line(self, text: str) -> None:
        with self._lock:
            self._append(f"== {text}\n".encode())

    def _append(self, data: bytes) -> None:
        """Called with the lock held. A write that fails loses the log, never the build."""
        if self._file is None:
            return
        try:
            self._file.write(data)
            self._file.flush()
        except OSError:
            log.exception("could not write build log %s", self.path)
            self._file.close()
            self._file = None
