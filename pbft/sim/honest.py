"""The behaviour every simulated node has unless its fault says otherwise: it sends what its
replica asks, as asked. Byzantine behaviours (`pbft.sim.byzantine`, `pbft.sim.primaries`)
rewrite those sends."""

from __future__ import annotations

from pbft.messages import Message
from pbft.sim.network import Address

Send = tuple[Address, Message, float]  # destination, message, extra delay in seconds


class Honest:
    kind = "honest"

    def admits(self, message: Message) -> bool:
        """Whether the node's replica gets to see `message` at all."""
        return True

    def observe(self, message: Message) -> list[Send]:
        """Byzantine behaviours may remember what they receive, and answer it at once; honest nodes need not."""
        return []

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        return [(dst, message, 0.0)]
