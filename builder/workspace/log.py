r"""One build's log file on this node, written as the build goes.

Written live, not at the end, so that users can follow a running build
through the client (`GET /builds/{id}/log?node=N&follow=1`). The layout:

    == pbft-ci build <id> node <n> repo '<name>' branch '<branch>'
    == commit <sha>                      once resolved
    == the base branch's .pbft-ci.yml …  a pull request's: which spec decides whether it builds
    == settings ...                      what the sandbox runs with
    == cache restore ...                 for a build with caches: what it got
    <the build's output, capped>         a pipeline's steps each between
                                         == step <name>: image <image> and
                                         == step <name>: <status> exit_code <code> duration_ms <ms>
    == output truncated at <cap> bytes   if it was
    == <notes>                           e.g. killed: out of memory
    == status <status> exit_code <code> duration_ms <ms> [reason <text>]

The status line is always last, so a reader knows the log is complete
when it sees one. So that a build cannot print lines of the node's own
(a fake `== status` would end a live reader early, or fool a person), and
cannot drive the terminal of whoever reads the log, its output is written
as safe text, the same for every reader (the file, a live stream, the
dashboard, a terminal):

- bytes that are not UTF-8 become U+FFFD;
- every line end a reader may split at (`\r\n`, a lone `\r`, `\n`) becomes
  `\n`, so a progress bar's redraws become lines;
- control characters other than tab and newline (C0, DEL, and C1 such as
  U+009B, a terminal's one-character CSI) are written visibly as `\xNN`:
  no ANSI colour, cursor move, screen clear or OSC title reaches a reader;
- an output line that starts with `==` is written with one space in front.

The node's own lines get the same treatment of controls and line ends, so
no text that reaches them (a reason, a branch name) can start a line either.
The cap counts the bytes as written. The build's output is written by the
output reader's thread while the build thread may add lines, hence the lock.

Beside the log, `<log>.times` says when the node wrote each of its lines
(`LineTimes`), so that a reader can show a line's time without the log's text
carrying one on every line.

A build that got secrets (`hide`) has every form of their values masked
(`[secret NAME]`, shared/secretmask.py) in its output and in the node's
lines before anything reaches the file; the end of a piece of output that
could be the beginning of a value waits for the next piece, or the end.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
import time
from pathlib import Path
from typing import Callable

from shared.secretmask import Masks, StreamMasker

log = logging.getLogger(__name__)

STATUS_PREFIX = "== status "
_LINE_ENDS = re.compile(r"\r\n?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe_text(text: str) -> str:
    """`text` with every line end a newline and every control but tab and newline written visibly."""
    return _CONTROLS.sub(_visible, _LINE_ENDS.sub("\n", text))
NO_SANDBOX = "none: the build ended before its sandbox was set up"
# What a log's times file may grow to: a build writing a line every few milliseconds for hours
# would otherwise make it larger than the capped log. Lines past it have no time.
TIMES_CAP_BYTES = 1024 * 1024


def times_path(log_path: Path) -> Path:
    """Where the times of the log at `log_path` are kept."""
    return log_path.with_name(log_path.name + ".times")


class LineTimes:
    """When each line of a build log began, as a file beside it, written as the log is.

    One entry a write that begins lines: `<lines> <ms>`, the number of lines that began in
    that write and its time in milliseconds, the first entry's since the Unix epoch and each
    later one's since the entry before (so most entries are a few bytes). The n-th line of
    the log began at the time of the entry that counts it. Written after the log's bytes,
    so a reader never has a time for a line the log does not have yet; a write that fails,
    or the cap, ends the times, never the log.
    """

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._at_line_start = True
        self._last_ms: int | None = None
        self._size = 0
        try:
            self._file = open(path, "wb")
        except OSError:
            log.warning("could not open the line times %s", path, exc_info=True)
            self._file = None

    def wrote(self, data: bytes) -> None:
        """`data` was appended to the log: note the lines that began in it."""
        if not data:
            return
        began = data.count(b"\n", 0, len(data) - 1) + (1 if self._at_line_start else 0)
        self._at_line_start = data.endswith(b"\n")
        if not began or self._file is None:
            return
        now_ms = int(self._clock() * 1000)
        entry = f"{began} {now_ms if self._last_ms is None else now_ms - self._last_ms}\n".encode()
        if self._size + len(entry) > TIMES_CAP_BYTES:
            self.close()
            return
        try:
            self._file.write(entry)
            self._file.flush()
        except OSError:
            log.warning("could not write the line times %s", self.path, exc_info=True)
            self.close()
            return
        self._size += len(entry)
        self._last_ms = now_ms

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BuildLog:
    def __init__(self, path: Path, cap_bytes: int, header: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.truncated = False
        self._size = 0
        self._ends_with_newline = True
        # The end of the output so far that the next piece decides: a "\r" (one line end with a
        # "\n" after it, or alone) or a "=" that began a line (the start of "==", or not).
        self._held = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._masks = Masks({})
        self._masker = StreamMasker(self._masks)
        self._settings_written = False
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._times: LineTimes | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb")
        except OSError:
            log.exception("could not open build log %s", path)
            self._file = None
        else:
            self._times = LineTimes(times_path(path), clock)
        self._line(header)

    def hide(self, secrets: dict[str, str]) -> None:
        """Mask the values of `secrets` (name to value) from here on; before the build's output starts."""
        with self._lock:
            self._masks = Masks(secrets)
            self._masker = StreamMasker(self._masks)

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
        """Build output, kept as safe text up to the cap; whatever comes later is dropped."""
        self.settings([NO_SANDBOX])
        with self._lock:
            if self.truncated:
                return
            self._append_output(self._masker.feed(self._decoder.decode(chunk)), final=False)

    def _append_output(self, text: str, *, final: bool) -> None:
        """Called with the lock held: `text` as safe text (see the module's docstring)."""
        text, self._held = self._held + text, ""
        if text.endswith("\r") and not final:
            text, self._held = text[:-1], "\r"
        text = safe_text(text)
        if not final and not self._held and (text.endswith("\n=") or (text == "=" and self._ends_with_newline)):
            # One "=" at the start of a line: whether a second follows is up to the next piece.
            text, self._held = text[:-1], "="
        if not text:
            return
        escaped = text.replace("\n==", "\n ==")
        if self._ends_with_newline and escaped.startswith("=="):
            escaped = " " + escaped
        data = escaped.encode()
        room = self.cap_bytes - self._size
        if len(data) > room:
            self.truncated = True
            # Cut where a character ends, so the file stays UTF-8.
            data = data[: max(room, 0)].decode("utf-8", errors="ignore").encode()
            self._held = ""
        self._size += len(data)
        if data:
            self._ends_with_newline = data.endswith(b"\n")
            self._append(data)

    def section(self, text: str) -> None:
        """A line of the node's between pieces of the build's output, on a line of its own:
        a pipeline step begins or ends (builder/engine/steps.py), or the build runs once more (its
        container was killed from outside). The cap keeps counting across them."""
        with self._lock:
            if not self.truncated:
                self._append_output(self._end_of_output(), final=True)
            self._decoder.reset()
            if not self._ends_with_newline:
                self._append(b"\n")
                self._ends_with_newline = True
        self._line(text)

    def note(self, text: str) -> None:
        """A line from the node about the build, written after the output and never capped."""
        self._notes.append(text)

    def close(self, status: str, exit_code: int | None, duration_ms: int, reason: str) -> str:
        """Write the closing lines; return the log's path, or "" if it could not be written."""
        self.settings([NO_SANDBOX])
        with self._lock:
            if not self.truncated:
                self._append_output(self._end_of_output(), final=True)
            if not self._ends_with_newline:
                self._append(b"\n")
        if self.truncated:
            self._line(f"output truncated at {self.cap_bytes} bytes")
        for note in self._notes:
            self._line(note)
        reason = f" reason {reason}" if reason else ""
        self._line(f"{STATUS_PREFIX[3:]}{status} exit_code {exit_code} duration_ms {duration_ms}{reason}")
        with self._lock:
            if self._times is not None:
                self._times.close()
            if self._file is None:
                return ""
            self._file.close()
            self._file = None
        return str(self.path)

    def _end_of_output(self) -> str:
        """Called with the lock held: what the decoder and the masker still hold, at the end of a
        stretch of output (a step's, the build's)."""
        return self._masker.feed(self._decoder.decode(b"", final=True)) + self._masker.flush()

    def _line(self, text: str) -> None:
        with self._lock:
            self._append(f"== {safe_text(self._masks.mask(text)).replace(chr(10), ' ')}\n".encode())

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
            return
        if self._times is not None:
            self._times.wrote(data)
