"""What the client streams, bounded: live log follows and artifact downloads.

Each holds a connection to a node and one to the caller for as long as the
caller reads, so each kind has a bound in total and a smaller one per caller
(its remote address: a proxy in front of the client makes its callers one).
A caller over its share gets 429, everyone over the total 503, both with
`Retry-After`. Downloads are the dearer kind: each spools up to a build's
artifacts on disk while their digest is checked (`client.artifacts`).

Node connections come in two pools (`NODE_SESSIONS`): streams (follows,
downloads, plain log reads, manifests) in one, sized to the bounds above
with room for the short reads, and short requests (`/network`,
`/builds/{id}/nodes`) in another, so no number of followers starves the
dashboard's view of the nodes. Requests and replies of the protocol go over
the service's own links (`client.links`), never through either pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from shared.config import ClientConfig, NetworkConfig
from shared.transfergate import TransferGate

# Plain log reads and manifests go over the stream pool too, but each for seconds only.
SHORT_READS = 64
SHORT_REQUESTS = 64  # connections of the pool for /network and /builds/{id}/nodes


@dataclass(frozen=True)
class Transfers:
    follows: TransferGate
    downloads: TransferGate

    @classmethod
    def from_config(cls, client: ClientConfig) -> "Transfers":
        return cls(
            TransferGate("log follows", client.max_follows, client.max_follows_per_caller, where="this client"),
            TransferGate("artifact downloads", client.max_downloads, client.max_downloads_per_caller,
                         where="this client"),
        )

    @property
    def stream_connections(self) -> int:
        return self.follows.total + self.downloads.total + SHORT_READS


@dataclass(frozen=True)
class NodeSessions:
    streams: aiohttp.ClientSession
    short: aiohttp.ClientSession


TRANSFERS = web.AppKey("transfers", Transfers)
NODE_SESSIONS = web.AppKey("node_sessions", NodeSessions)


def add_transfers(app: web.Application, config: NetworkConfig, client_name: str) -> None:
    """The bounds, and both pools for the app's lifetime."""
    transfers = app[TRANSFERS] = Transfers.from_config(config.client(client_name))

    async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
        ssl = config.node_ssl()
        streams = aiohttp.TCPConnector(limit=transfers.stream_connections, limit_per_host=0, ssl=ssl)
        short = aiohttp.TCPConnector(limit=SHORT_REQUESTS, limit_per_host=0, ssl=ssl)
        async with aiohttp.ClientSession(connector=streams) as s, aiohttp.ClientSession(connector=short) as t:
            app[NODE_SESSIONS] = NodeSessions(s, t)
            yield

    app.cleanup_ctx.append(sessions_ctx)


def caller(request: web.Request) -> str:
    return request.remote or "unknown"
