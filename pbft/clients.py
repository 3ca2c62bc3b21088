"""The client table: exactly-once execution and the requests still open (OSDI'99 §4.1, §4.4).

Every executed request is remembered, with True once this node replied (None
until the build finished, or for ever when this node learnt the batch by
state transfer and never built it), so a retransmission is answered (with
the reply the store kept: `ResendReply`), never run again. Memory
does not grow with the requests served: at each checkpoint a client's floor
rises to its newest executed timestamp less `expiry_us`, and further until
at most `max_kept` of its executed requests remain (timestamps are the
client's to choose, so the first rule alone bounds nothing for a client that
counts 1, 2, 3, ...); everything at or below the floor is forgotten. Since
the floor is a function of the ledger alone, every honest replica forgets
the same requests at the same point.

Open requests: those a client sent to this node that have not executed
(`waiting`, at most `max_open` per client; a backup's view-change timer runs
while there are any), those a backup forwarded to the primary, and the
primary's queue of requests not yet given a sequence number (`pending`).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque

from pbft.messages import Request

Key = tuple[str, int]  # (client, timestamp)


class ClientTable:
    def __init__(self, expiry_us: int, max_kept: int = 4096, max_open: int = 1024) -> None:
        self.expiry_us = expiry_us
        self.max_kept = max_kept
        self.max_open = max_open
        self.executed: dict[Key, bool | None] = {}  # True: replied
        self.floor: dict[str, int] = {}  # per client: timestamps at or below are done, or never will be
        self.latest: dict[str, int] = {}  # per client: newest timestamp executed
        # Per client, a min-heap of the executed timestamps: a checkpoint forgets in time
        # proportional to what it forgets, not to the hour of requests the table holds.
        self._timestamps: dict[str, list[int]] = {}
        self.waiting: dict[Key, Request] = {}
        self._open: Counter[str] = Counter()  # per client: how many of `waiting` are its
        self.forwarded: set[Key] = set()
        self.pending: deque[Request] = deque()
        self.pending_keys: set[Key] = set()

    def expired(self, key: Key) -> bool:
        client, timestamp = key
        return timestamp <= self.floor.get(client, -1)

    def wait(self, request: Request) -> bool:
        """A client sent us `request`: keep it until it executes, unless its client has
        `max_open` requests waiting here already. Returns whether it is waiting."""
        assert request.key not in self.executed, "an executed request is never waited for"
        if request.key not in self.waiting:
            if self._open[request.client] >= self.max_open:
                return False
            self._open[request.client] += 1
        self.waiting[request.key] = request
        return True

    def _stop_waiting(self, key: Key) -> None:
        if self.waiting.pop(key, None) is not None:
            self._open[key[0]] -= 1
            if not self._open[key[0]]:
                del self._open[key[0]]

    def execute(self, request: Request) -> bool:
        """`request` is in a batch that joins the ledger: whether it is new (to be built)."""
        self._stop_waiting(request.key)
        self.forwarded.discard(request.key)
        if request.key in self.executed or self.expired(request.key):
            return False
        self.remember(request.key, None)
        self.latest[request.client] = max(request.timestamp, self.latest.get(request.client, 0))
        return True

    def remember(self, key: Key, replied: bool | None) -> None:
        """Record `key` as executed, and whether this node replied (a restore replays the ledger through here)."""
        if key not in self.executed:
            heapq.heappush(self._timestamps.setdefault(key[0], []), key[1])
        self.executed[key] = replied

    def forget_expired(self) -> list[Key]:
        """Raise every client's floor and drop what fell below it (called at checkpoints).
        Returns the executed requests forgotten."""
        forgotten = []
        for client, latest in self.latest.items():
            floor = max(self.floor.get(client, -1), latest - self.expiry_us)
            timestamps = self._timestamps.get(client, [])
            while timestamps and (timestamps[0] <= floor or len(timestamps) > self.max_kept):
                timestamp = heapq.heappop(timestamps)
                floor = max(floor, timestamp)
                del self.executed[(client, timestamp)]
                forgotten.append((client, timestamp))
            self.floor[client] = floor
        # Requests that never got ordered (their client gave up) can never run now either.
        for key in [key for key in self.waiting if self.expired(key)]:
            self._stop_waiting(key)
        self.forwarded = {key for key in self.forwarded if not self.expired(key)}
        assert all(len(timestamps) <= self.max_kept for timestamps in self._timestamps.values())
        return forgotten

    # --- the primary's queue ----------------------------------------------

    def queue(self, request: Request) -> bool:
        if request.key in self.pending_keys:
            return False
        self.pending.append(request)
        self.pending_keys.add(request.key)
        return True

    def next_batch(self, batch_max: int, max_bytes: int) -> tuple[Request, ...]:
        """The queued requests the next PRE-PREPARE orders: up to `batch_max`, and `max_bytes`
        in all (`pbft.messages.batch_bytes`). Each fits a batch alone (MAX_REQUEST_BYTES); one
        that does not fit what room the window has left waits for it (`ReplicaSettings.window_bytes`)."""
        assert batch_max > 0 and len(self.pending) == len(self.pending_keys)
        batch: list[Request] = []
        while self.pending and len(batch) < batch_max:
            max_bytes -= self.pending[0].size
            if max_bytes < 0:
                break
            request = self.pending.popleft()
            self.pending_keys.discard(request.key)
            batch.append(request)
        return tuple(batch)

    def unqueue_all(self) -> None:
        """A view change: queued requests wait for the next primary like any other, but for
        those that executed meanwhile (in another primary's batch, or learnt by state
        transfer): waiting for one of them, a backup would suspect every primary in turn."""
        for request in self.pending:
            if request.key not in self.waiting and request.key not in self.executed and not self.expired(request.key):
                self._open[request.client] += 1  # over max_open only by what was queued already
                self.waiting[request.key] = request
        self.pending.clear()
        self.pending_keys.clear()

    def still_open(self, reissued: set[Key]) -> list[Request]:
        """Waiting requests that the new view neither re-issued nor executed."""
        return [r for key, r in self.waiting.items() if key not in reissued and key not in self.executed]
