"""Signed requests for a node's build logs: only the network's clients may read them.

Build output can hold anything a repository prints, so a node serves it only
to a client of its configuration. The client signs, with the same Ed25519 key
it signs REQUESTs with, the canonical payload

    {"type": "log-request", "client": ..., "path": ..., "node": ..., "time": ...}

and sends the signature in headers. Naming the path and the node means a
signature opens one log on one node; naming the time (unix seconds) means it
stops working after `REPLAY_WINDOW_S`. Within the window a captured request
can be repeated, which only reads the same log again.
"""

from __future__ import annotations

from typing import Callable, Collection, Mapping

CLIENT_HEADER = "X-Pbft-Client"
TIME_HEADER = "X-Pbft-Time"
SIGNATURE_HEADER = "X-Pbft-Signature"
# Clocks of clients and nodes may differ by this much; a signature older or newer is refused.
REPLAY_WINDOW_S = 60
# An Ed25519 signature is 64 bytes; a longer header is junk and not worth decoding.
_SIGNATURE_HEX_CHARS = 128
_MAX_TIME_DIGITS = 12

Sign = Callable[[dict], str]
VerifyClient = Callable[[str, dict, str], bool]


def log_request_payload(client: str, path: str, node: int, time_s: int) -> dict:
    return {"type": "log-request", "client": client, "path": path, "node": node, "time": time_s}


def signed_log_headers(sign: Sign, client: str, path: str, node: int, now_s: float) -> dict[str, str]:
    """The headers that prove to node `node` that `client` asks for `path` now."""
    time_s = int(now_s)
    return {
        CLIENT_HEADER: client,
        TIME_HEADER: str(time_s),
        SIGNATURE_HEADER: sign(log_request_payload(client, path, node, time_s)),
    }


def check_log_request(
    headers: Mapping[str, str],
    path: str,
    node: int,
    verify_client: VerifyClient,
    clients: Collection[str],
    now_s: float,
) -> str | None:
    """Why the request must be refused (401), or None if a configured client signed it for this node, path and time."""
    client = headers.get(CLIENT_HEADER, "")
    time_text = headers.get(TIME_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not client or not time_text or not signature:
        return f"signed log requests carry {CLIENT_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER}"
    if client not in clients:
        return "unknown client"
    if not (time_text.isascii() and time_text.isdecimal()) or len(time_text) > _MAX_TIME_DIGITS:
        return f"{TIME_HEADER} must be unix seconds"
    time_s = int(time_text)
    if abs(time_s - now_s) > REPLAY_WINDOW_S:
        return f"request time is more than {REPLAY_WINDOW_S} s away from the node's clock"
    if len(signature) > _SIGNATURE_HEX_CHARS or not verify_client(
        client, log_request_payload(client, path, node, time_s), signature
    ):
        return "bad signature"
    return None
