"""Calls of a real network's client and what they answer: one HTTP call's JSON, and a verdict's
certificate checked offline, with the nodes' public keys alone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pbft.encoding import canonical
from pbft.messages import Reply, decode
from shared.config import NetworkConfig
from shared.crypto import parse_public_key, verify_bytes

# A webhook waits for a git fetch and a container on every node; the first
# build of a fresh node also clones its mirror.
WEBHOOK_TIMEOUT_S = 120


def http_json(
    method: str, url: str, body: dict | bytes | None = None, headers: dict | None = None,
    timeout_s: float = WEBHOOK_TIMEOUT_S,
) -> tuple[int, dict]:
    """The status and JSON answer of one call; a dict body is sent as JSON, bytes as they are."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    # No Content-Type of our own: urllib then sends the one `curl -d` sends
    # (application/x-www-form-urlencoded), so this is the README's curl call.
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def check_certificate(base_url: str, config: NetworkConfig, verdict: dict) -> list[Reply]:
    """Check offline, with the public keys only, that f+1 distinct nodes signed the verdict."""
    code, record = http_json("GET", f"{base_url}/builds/{verdict['build_id']}")
    assert code == 200, record
    replies = [decode(wire) for wire in record["replies"]]
    agreed = {"status": verdict["status"], "exit_code": verdict["exit_code"], "commit": verdict["commit"]}
    signers = set()
    for reply in replies:
        assert isinstance(reply, Reply), reply
        key = parse_public_key(config.node(reply.sender).public_key)
        # The agreed result also names the spec a build ran; the verdict's answer does not.
        if verify_bytes(key, canonical(reply.payload()), reply.sig) and reply.result.agreed_key()[:3] == tuple(
            agreed.values()
        ):
            signers.add(reply.sender)
    assert len(signers) >= config.f + 1, f"only {sorted(signers)} signed {agreed}: {record}"
    assert set(verdict["agreed_by"]) <= signers, (verdict["agreed_by"], sorted(signers))
    return replies
