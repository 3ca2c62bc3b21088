"""Outbound links to the other nodes: one persistent WebSocket per peer.

Each link owns a bounded queue and a task that connects to the address the
configuration gives for that peer, reconnects with capped exponential backoff
and sends queued frames in order. Protocol traffic from a peer arrives on the
peer's own link to us (see `node.server`), so nothing useful ever arrives on
these sockets; but each one is still read, concurrently with sending, because
reading is what answers the far end's heartbeat PINGs and what notices that
the far end closed. An unread socket looks dead to its server after one
heartbeat period and is torn down, however healthy the peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

import aiohttp

from pbft.reach import Reach
from shared.config_build import PEER_HEARTBEAT_S as HEARTBEAT_S

logger = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
# At most this long between two tries: a peer that is back is linked to again (and no
# longer counted unreachable, `pbft.reach`) within about that. A try toward a dead port
# costs one refused connection.
BACKOFF_MAX_S = 1.0
# A frame that waited longer than this for its peer is stale: delivering a backlog of
# old votes to a node that was down would make it execute (and build) batches the
# others finished long ago, instead of catching up by state transfer. PBFT recovers
# from the loss (clients retransmit, VIEW-CHANGEs repeat, checkpoints prove state).
MAX_FRAME_AGE_S = 5.0
# Frames queued for a peer go out together, one per line of one WebSocket message (JSON
# frames hold no raw newline), at most this many and about this many characters (ASCII:
# json.dumps escapes the rest), far below what a node's server takes in one message
# (`pbft.messages.MAX_FRAME_BYTES`). A turn's votes to one peer then cost one send and
# one read instead of one each; the peer still charges and steps each frame on its own.
MAX_FRAMES_PER_MESSAGE = 64
MAX_MESSAGE_CHARS = 1024 * 1024


class PeerLink:
    def __init__(
        self,
        peer_id: int,
        url: str,
        session: aiohttp.ClientSession,
        *,
        queue_limit: int = 10_000,
        heartbeat_s: float = HEARTBEAT_S,
        max_age_s: float = MAX_FRAME_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peer_id = peer_id
        # Told each time the link connects (True) or is lost (False); PeerLinks feeds its `reach`.
        self.on_state: Callable[[PeerLink, bool], None] = lambda link, up: None
        self.url = url
        self._session = session
        self._heartbeat_s = heartbeat_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(maxsize=queue_limit)
        # Frames taken from the queue but not yet handed to a socket, as one message; it
        # goes out first on the next connection if this one ends under it.
        self._pending: str | None = None
        # A frame taken from the queue that did not fit the message before: the next one starts with it.
        self._carried: tuple[float, str] | None = None
        self._task: asyncio.Task | None = None
        self.dropped = 0
        self.expired = 0  # frames dropped for waiting longer than max_age_s
        self.connected = False
        self.connections = 0

    @property
    def reconnects(self) -> int:
        """Connections made after the first: each one means the link was lost once."""
        return max(self.connections - 1, 0)

    def status(self) -> dict:
        return {"connected": self.connected, "reconnects": self.reconnects, "dropped": self.dropped,
                "expired": self.expired}

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
        self._queue.put_nowait((self._clock(), frame))

    async def _run(self) -> None:
        backoff_s = BACKOFF_START_S
        while True:
            try:
                async with self._session.ws_connect(self.url, heartbeat=self._heartbeat_s) as ws:
                    self.connections += 1
                    self.connected = True
                    self.on_state(self, True)
                    logger.info("connected to node %d at %s (reconnects: %d)", self.peer_id, self.url, self.reconnects)
                    backoff_s = BACKOFF_START_S
                    await self._serve(ws)
                logger.info("link to node %d closed", self.peer_id)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, RuntimeError) as error:
                logger.debug("link to node %d down (%s); retrying in %.1fs", self.peer_id, error, backoff_s)
            finally:
                self.connected = False
                self.on_state(self, False)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send and read on one connection until either side of it ends."""
        tasks = {asyncio.create_task(self._send_queued(ws)), asyncio.create_task(self._read(ws))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # a send that failed ends the connection with its error

    async def _send_queued(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            if self._pending is None:
                self._pending = self._message(await self._next())
                if self._pending is None:
                    continue
            await ws.send_str(self._pending)
            self._pending = None

    async def _next(self) -> tuple[float, str]:
        carried, self._carried = self._carried, None
        return carried if carried is not None else await self._queue.get()

    def _message(self, first: tuple[float, str]) -> str | None:
        """`first` and the frames queued behind it, one per line, fresh ones only; None if none is."""
        frames: list[str] = []
        size = 0
        item: tuple[float, str] | None = first
        while item is not None:
            queued_at, frame = item
            if self._clock() - queued_at > self._max_age_s:
                self.expired += 1
            elif frames and size + len(frame) >= MAX_MESSAGE_CHARS:
                self._carried = item
                break
            else:
                frames.append(frame)
                size += len(frame) + 1
            if len(frames) >= MAX_FRAMES_PER_MESSAGE or self._queue.empty():
                break
            item = self._queue.get_nowait()
        return "\n".join(frames) if frames else None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Consume the socket until it closes; aiohttp answers PINGs as it reads.

        A peer has no reason to send data frames here, so any it sends are ignored.
        """
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.ERROR:
                logger.info("link to node %d: %s", self.peer_id, ws.exception())


class PeerLinks:
    """This node's outbound links, following the network's membership (`pbft.epochs`).

    A link is open to every node the network document names and to every member of the
    epoch the replica works in and of the one about to begin: a node the order removed stays
    linked until the epoch without it begins, so that the checkpoint which ends its epoch is
    made with it. A node whose address changed gets a new link. `wrap` makes each link the
    sender the driver uses (a Byzantine behaviour may stand between them, `node.byzantine`),
    kept in `senders`, the very dict the driver sends through. What the links see feeds
    `reach` (`pbft.reach`): the peers this node cannot reach, which the driver tells the replica.
    """

    def __init__(self, own_id: int, session: aiohttp.ClientSession, *, heartbeat_s: float = HEARTBEAT_S,
                 wrap: Callable[[int, PeerLink], object] = lambda peer_id, link: link) -> None:
        self.own_id = own_id
        self._session = session
        self._heartbeat_s = heartbeat_s
        self._wrap = wrap
        self.links: dict[int, PeerLink] = {}
        self.senders: dict = {}
        self._started = False
        self._closing: set[asyncio.Task] = set()
        self.reach = Reach()

    def follow(self, urls: dict[int, str], keep: Iterable[int] = ()) -> None:
        """Link to each node of `urls` (id -> its /peer URL); keep the links to `keep` even
        when `urls` no longer names them; close the rest."""
        wanted = set(urls) | set(keep)
        wanted.discard(self.own_id)
        for peer_id in sorted(set(self.links) - wanted):
            self._close(peer_id, "no longer a member")
        for peer_id, url in sorted(urls.items()):
            if peer_id == self.own_id:
                continue
            link = self.links.get(peer_id)
            if link is not None and link.url == url:
                continue
            if link is not None:
                self._close(peer_id, f"moved to {url}")
            self.links[peer_id] = link = PeerLink(peer_id, url, self._session, heartbeat_s=self._heartbeat_s)
            link.on_state = self._link_state
            self.senders[peer_id] = self._wrap(peer_id, link)
            if self._started:
                logger.info("linking to node %d at %s", peer_id, url)
                link.start()

    def _link_state(self, link: PeerLink, up: bool) -> None:
        if self.links.get(link.peer_id) is link:  # not a closed link's last word
            self.reach.link(link.peer_id, up, time.monotonic())

    def start(self) -> None:
        self._started = True
        for link in self.links.values():
            link.start()

    async def close(self) -> None:
        for peer_id in list(self.links):
            self._close(peer_id, "")
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _close(self, peer_id: int, why: str) -> None:
        link = self.links.pop(peer_id)
        self.senders.pop(peer_id, None)
        self.reach.forget(peer_id)
        if why:
            logger.info("closing the link to node %d: %s", peer_id, why)
        task = asyncio.ensure_future(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
