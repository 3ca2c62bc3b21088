"""What the replica's parts read of where this node sits, and the per-sender buffers they keep.

Neutral ground, as `pbft.membership` is: parts such as `pbft.admission` and `pbft.relay` read
the view through `Seat` (which `pbft.views.Views` is) without importing the views or each
other, and keep early messages per sender with `keep_per_sender`, so that one faulty node's
flood cannot push out anybody else's.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol, TypeVar

M = TypeVar("M")


class Seat(Protocol):
    """Where this node sits in the view (`pbft.views.Views` is one)."""

    @property
    def me(self) -> int: ...

    @property
    def view(self) -> int: ...

    @property
    def changing(self) -> bool: ...

    @property
    def is_primary(self) -> bool: ...

    def primary(self, view: int | None = None) -> int: ...

    def not_entered(self, view: int) -> bool: ...


def keep_per_sender(buffers: dict[int, deque[M]], sender: int, message: M, most: int) -> None:
    """Add `message` to `sender`'s buffer of at most `most`, its oldest going first when full."""
    buffer = buffers.get(sender)
    if buffer is None:
        buffer = buffers[sender] = deque(maxlen=most)
    buffer.append(message)
