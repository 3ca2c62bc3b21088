"""Logging dropped messages at most once per reason per interval.

A peer or a stranger can send thousands of junk frames a second; each is
counted (GET /status on a node shows every counter), but a line per frame
would turn a flood into gigabytes of log. So each drop reason gets one line
per interval, and that line says how many of its kind went unlogged since the
previous one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable

DROP_LOG_INTERVAL_S = 10.0


class DropLogLimiter:
    """Decides, per drop reason, whether this drop gets a log line."""

    def __init__(self, interval_s: float = DROP_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._logged_at_s: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def admit(self, reason: str) -> int | None:
        """None to stay silent; otherwise log, mentioning the returned number of drops left unlogged since the last line."""
        now_s = self._clock()
        logged_at_s = self._logged_at_s.get(reason)
        if logged_at_s is not None and now_s - logged_at_s < self._interval_s:
            self._suppressed[reason] += 1
            return None
        self._logged_at_s[reason] = now_s
        return self._suppressed.pop(reason, 0)


def suppressed_note(suppressed: int) -> str:
    return f" [{suppressed} more with this reason not logged since the last line]" if suppressed else ""


class ReplicaDropFilter(logging.Filter):
    """Applies a DropLogLimiter to the replica's "dropped" warnings, keyed on their reason.

    The protocol core logs each refused message as
    `"node=%d view=%d dropped %s: %s"` with the reason as the last argument;
    it stays free of rate limiting, and the handler does it. Every other
    record passes untouched.
    """

    def __init__(self, limiter: DropLogLimiter | None = None) -> None:
        super().__init__()
        self._limiter = limiter or DropLogLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "pbft.replica" or "dropped" not in str(record.msg):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        reason = str(args[-1]) if args else record.getMessage()
        suppressed = self._limiter.admit(reason)
        if suppressed is None:
            return False
        if suppressed:
            # Formatted here, once, so the note cannot disturb the record's own arguments.
            record.msg = record.getMessage() + suppressed_note(suppressed)
            record.args = ()
        return True
