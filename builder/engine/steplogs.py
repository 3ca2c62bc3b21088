"""Each pipeline step's output as one section of the build's log, however many steps run at once.

One step at a time is *live*: its lines reach the log (and whoever follows it) as it prints
them. A step that starts while another is live writes to a buffer of its own (all of them
together hold at most the build's output cap, all the log would keep); when the live
step ends, the steps that ended meanwhile are written whole, in the order they ended, and
the earliest started of those still running writes what it has so far and becomes live.
So a reader sees each step between its `== step <name>: image …` and `== step <name>: …`
lines, never two steps' lines mixed.

Called from each step's output reader thread and from the thread that runs the steps.
"""

from __future__ import annotations

import threading
from typing import Callable

_Piece = tuple[str, "str | bytes"]  # ("section", a node's line) or ("output", the step's bytes)


class StepSections:
    def __init__(self, on_section: Callable[[str], None], on_output: Callable[[bytes], None],
                 max_buffered_bytes: int) -> None:
        self._on_section, self._on_output = on_section, on_output
        # What waits, all steps together: the log keeps no more than the output cap of a
        # whole build, so a wide pipeline's steps cannot make the node hold more.
        self._room = max_buffered_bytes
        self._lock = threading.Lock()
        self._live: str | None = None
        self._running: list[str] = []  # buffered steps still running, in the order they started
        self._buffers: dict[str, list[_Piece]] = {}
        self._ended: list[str] = []  # buffered steps that ended, in the order they ended

    def note(self, name: str, text: str) -> None:
        """A step's section of one line, for a step that does not run (skipped)."""
        with self._lock:
            if self._live is None:
                self._on_section(text)
            else:
                self._buffers[name] = [("section", text)]
                self._ended.append(name)

    def begin(self, name: str, header: str) -> None:
        with self._lock:
            if self._live is None:
                self._live = name
                self._on_section(header)
            else:
                self._buffers[name] = [("section", header)]
                self._running.append(name)

    def output(self, name: str, data: bytes) -> None:
        """What a running step printed."""
        self._add(name, ("output", data))

    def say(self, name: str, text: str) -> None:
        """A line of the node's within a running step's section (an attempt that failed)."""
        self._add(name, ("section", text))

    def _add(self, name: str, piece: _Piece) -> None:
        with self._lock:
            if name == self._live:
                self._put(piece)
            elif piece[0] == "section":
                self._buffers[name].append(piece)
            elif self._room > 0:
                kept = piece[1][:self._room]
                self._room -= len(kept)
                self._buffers[name].append(("output", kept))

    def end(self, name: str, footer: str) -> None:
        with self._lock:
            if name != self._live:
                self._buffers[name].append(("section", footer))
                self._running.remove(name)
                self._ended.append(name)
                return
            self._on_section(footer)
            self._live = None
            for ended in self._ended:
                self._write(ended)
            self._ended.clear()
            if self._running:
                self._live = self._running.pop(0)
                self._write(self._live)

    def _write(self, name: str) -> None:
        for piece in self._buffers.pop(name, []):
            self._put(piece)

    def _put(self, piece: _Piece) -> None:
        kind, data = piece
        if kind == "section":
            self._on_section(data)
        else:
            self._on_output(data)
