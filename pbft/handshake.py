"""The handshake that opens a client's connection to a node: the node's CHALLENGE, the
client's signed HELLO. Not part of the agreement protocol: it only tells a node
which connection carries which client's replies.
"""

from __future__ import annotations

import re

from pbft.wire import NAME, SEQ, Text, message, wire

CHALLENGE_BYTES = 32
_CHALLENGE = re.compile(f"[0-9a-f]{{{2 * CHALLENGE_BYTES}}}")


@message("challenge", signed=False)
class Challenge:
    """Node i's fresh random challenge: the first frame on every client connection.

    Unsigned: only the node that issued it checks it, against what it sent
    on that very connection.
    """

    challenge: str = wire(Text(_CHALLENGE))  # CHALLENGE_BYTES random bytes, hex


@message("hello")
class Hello:
    """<HELLO, c, i, x> signed by client c, answering node i's challenge x on one connection.

    It tells node i that this connection carries c's replies. Naming the node
    keeps a captured hello from subscribing a stranger anywhere else, and the
    challenge, good for one HELLO on the connection it was issued on, keeps it
    from subscribing a stranger later.
    """

    client: str = wire(NAME)
    node: int = wire(SEQ)
    challenge: str = wire(Text(_CHALLENGE))
