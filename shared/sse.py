"""Server-sent events (`text/event-stream`), framed and parsed by hand.

Nodes stream build output as SSE and the client passes it on; both ends
use these helpers, so no dependency is needed for a format this small.
Build output may hold any bytes, carriage returns included, and a browser
ends an SSE line at CR, LF or CRLF: `sse_event` therefore splits data at
every one of them, so output can never start a field or an event of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SseEvent:
    name: str | None  # None for a comment, whose text is then `data`
    data: str


class SseTooLarge(ValueError):
    """A line or an event grew past what the parser was told to accept."""


def sse_event(name: str, data: str) -> bytes:
    lines = _LINE_BREAK.split(data)
    return (f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def sse_comment(text: str) -> bytes:
    return f": {_LINE_BREAK.sub(' ', text)}\n\n".encode()


class SseParser:
    """Turns the bytes of an event stream, in chunks of any size, into events and comments."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._name = "message"
        self._data: list[str] = []
        self._data_bytes = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        events = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        # Checked after the complete lines are taken, so only an unfinished line can trip it.
        if len(self._buffer) > self.max_event_bytes:
            raise SseTooLarge(f"a line longer than {self.max_event_bytes} bytes")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SseEvent(None, _value(line[1:]))
        field, colon, value = line.partition(":")
        value = _value(value) if colon else ""
        if field == "event":
            self._name = value
        elif field == "data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self.max_event_bytes:
                raise SseTooLarge(f"an event larger than {self.max_event_bytes} bytes")
            self._data.append(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        # As in the SSE specification, an event without data lines is dropped.
        event = SseEvent(self._name, "\n".join(self._data)) if self._data else None
        self._name, self._data, self._data_bytes = "message", [], 0
        return event


def _value(text: str) -> str:
    return text[1:] if text.startswith(" ") else text
