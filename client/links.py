"""Persistent WebSocket links from the client to every node.

Addresses come from the configuration only. Each link reconnects on its own
with capped exponential backoff for as long as the client runs. On every new
connection the node speaks first, with a fresh challenge; the link waits for
it and calls `on_connect` with it before reading anything else: a node routes
a client's replies only over a connection on which the client said HELLO
over that connection's challenge, and saying it is the request core's
business (client.requests).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable, Iterable

import aiohttp

from shared.config import NodeConfig
from pbft.handshake import Challenge
from pbft.messages import MessageError, decode

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
# Pings let a link notice a node that vanished without closing the TCP connection.
HEARTBEAT_S = 10.0
# A node sends its challenge as soon as the socket opens; one that does not is treated as down.
CHALLENGE_TIMEOUT_S = 10.0

OnFrame = Callable[[int, str], None]
OnConnect = Callable[[int, str], Awaitable[None]]  # node id, that connection's challenge
OnDown = Callable[[int], None]  # node id of a connection that was up and is gone


class NodeLink:
    """One node's link: a reconnect loop and the socket of the moment."""

    def __init__(self, session: aiohttp.ClientSession, node: NodeConfig) -> None:
        self.node_id = node.id
        self.url = node.url("/client")
        self._session = session
        self._socket: aiohttp.ClientWebSocketResponse | None = None

    @property
    def up(self) -> bool:
        return self._socket is not None and not self._socket.closed

    async def send(self, text: str) -> bool:
        """Send one frame if connected; return whether it was handed to the socket."""
        socket = self._socket
        if socket is None or socket.closed:
            return False
        try:
            await socket.send_str(text)
        except (aiohttp.ClientError, ConnectionError) as error:
            log.info("send to node %d failed: %s", self.node_id, error)
            return False
        return True

    async def run(self, on_frame: OnFrame, on_connect: OnConnect, on_down: OnDown = lambda node_id: None) -> None:
        """Connect, deliver frames, reconnect; returns only by cancellation. `on_down` hears
        of each connection that was up and is gone (the node stopped, crashed or cut it)."""
        backoff_s = INITIAL_BACKOFF_S
        # Report the first failed attempt of an outage, not every retry.
        outage_reported = False
        while True:
            try:
                async with self._session.ws_connect(self.url, heartbeat=HEARTBEAT_S) as socket:
                    challenge = await self._challenge(socket)
                    if challenge is not None:
                        self._socket = socket
                        backoff_s = INITIAL_BACKOFF_S
                        outage_reported = False
                        log.info("link to node %d up (%s)", self.node_id, self.url)
                        await on_connect(self.node_id, challenge)
                        await self._receive(socket, on_frame)
                log.info("link to node %d closed", self.node_id)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                level = logging.DEBUG if outage_reported else logging.INFO
                log.log(level, "link to node %d: cannot connect: %s", self.node_id, error or type(error).__name__)
                outage_reported = True
            finally:
                was_up, self._socket = self._socket is not None, None
                if was_up:
                    on_down(self.node_id)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    async def _challenge(self, socket: aiohttp.ClientWebSocketResponse) -> str | None:
        """The challenge the node opens every connection with, or None (logged) if the first frame is not one."""
        # Not receive(timeout=...): aiohttp restarts that timeout at every PING it answers. Not
        # asyncio.wait_for: on Python 3.11 it drops a cancel that meets the frame's arrival,
        # and the link, cancelled as the client stops, would connect on for ever.
        async with asyncio.timeout(CHALLENGE_TIMEOUT_S):
            frame = await socket.receive()
        if frame.type != aiohttp.WSMsgType.TEXT:
            log.warning("link to node %d: closed before its challenge (%s)", self.node_id, frame.type.name)
            return None
        try:
            message = decode(json.loads(frame.data))
        except (ValueError, MessageError, RecursionError) as error:
            log.warning("ignore_challenge_malformed from node %d: %s", self.node_id, str(error)[:200])
            return None
        if not isinstance(message, Challenge):
            log.warning("ignore_frame_not_challenge from node %d: %s", self.node_id, message.TYPE)
            return None
        return message.challenge

    async def _receive(self, socket: aiohttp.ClientWebSocketResponse, on_frame: OnFrame) -> None:
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                on_frame(self.node_id, message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                log.warning("link to node %d: %s", self.node_id, socket.exception())
            else:
                log.warning("ignore_frame_not_text from node %d: %s", self.node_id, message.type.name)


class NodeLinks:
    """The links to all nodes of a network, started and stopped together."""

    def __init__(self, session: aiohttp.ClientSession, nodes: Iterable[NodeConfig]) -> None:
        self._session = session
        self._links = {node.id: NodeLink(session, node) for node in nodes}
        self._tasks: dict[int, asyncio.Task] = {}
        self._callbacks: tuple[OnFrame, OnConnect, OnDown] | None = None

    def start(self, on_frame: OnFrame, on_connect: OnConnect, on_down: OnDown) -> None:
        self._callbacks = (on_frame, on_connect, on_down)
        for node_id in self._links:
            self._start(node_id)

    def _start(self, node_id: int) -> None:
        assert self._callbacks is not None
        task = asyncio.create_task(self._links[node_id].run(*self._callbacks), name=f"link-{node_id}")
        task.add_done_callback(_report_crash)
        self._tasks[node_id] = task

    def follow(self, nodes: Iterable[NodeConfig]) -> None:
        """Link to exactly `nodes`, the members a change through the order made: a new node,
        or one at a new address, gets a link; a node no longer named loses its own."""
        wanted = {node.id: node for node in nodes}
        for node_id in sorted(set(self._links) - set(wanted)):
            log.info("closing the link to node %d: no longer a member", node_id)
            del self._links[node_id]
            task = self._tasks.pop(node_id, None)
            if task is not None:
                task.cancel()
        for node_id, node in sorted(wanted.items()):
            link = self._links.get(node_id)
            if link is not None and link.url == node.url("/client"):
                continue
            if node_id in self._tasks:
                self._tasks.pop(node_id).cancel()
            self._links[node_id] = NodeLink(self._session, node)
            if self._callbacks is not None:
                log.info("linking to node %d at %s", node_id, node.url("/client"))
                self._start(node_id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = {}

    def connected(self) -> list[int]:
        """The nodes whose link is up now."""
        return [node_id for node_id, link in self._links.items() if link.up]

    async def send(self, node_id: int, text: str) -> bool:
        link = self._links.get(node_id)
        return False if link is None else await link.send(text)

    async def broadcast(self, text: str) -> list[int]:
        """Send to every node; return the ids it reached."""
        sent = await asyncio.gather(*(link.send(text) for link in self._links.values()))
        return [node_id for node_id, ok in zip(self._links, sent) if ok]


def _report_crash(task: asyncio.Task) -> None:
    # A link loop ends only by cancellation; anything else is a bug that
    # would otherwise silently cut the client off from a node.
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())
