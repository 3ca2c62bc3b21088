"""What the replica asks its driver to do.

The protocol core never performs I/O: each step appends effects to an outbox
and the driver carries them out in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pbft.messages import Message, Reply, Request


@dataclass(frozen=True)
class Broadcast:
    """Send `message` to every other node."""

    message: Message


@dataclass(frozen=True)
class SendTo:
    """Send `message` to one node, at the address the configuration gives it."""

    node: int
    message: Message


@dataclass(frozen=True)
class SendReply:
    """Send a signed reply to the client it names."""

    reply: Reply


@dataclass(frozen=True)
class Execute:
    """Start the builds of a committed batch; emitted strictly in sequence order.

    `requests` holds only the requests that were not executed before: a
    request ordered twice is built once.
    """

    view: int
    seq: int
    requests: tuple[Request, ...]


Effect = Union[Broadcast, SendTo, SendReply, Execute]
