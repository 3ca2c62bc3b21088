"""Following the network document the order made, as f+1 nodes vouch for it.

Every node signs the digest of the network document it runs into its replies and into the
CURRENT-VIEW it says at a client's handshake (shared/networkdoc.py). Once f+1 nodes have
signed a digest other than this client's, at least one honest node runs that document, so
the order made it (a change, pbft/networkchange.py, possibly handed in by another client):
the client fetches the document from one of those nodes, checks that it has that digest,
and runs it with its own local settings. A faulty node can neither make a client follow a
document (it needs f others) nor hand it a false one (the digest is checked).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

import aiohttp

from client.frames import NodeFrames
from client.noderequests import describe, read_capped
from pbft.networkchange import MAX_DOCUMENT_CHARS, document_digest
from shared.config import ConfigError, NetworkConfig
from shared.networkdoc import with_document
from shared.reload import LiveConfig

log = logging.getLogger(__name__)
ANSWER_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 2 * MAX_DOCUMENT_CHARS


class DocumentFollower:
    def __init__(self, live: LiveConfig, frames: NodeFrames, session: aiohttp.ClientSession,
                 config: NetworkConfig, spawn: Callable[[Awaitable, str], None]) -> None:
        """`spawn(coroutine, name)` runs a follow among the client's own tasks (client.background)."""
        self._live, self._frames, self._session, self._spawn = live, frames, session, spawn
        self._nodes = {node.id: node for node in config.nodes}
        self._following: set[str] = set()

    def vouched(self, digest: str) -> None:
        """f+1 nodes signed that they run the document `digest`: follow it, once at a time."""
        if digest in self._following or digest == self._live.current.digest:
            return
        self._following.add(digest)
        self._spawn(self._follow(digest), f"network document {digest[:16]}")

    async def _follow(self, digest: str) -> None:
        try:
            for node_id in self._frames.vouching(digest):
                document = await self._fetch(node_id)
                if self._live.current.digest == digest:
                    return  # taken meanwhile (the client that handed the change in runs it at its verdict)
                if document is None or document_digest(document) != digest:
                    continue
                try:
                    config = with_document(self._live.current, document, read_secrets=self._live.reads_secrets)
                except (ConfigError, OSError) as error:
                    log.critical("client cannot run network configuration %s with its own settings (%s)",
                                 digest[:16], " ".join(str(error).split())[:500])
                    return
                self._live.adopt(config, f"f+1 nodes run it (fetched from node {node_id})")
                return
            log.warning("no node that vouches for network configuration %s served it", digest[:16])
        finally:
            self._following.discard(digest)

    async def _fetch(self, node_id: int) -> dict | None:
        """Node `node_id`'s network document, or None when it serves none that is usable."""
        node = self._nodes.get(node_id)
        if node is None:
            return None
        timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S)
        try:
            async with self._session.get(node.url("/network/document"), timeout=timeout) as response:
                if response.status != 200:
                    return None
                # Read whole: one read of the stream gives only what has arrived so far.
                body = await read_capped(response, MAX_ANSWER_BYTES)
            if body is None:
                log.warning("node %d's network document is refused: it sent more than %d bytes", node_id,
                            MAX_ANSWER_BYTES)
                return None
            answer = json.loads(body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, RecursionError) as error:
            log.warning("node %d did not serve its network document: %s", node_id, describe(error))
            return None
        document = answer.get("document") if isinstance(answer, dict) else None
        return document if isinstance(document, dict) else None
