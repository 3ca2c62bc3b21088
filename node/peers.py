"""Outbound links to the other nodes: one persistent WebSocket per peer.

Each link owns a bounded queue and a task that connects to the address the
configuration gives for that peer, reconnects with capped exponential backoff
and sends queued frames in order. Incoming traffic arrives on the peers' own
links to us (see `node.server`), so these sockets only ever send.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

logger = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0


class PeerLink:
    def __init__(self, peer_id: int, url: str, session: aiohttp.ClientSession, *, queue_limit: int = 10_000) -> None:
        self.peer_id = peer_id
        self.url = url
        self._session = session
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_limit)
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-link-{self.peer_id}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def send(self, frame: str) -> None:
        """Queue a frame; when the peer is unreachable for long, the oldest frames give way.

        PBFT tolerates lost messages (clients retransmit, checkpoints and view
        changes recover), while an unbounded queue toward a dead peer would
        grow without limit.
        """
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("link to node %d full: dropped %d frames so far", self.peer_id, self.dropped)
        self._queue.put_nowait(frame)

    async def _run(self) -> None:
        backoff_s = BACKOFF_START_S
        pending: str | None = None
        while True:
            try:
                async with self._session.ws_connect(self.url, heartbeat=10.0) as ws:
                    logger.info("connected to node %d at %s", self.peer_id, self.url)
                    backoff_s = BACKOFF_START_S
                    while True:
                        if pending is None:
                            pending = await self._queue.get()
                        await ws.send_str(pending)
                        pending = None
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, RuntimeError) as error:
                logger.debug("link to node %d down (%s); retrying in %.1fs", self.peer_id, error, backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
