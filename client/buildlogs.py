"""`GET /builds/{id}/log?node=N`: one node's output for a build, fetched from that node.

Nodes serve build output only to the network's clients, on requests signed
with the client's key (`shared.logrequest`); this module signs, fetches and
passes the answer on. One request names one node and the answer is that
node's output alone, labelled with the node: up to f nodes may lie about a
build, so outputs are never merged or picked between here — the verdict is
what f+1 nodes agree on, the output is only what one node says it saw.

Plain requests get the node's file as text, `?times=1` when each of its lines
began (as the node says: builder.workspace.log `LineTimes`). `?follow=1` (or `Accept:
text/event-stream`) gets server-sent events: first `event: node` with the
node id, then the node's `output`, `reset`, `end` and `limit` events as it
sends them, re-framed here so a node cannot add events of other kinds (such
as a second `node` label); an `error` event says the node's stream broke off.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Mapping

import aiohttp
from aiohttp import web
from yarl import URL

from client.noderequests import describe, signed_request
from client.transfers import NODE_SESSIONS, TRANSFERS, caller
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig, NodeConfig
from shared.sse import SseParser, SseTooLarge, sse_comment, sse_event

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
PLAIN_TIMEOUT_S = 30.0
# Nodes send a keepalive every 15 s; a follow stream silent for four times as long is dead.
FOLLOW_READ_TIMEOUT_S = 60.0
# Nodes stop following at their own cap; this client waits a little longer before it gives up on one.
FOLLOW_CAP_SLACK_S = 30.0
# Node follow streams outlast the client's wait for a verdict by this much (as node.buildlogs does).
NODE_FOLLOW_SLACK_S = 60.0
# What a node adds to the capped build output: a header line, notes and the status line.
LOG_FRAME_BYTES = 1024 * 1024
# A log's line times are at most this long (builder.workspace.log TIMES_CAP_BYTES, which the client cannot import).
MAX_TIMES_BYTES = 1024 * 1024
FORWARDED_EVENTS = frozenset({"output", "reset", "end", "limit"})
LAST_EVENTS = frozenset({"end", "limit"})
NODE_HEADER = "X-Pbft-Node"


@dataclass(frozen=True)
class LogProxySettings:
    client_name: str
    nodes: Mapping[int, NodeConfig]
    auth: Authenticator  # signs as this client
    follow_cap_s: float
    max_plain_bytes: int  # a node sending more than a capped build log is refused

    @classmethod
    def from_config(cls, config: NetworkConfig, client_name: str, auth: Authenticator) -> "LogProxySettings":
        return cls(
            client_name=client_name,
            nodes={node.id: node for node in config.nodes},
            auth=auth,
            follow_cap_s=config.protocol.client_deadline_s + NODE_FOLLOW_SLACK_S + FOLLOW_CAP_SLACK_S,
            max_plain_bytes=config.build.output_cap_bytes + LOG_FRAME_BYTES,
        )


LOG_PROXY = web.AppKey("build_log_proxy", LogProxySettings)


def add_build_log_proxy(app: web.Application, config: NetworkConfig, client_name: str, auth: Authenticator) -> None:
    """What `serve_build_log` needs besides `client.transfers`: the settings."""
    app[LOG_PROXY] = LogProxySettings.from_config(config, client_name, auth)


def build_log_links(app: web.Application, build_id: str) -> dict[str, str]:
    """Where each node's output for `build_id` is, as URLs relative to this client."""
    return {str(node_id): f"/builds/{build_id}/log?node={node_id}" for node_id in sorted(app[LOG_PROXY].nodes)}


async def serve_build_log(request: web.Request, record: dict) -> web.StreamResponse:
    """One node's output for the build `record`; bad input raises an HTTPException with the reason."""
    settings = request.app[LOG_PROXY]
    node = _node(request, settings)
    build_id = record["build_id"]
    # Under the client that signed it: with several clients, another may have (client.ledgerimport).
    path = f"/logs/{record['client']}/{build_id}"
    follow = request.query.get("follow") in ("1", "true") or "text/event-stream" in request.headers.get("Accept", "")
    times = not follow and request.query.get("times") == "1"
    query = {"follow": "1"} if follow else {"times": "1"} if times else None
    url, headers = signed_request(settings.auth, settings.client_name, node, path, query)
    node_log = _NodeLog(request.app[NODE_SESSIONS].streams, url, headers, node.id, build_id)
    if follow:
        with request.app[TRANSFERS].follows.admit(caller(request)):
            return await _follow(request, node_log, settings.follow_cap_s)
    return await _plain(request, node_log, MAX_TIMES_BYTES if times else settings.max_plain_bytes)


