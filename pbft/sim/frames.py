"""The simulator's `frame` check: an honest node never sends a frame no peer takes.

A node's server refuses a peer's frame over `pbft.messages.MAX_FRAME_BYTES` unread. The
messages that grow with the window or with a batch are measured as they are delivered
(`scripts/bench.py frames` sizes them at full scale); a test may make the limit smaller
(`SimOptions.frame_bytes`), to fit the simulator's small batches. An honest node that sends
one larger cannot make its point: a NEW-VIEW lost so ends no view change.
"""

from __future__ import annotations

import json

from pbft.messages import Message, NewView, PrePrepare, StateTransfer, ViewChange
from pbft.sim.network import describe

SIZED = (ViewChange, NewView, StateTransfer, PrePrepare)


def frame_problem(message: Message, wire: dict, limit: int) -> str | None:
    """Why `message`, written as `wire`, is a frame no peer takes (over `limit` bytes), or None."""
    if not isinstance(message, SIZED):
        return None
    size = len(json.dumps(wire))
    return None if size <= limit else f"{describe(message)} is a frame of {size} bytes, over {limit}"
