"""A client's side of the handshake a node opens a /client socket with, as the tests speak it."""

from __future__ import annotations

import asyncio
import json

from pbft.handshake import Challenge, Hello
from pbft.messages import decode, encode, signed


async def say_hello(ws, client: str, node_id: int, sign) -> Hello:
    """Answer the challenge a node opens a /client socket with, as the client does; return the HELLO sent."""
    challenge = decode(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
    assert isinstance(challenge, Challenge)
    hello = signed(Hello(client, node_id, challenge.challenge), sign)
    await ws.send_str(json.dumps(encode(hello)))
    return hello
