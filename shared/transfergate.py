"""Long transfers (log follows, artifact downloads) on a node or a client: admitted, then sent.

Each such transfer holds connections, a file and a place in the event loop for
as long as its caller reads, so each kind is bounded in total and per caller.
A caller over its share gets 429, everyone over the total 503; both say
`Retry-After`. A file goes out a chunk at a time, and a caller that takes no
chunk for a while is cut off, so it cannot keep its place for ever.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from aiohttp import web

RETRY_AFTER_S = 5
CHUNK_BYTES = 256 * 1024
STALL_S = 60.0  # a caller that takes no chunk for this long is cut off


class TransferGate:
    """Admission of one kind of transfer: at most `total` at once, `per_caller` of them from one caller."""

    def __init__(self, kind: str, total: int, per_caller: int, *, where: str) -> None:
        assert total > 0 and per_caller > 0
        self.kind = kind
        self.total = total
        self.per_caller = per_caller
        self.where = where  # "client", "node 2": named in refusals
        self.open: Counter[str] = Counter()
        self.running = 0

    @contextmanager
    def admit(self, caller: str) -> Iterator[None]:
        """Hold one place for `caller` while the block runs; 429/503 with Retry-After if there is none."""
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if self.open[caller] >= self.per_caller:
            raise web.HTTPTooManyRequests(
                reason=f"{self.per_caller} {self.kind} at once per caller: this caller has them all; retry later",
                headers=headers,
            )
        if self.running >= self.total:
            raise web.HTTPServiceUnavailable(
                reason=f"{self.total} {self.kind} at once on {self.where}: all taken; retry later", headers=headers
            )
        self.open[caller] += 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.open[caller] -= 1
            if not self.open[caller]:
                del self.open[caller]  # bounded by the callers that have a transfer open


async def send_file(request: web.Request, response: web.StreamResponse, file: BinaryIO) -> bool:
    """Prepare `response` and send `file` through it, from where it stands, a chunk at a time.
    False if the caller went away or took no chunk for STALL_S (its connection is then aborted)."""
    await response.prepare(request)
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            async with asyncio.timeout(STALL_S):
                await response.write(chunk)
        await response.write_eof()
    except (ConnectionError, TimeoutError):
        if request.transport is not None:
            request.transport.abort()
        return False
    return True
