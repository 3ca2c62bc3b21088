"""Signed requests to a node for what only the network's clients may read.

Build output and artifacts can hold anything a repository produces, so a
node serves them only to a client of its configuration. The client signs,
with the same Ed25519 key it signs REQUESTs with, the canonical payload

    {"type": "node-request", "client": ..., "method": ..., "target": ...,
     "node": ..., "time": ..., "nonce": ...}

and sends the signature in headers. The target is the raw path with its
query, so a signature opens one resource, read one way (a plain read does
not open `?follow=1`), on one node. The time (unix seconds) makes it stop
working after `REPLAY_WINDOW_S`, and the nonce, which the node remembers
for as long (`SeenNonces`), makes it work once: the client and the nodes
talk plain HTTP, so anyone on the path can capture the headers, and a
replayed request would make the node serve, and hold in memory, the same
file again and again.
"""

from __future__ import annotations

import heapq
import secrets
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

CLIENT_HEADER = "X-Pbft-Client"
TIME_HEADER = "X-Pbft-Time"
NONCE_HEADER = "X-Pbft-Nonce"
SIGNATURE_HEADER = "X-Pbft-Signature"
# Clocks of clients and nodes may differ by this much; a signature older or newer is refused.
REPLAY_WINDOW_S = 60
# An Ed25519 signature is 64 bytes; a longer header is junk and not worth decoding.
_SIGNATURE_HEX_CHARS = 128
_MAX_TIME_DIGITS = 12
_NONCE_HEX_CHARS = 32  # 128 random bits
# Signed requests one client may make of one node within a window: the nonces a node
# remembers are bounded by this times the number of clients.
MAX_REQUESTS_PER_WINDOW = 20_000

Sign = Callable[[dict], str]
VerifyClient = Callable[[str, dict, str], bool]


@dataclass(frozen=True)
class NodeRequest:
    """What one signed request asks of a node: `method` on `target` (the raw path with its
    query, as it travels) of node `node`. The signature covers all three."""

    target: str
    node: int
    method: str = "GET"

    def payload(self, client: str, time_s: int, nonce: str) -> dict:
        """What `client` signs to ask this at `time_s`, once (`nonce`)."""
        return {
            "type": "node-request", "client": client, "method": self.method, "target": self.target,
            "node": self.node, "time": time_s, "nonce": nonce,
        }


def signed_log_headers(
    sign: Sign, client: str, request: NodeRequest, now_s: float, *, nonce: str | None = None,
) -> dict[str, str]:
    """The headers that prove to the request's node that `client` asks it, once, now."""
    time_s = int(now_s)
    nonce = secrets.token_hex(_NONCE_HEX_CHARS // 2) if nonce is None else nonce
    return {
        CLIENT_HEADER: client,
        TIME_HEADER: str(time_s),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(request.payload(client, time_s, nonce)),
    }


class SeenNonces:
    """The nonces of the signed requests a node served, each until its time leaves the window.

    Only requests whose signature holds get here, so only a configured client
    can fill it, and at most `max_per_client` nonces per client at once."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_per_client: int = MAX_REQUESTS_PER_WINDOW) -> None:
        self.window_s = window_s
        self.max_per_client = max_per_client
        self._expiry: dict[str, list[tuple[float, str]]] = {}  # per client, a min-heap of (forget at, nonce)
        self._seen: dict[str, set[str]] = {}

    def admit(self, client: str, nonce: str, time_s: int, now_s: float) -> str | None:
        """Why a request with this nonce must be refused (it was used, or too many are in the
        window), or None: then it counts as used."""
        expiry, seen = self._expiry.setdefault(client, []), self._seen.setdefault(client, set())
        while expiry and expiry[0][0] < now_s:
            seen.discard(heapq.heappop(expiry)[1])
        if nonce in seen:
            return "request already used: sign each request anew"
        if len(seen) >= self.max_per_client:
            return f"more than {self.max_per_client} signed requests of this client within {self.window_s:.0f} s"
        # Remembered for as long as its time is inside the window, whatever the clocks say.
        heapq.heappush(expiry, (max(time_s, now_s) + self.window_s, nonce))
        seen.add(nonce)
        assert len(seen) == len(expiry)
        return None

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._seen.values())


@dataclass(frozen=True)
class NodeAccess:
    """Whom a node serves signed requests: the configured `clients`, whose signatures
    `verify_client` checks, each request once when the node remembers what it `seen`."""

    verify_client: VerifyClient
    clients: Collection[str]
    seen: SeenNonces | None = None


def check_log_request(headers: Mapping[str, str], request: NodeRequest, access: NodeAccess, now_s: float) -> str | None:
    """Why the request must be refused (401), or None if a configured client signed it for this
    node, method, target and time, and (given `access.seen`) it was not used before."""
    client = headers.get(CLIENT_HEADER, "")
    time_text = headers.get(TIME_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not client or not time_text or not nonce or not signature:
        return f"signed requests carry {CLIENT_HEADER}, {TIME_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER}"
    if client not in access.clients:
        return "unknown client"
    if not (time_text.isascii() and time_text.isdecimal()) or len(time_text) > _MAX_TIME_DIGITS:
        return f"{TIME_HEADER} must be unix seconds"
    if len(nonce) != _NONCE_HEX_CHARS or not all(char in "0123456789abcdef" for char in nonce):
        return f"{NONCE_HEADER} must be {_NONCE_HEX_CHARS} lowercase hex digits"
    time_s = int(time_text)
    if abs(time_s - now_s) > REPLAY_WINDOW_S:
        return f"request time is more than {REPLAY_WINDOW_S} s away from the node's clock"
    if len(signature) > _SIGNATURE_HEX_CHARS or not access.verify_client(
        client, request.payload(client, time_s, nonce), signature
    ):
        return "bad signature"
    return access.seen.admit(client, nonce, time_s, now_s) if access.seen is not None else None
