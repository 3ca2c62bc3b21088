"""The simulator's `frame` check: an honest node never sends a frame no peer takes.

A node's server refuses a peer's frame over `pbft.messages.MAX_FRAME_BYTES` unread. The
messages that grow with the window or with a batch are measured as they are delivered
(`scripts/bench.py frames` sizes them at full scale); a test may make the limit smaller
(`SimOptions.frame_bytes`), to fit the simulator's small batches. An honest node that sends
one larger cannot make its point: a NEW-VIEW lost so ends no view change.
"""

from __future__ import annotations

import json

from pbft.messages import Message, MessageError, NewView, PrePrepare, StateTransfer, ViewChange, decode, encode
from pbft.sim.network import describe

SIZED = (ViewChange, NewView, StateTransfer, PrePrepare)


def frame_problem(message: Message, wire: dict, limit: int) -> str | None:
    """Why `message`, written as `wire`, is a frame no peer takes (over `limit` bytes), or None."""
    if not isinstance(message, SIZED):
        return None
    size = len(json.dumps(wire))
    return None if size <= limit else f"{describe(message)} is a frame of {size} bytes, over {limit}"


class FrameCodec:
    """The codec round trip a real frame takes (encode, decode, the `frame` size), once per
    message object.

    A node's broadcast is one message object delivered to each peer, and each delivery's
    round trip gave an equal message and the same verdict on its size; messages are frozen, so
    the peers now share the one decoded. An entry holds its message, so that no other object
    takes its id while the entry stays; the oldest go past `keep` entries."""

    def __init__(self, limit: int, keep: int = 4096) -> None:
        self.limit = limit
        self._keep = keep
        self._done: dict[int, tuple[Message, Message | None, str | None, MessageError | None]] = {}

    def round_trip(self, message: Message) -> tuple[Message, str | None]:
        """The message as its peer decodes it and why its frame is refused (or None); raises
        `MessageError` as the codec does."""
        done = self._done.get(id(message))
        if done is None:
            decoded, oversized, error = None, None, None
            try:
                wire = encode(message)
                decoded, oversized = decode(wire), frame_problem(message, wire, self.limit)
            except MessageError as refused:
                error = refused
            done = self._done[id(message)] = (message, decoded, oversized, error)
            if len(self._done) > self._keep:
                del self._done[next(iter(self._done))]
        _, decoded, oversized, error = done
        if error is not None:
            raise error
        return decoded, oversized