def _node(request: web.Request, settings: LogProxySettings) -> NodeConfig:
    text = request.query.get("node", "")
    node_id = int(text) if text.isascii() and text.isdecimal() and len(text) <= 6 else None
    if node_id not in settings.nodes:
        known = ", ".join(str(node_id) for node_id in sorted(settings.nodes))
        raise web.HTTPBadRequest(reason=f"node must be one of {known}: each node's output is shown on its own")
    return settings.nodes[node_id]


@dataclass(frozen=True)
class _NodeLog:
    """One node's log of one build, and the signed request for it."""

    session: aiohttp.ClientSession
    url: URL
    headers: dict
    node_id: int
    build_id: str

    async def get(self, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The node's answer, or the 502 that says it could not be reached."""
        try:
            return await self.session.get(self.url, headers=self.headers, timeout=timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise web.HTTPBadGateway(reason=f"node {self.node_id} unreachable: {describe(error)}") from None


async def _plain(request: web.Request, node_log: _NodeLog, max_bytes: int) -> web.StreamResponse:
    """The node's log file passed on as it comes, a chunk at a time: a log is one node's word, with
    nothing to check before it is shown, so none is held whole. A node that sends more than
    `max_bytes`, or breaks off, has the caller's connection cut, which the caller sees as an
    incomplete answer (the declared length, when the node sent one, is not met)."""
    node_id, build_id = node_log.node_id, node_log.build_id
    upstream = await node_log.get(aiohttp.ClientTimeout(total=PLAIN_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
    try:
        _check_answer(upstream, node_id, build_id)
        if upstream.content_length is not None and upstream.content_length > max_bytes:
            raise web.HTTPBadGateway(reason=f"node {node_id} sent more than {max_bytes} bytes of log")
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8", NODE_HEADER: str(node_id)})
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in upstream.content.iter_any():
                sent += len(chunk)
                if sent > max_bytes:
                    raise aiohttp.ClientPayloadError(f"more than {max_bytes} bytes of log")
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.warning("log of build %s from node %d cut off: %s", build_id, node_id, describe(error))
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            pass  # The caller went away.
        return response
    finally:
        upstream.close()


async def _follow(request: web.Request, node_log: _NodeLog, cap_s: float) -> web.StreamResponse:
    node_id = node_log.node_id
    upstream = await node_log.get(
        aiohttp.ClientTimeout(total=cap_s, connect=CONNECT_TIMEOUT_S, sock_read=FOLLOW_READ_TIMEOUT_S))
    try:
        _check_answer(upstream, node_id, node_log.build_id)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                     NODE_HEADER: str(node_id)}
        )
        await response.prepare(request)
        try:
            await response.write(sse_event("node", str(node_id)))
            problem = await _pass_events(upstream, response, node_id)
            if problem is not None:
                await response.write(sse_event("error", problem))
            await response.write_eof()
        except ConnectionError:
            pass  # The caller went away: closing the node's stream below is all that is left.
        return response
    finally:
        # Closes the connection, so the node stops following too.
        upstream.close()


async def _pass_events(upstream: aiohttp.ClientResponse, response: web.StreamResponse, node_id: int) -> str | None:
    """Re-frame the node's events to the caller until its last one; what went wrong if the stream broke off.

    Writing to the caller may raise ConnectionError: the caller went away.
    """
    parser = SseParser()
    while True:
        try:
            chunk = await upstream.content.readany()
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            return f"node {node_id}'s stream broke off: {describe(error)}"
        if not chunk:
            return f"node {node_id}'s stream ended before the build's end"
        try:
            events = parser.feed(chunk)
        except SseTooLarge as error:
            return f"node {node_id} sent {error}"
        for event in events:
            if event.name is None:
                await response.write(sse_comment(event.data))
            elif event.name in FORWARDED_EVENTS:
                await response.write(sse_event(event.name, event.data))
                if event.name in LAST_EVENTS:
                    return None


def _check_answer(upstream: aiohttp.ClientResponse, node_id: int, build_id: str) -> None:
    if upstream.status == 404:
        raise web.HTTPNotFound(reason=f"node {node_id} has no log for build {build_id} (yet)")
    if upstream.status == 401:
        raise web.HTTPBadGateway(reason=f"node {node_id} refused this client's signed log request")
    if upstream.status != 200:
        raise web.HTTPBadGateway(reason=f"node {node_id} answered {upstream.status}")
