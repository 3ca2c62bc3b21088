"""`GET /logs/{client}/{timestamp}`: a build's output as this node saw it, for the network's clients only.

The executor writes a build's output to `<log_dir>/build-node{N}-{build_id}.log`
with `build_id = "{client}-{timestamp}"` (node.driver). The file may not exist
yet (the build is queued or cloning), may grow while the build runs, and ends
with a `== status ...` line. Plain requests get the file as it is now;
`?follow=1` gets server-sent events: the content so far, then whatever is
appended, then `event: end` once the status line is written. `?times=1` gets
when each line of the log began (builder.workspace.log `LineTimes`), as far as written.

Only a configured client may read (its signature, see `shared.logrequest`),
and nothing from the URL reaches a file path before it is checked against the
configured client names and a 63-bit decimal timestamp.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from builder.workspace.log import times_path
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig
from shared.crypto import Ed25519Authenticator, parse_public_key
from shared.logrequest import NodeAccess, NodeRequest, SeenNonces, check_log_request
from shared.sse import sse_comment, sse_event

log = logging.getLogger(__name__)

LOG_ROUTE = "/logs/{client}/{timestamp}"
# Build ids are request timestamps in microseconds, which every store keeps as 63-bit integers.
MAX_TIMESTAMP = 2**63 - 1
# A follower may outlast the client's own wait for a verdict by this much: the
# build can still be writing its last lines when the verdict is accepted.
FOLLOW_SLACK_S = 60.0
STATUS_LINE_PREFIX = b"== status "


@dataclass(frozen=True)
class LogSettings:
    log_dir: Path
    node_id: int
    clients: frozenset[str]
    verifier: Authenticator  # checks client signatures only; signs nothing
    follow_cap_s: float  # no stream lasts longer, whatever the build does
    poll_s: float = 0.2
    keepalive_s: float = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
    max_event_bytes: int = 64 * 1024  # file bytes per output event
    max_events_per_poll: int = 16
    seen: SeenNonces = field(default_factory=SeenNonces)  # each signed request is served once

    @classmethod
    def from_config(cls, config: NetworkConfig, node_id: int) -> "LogSettings":
        client_keys = {client.name: parse_public_key(client.public_key) for client in config.clients}
        return cls(
            log_dir=config.log_dir,
            node_id=node_id,
            clients=frozenset(client_keys),
            verifier=Ed25519Authenticator(None, {}, client_keys),
            follow_cap_s=config.protocol.client_deadline_s + FOLLOW_SLACK_S,
        )


LOG_SETTINGS = web.AppKey("build_log_settings", LogSettings)


def add_build_log_route(app: web.Application, config: NetworkConfig, node_id: int) -> None:
    app[LOG_SETTINGS] = LogSettings.from_config(config, node_id)
    app.router.add_get(LOG_ROUTE, serve_build_log)


def log_file(log_dir: Path, node_id: int, client: str, timestamp: int) -> Path:
    """Where the executor writes this build's output (see builder.executor and node.driver)."""
    return log_dir / f"build-node{node_id}-{client}-{timestamp}.log"


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def serve_build_log(request: web.Request) -> web.StreamResponse:
    settings = request.app[LOG_SETTINGS]
    # The raw path and query are what the client signed: the build and how it is read, exactly as requested.
    refusal = check_log_request(
        request.headers, NodeRequest(request.rel_url.raw_path_qs, settings.node_id, request.method),
        NodeAccess(settings.verifier.verify_client, settings.clients, settings.seen), time.time(),
    )
    if refusal is not None:
        return _error(401, refusal)
    client = request.match_info["client"]
    if client not in settings.clients:
        return _error(404, "no such client in this network")
    timestamp = _timestamp(request.match_info["timestamp"])
    if timestamp is None:
        return _error(400, f"a build timestamp is a decimal number up to {MAX_TIMESTAMP}")
    path = log_file(settings.log_dir, settings.node_id, client, timestamp)
    missing = f"node {settings.node_id} has no log for build {client}-{timestamp}"
    if request.query.get("follow") == "1":
        if not path.exists() and not _may_still_start(timestamp, settings.follow_cap_s):
            return _error(404, missing)
        return await _follow(request, settings, path)
    if request.query.get("times") == "1":
        path, missing = times_path(path), f"node {settings.node_id} has no line times for build {client}-{timestamp}"
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return _error(404, f"{missing} (yet)")
    except OSError as error:
        log.warning("node=%d cannot read build log %s: %s", settings.node_id, path.name, error)
        return _error(404, missing)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _timestamp(text: str) -> int | None:
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(MAX_TIMESTAMP)):
        return None
    value = int(text)
    return value if value <= MAX_TIMESTAMP else None


