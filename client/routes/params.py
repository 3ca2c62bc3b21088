"""What the routes read from a request, checked: the build or approval its URL names, a bounded
number, a body read within its bounds, and the configuration the client runs with now."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

from aiohttp import web

from client.access import READ, Caller
from client.deliveries import WebhookSettings
from client.intake import WebhookError
from client.keys import ACCESS_KEY, LIVE_KEY, NAME_KEY, RECORDS_KEY
from pbft.wire import NAME, MessageError
from shared.config import NetworkConfig

log = logging.getLogger(__name__)

DEFAULT_BUILDS_LIMIT = 50
MAX_BUILDS_LIMIT = 1000
# Build ids are request timestamps in microseconds, which SQLite stores as 63-bit integers.
MAX_BUILD_ID = 2**63 - 1


def config_of(request: web.Request) -> NetworkConfig:
    """The configuration the client runs with now (a reload may have replaced it)."""
    return request.app[LIVE_KEY].current


def webhook_settings(request: web.Request) -> WebhookSettings:
    return WebhookSettings.from_config(config_of(request), request.app[NAME_KEY])


def bounded_int(text: str, low: int, high: int) -> int | None:
    """The decimal integer `text` if it lies in [low, high], else None."""
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def limit_of(query: Mapping[str, str]) -> int:
    """How many entries a listing may answer (`limit`), or the 400 that says why not."""
    limit = bounded_int(query.get("limit", str(DEFAULT_BUILDS_LIMIT)), 1, MAX_BUILDS_LIMIT)
    if limit is None:
        raise web.HTTPBadRequest(reason=f"limit must be an integer from 1 to {MAX_BUILDS_LIMIT}")
    return limit


def listed_repositories(caller: Caller, query: Mapping[str, str]) -> frozenset[str] | None:
    """The repositories a listing keeps: the one its `repository` names (any well-formed name:
    one no longer configured keeps its builds), if the caller may read it, else the caller's
    (None: every one). A 400 or 403 says why not."""
    if "repository" not in query:
        return caller.repositories
    try:
        repository = NAME.read(query["repository"], "repository")
    except MessageError as error:
        raise web.HTTPBadRequest(reason=str(error)) from None
    caller.check(READ, repository)
    return frozenset({repository})


def record_of(request: web.Request) -> dict[str, Any]:
    """The build record the URL names, for a caller who may read it, or the 401/403/400/404
    that says why there is none."""
    return caller_and_record(request, READ)[1]


def caller_and_record(request: web.Request, role: str) -> tuple[Caller, dict[str, Any]]:
    """Who asks, and the build record the URL names, if the caller has `role` on its
    repository; else the 401/403/400/404 that says why not."""
    caller = request.app[ACCESS_KEY].require(request.headers, role)
    build_id = bounded_int(request.match_info["build_id"], 0, MAX_BUILD_ID)
    if build_id is None:
        raise web.HTTPBadRequest(reason="build id must be a decimal number")
    record = request.app[RECORDS_KEY].builds.get(build_id)
    if record is None:
        raise web.HTTPNotFound(reason=f"no build {build_id}")
    caller.check(role, record["repository"])
    return caller, record


async def read_capped(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, refused with 413 by its declared length or once it grows past `max_bytes`,
    and with 408 (closing the connection) unless it is complete within `timeout_s`.

    The plain call has its own, smaller cap in `client.intake`.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise WebhookError(413, f"body is larger than {max_bytes} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > max_bytes:
                    raise WebhookError(413, f"body is larger than {max_bytes} bytes")
    except TimeoutError:
        raise WebhookError(408, f"body not received within {timeout_s:g} s", close_connection=True) from None
    except ConnectionResetError:
        # aiohttp 3.14 fails the body's stream with ConnectionResetError("Connection lost")
        # when the peer closes mid-body. That is the caller's doing, not a bug here;
        # the 400 is for the access log, as nobody is left to read it.
        log.info("caller hung up after %d of %s body bytes: %s %s",
                 len(body), request.content_length or "?", request.method, request.path)
        raise WebhookError(400, "caller hung up before the body was complete") from None
    return bytes(body)
