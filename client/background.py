"""The tasks the client runs on its own: builds followed after their caller was answered,
retransmissions when a link falls.

They are held here so that none is garbage-collected while it runs, and
`close` waits for them, so that the builds' records are written before the
records' file closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Awaitable, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def close(self, grace_s: float) -> None:
        """Wait up to `grace_s` for the tasks to end, then cancel those still running."""
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in stuck:
                task.cancel()

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())