def _may_still_start(timestamp_us: int, window_s: float) -> bool:
    """Whether a build without a log may still get one: its request is recent.

    Timestamps are the client's clock in microseconds. A request older than
    the follow cap has either been built (and has a log), been learnt by state
    transfer (never built here), or been given up by its client.
    """
    return timestamp_us / 1_000_000 >= time.time() - window_s


class LogFollower:
    """What a growing log file gained since the last poll, as SSE events; blocking file I/O."""

    _HEAD_BYTES = len(STATUS_LINE_PREFIX)

    def __init__(self, path: Path, max_event_bytes: int) -> None:
        self.path = path
        self.max_event_bytes = max_event_bytes
        self.exists = False
        self._start()

    def _start(self) -> None:
        self.offset = 0
        # Incremental, so a character cut between two reads arrives whole in the second event.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line_head = b""  # the first bytes of the line still being written
        self._last_line_head = b""  # the first bytes of the last complete line

    @property
    def finished(self) -> bool:
        """The executor wrote its closing status line: nothing follows it."""
        return self._line_head == b"" and self._last_line_head.startswith(STATUS_LINE_PREFIX)

    def poll(self, max_events: int) -> list[tuple[str, str]]:
        """Up to `max_events` events of new content; a `reset` first if the file started over."""
        events: list[tuple[str, str]] = []
        try:
            with open(self.path, "rb") as file:
                self.exists = True
                if os.fstat(file.fileno()).st_size < self.offset:
                    # A node killed mid-build runs the build again and writes its log afresh.
                    self._start()
                    events.append(("reset", ""))
                file.seek(self.offset)
                while len(events) < max_events and (data := file.read(self.max_event_bytes)):
                    self.offset += len(data)
                    self._track_lines(data)
                    text = self._decoder.decode(data, final=self.finished)
                    if text:
                        events.append(("output", text))
        except FileNotFoundError:
            pass
        return events

    def _track_lines(self, data: bytes) -> None:
        *complete, rest = data.split(b"\n")
        if complete:
            last = self._line_head + complete[0] if len(complete) == 1 else complete[-1]
            self._last_line_head = last[: self._HEAD_BYTES]
            self._line_head = b""
        self._line_head = (self._line_head + rest)[: self._HEAD_BYTES]


async def _follow(request: web.Request, settings: LogSettings, path: Path) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    follower = LogFollower(path, settings.max_event_bytes)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.follow_cap_s
    last_write = loop.time()
    said_waiting = False
    try:
        while True:
            if request.transport is None or request.transport.is_closing():
                return response  # The caller went away.
            events = await asyncio.to_thread(follower.poll, settings.max_events_per_poll)
            for name, data in events:
                await response.write(sse_event(name, data))
                last_write = loop.time()
            if follower.finished:
                await response.write(sse_event("end", ""))
                break
            if loop.time() >= deadline:
                await response.write(sse_event("limit", f"stopped following after {settings.follow_cap_s:g} s"))
                break
            if not follower.exists and not said_waiting:
                await response.write(sse_comment("waiting for the build to start"))
                said_waiting = True
            if loop.time() - last_write >= settings.keepalive_s:
                await response.write(sse_comment("keepalive"))
                last_write = loop.time()
            if len(events) < settings.max_events_per_poll:
                await asyncio.sleep(settings.poll_s)
        await response.write_eof()
    except ConnectionError:
        pass  # The caller went away; the loop was all there was to stop.
    return response
