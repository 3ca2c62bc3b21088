"""Requests to one node for what it serves to the network's clients only: build logs and artifacts.

Such a request is signed with this client's key over the path, the node's
id and the time (`shared.logrequest`). The node checks the signature against
the path exactly as it arrives, so what is signed here is the URL's raw
path, not the path it was built from.
"""

from __future__ import annotations

import time

import aiohttp
from yarl import URL

from pbft.authenticator import Authenticator
from shared.config import NodeConfig
from shared.logrequest import NodeRequest, signed_log_headers


def signed_request(
    auth: Authenticator, client_name: str, node: NodeConfig, path: str, query: dict[str, str] | None = None
) -> tuple[URL, dict[str, str]]:
    """The URL of `path` on `node`, and the headers that sign one GET of it as `client_name` now:
    a request is signed anew for each attempt, since a node serves a signature once."""
    url = URL.build(scheme=node.scheme, host=node.host, port=node.port, path=path, query=query or {})
    return url, signed_log_headers(auth.sign, client_name, NodeRequest(url.raw_path_qs, node.id), time.time())


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it grows past `max_bytes`.

    The length the node declares is not trusted either way: only what
    arrives counts. When the answer is cut off the connection is closed,
    so the node stops sending.
    """
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > max_bytes:
            response.close()
            return None
    return bytes(body)


def describe(error: BaseException) -> str:
    """An exception as one short line: reasons become HTTP reason phrases, SSE data and log lines."""
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
