"""Cancels: which builds the order has stopped, as a function of the ledger alone.

A cancel is a request like any other: `Operation.cancels` names the timestamp
of an earlier request of the same client (its target). It takes effect where
it executes in the order, the same way whether this node executed it, learnt
it by state transfer, or replays it from its store after a restart:

- a target that executed before it is cancelled there: a build of it still
  running here is stopped (`pbft.effects.StopBuild`), its verdict in the
  ledger becomes `cancelled` whatever its votes said (the votes are kept, as
  evidence of what nodes that finished first found), and a result this
  node's build reports after that point is replaced by `cancelled`;
- a target ordered after its cancel (the cancel overtook it) is never built:
  it is answered `cancelled` as it executes.

So a cancel racing a build's end gives every honest node the same verdict,
`cancelled`, never a split between nodes that finished first and nodes that
stopped. What happened first on one node — its build's end, its count of the
votes — is not the order, and decides nothing.

An entry lives as long as the client table remembers the cancel request
itself, and is forgotten with it (`forget`): a target's timestamp is below
its cancel's, so a forgotten cancel's target is below the client's floor and
can never execute. The table holds at most `max_requests_per_client` entries
per client, as the client table does.
"""

from __future__ import annotations

from typing import Iterable

from pbft.build import Result
from pbft.messages import Request

Key = tuple[str, int]  # (client, timestamp)

CANCELLED_REASON = "cancelled by the client's request"


def cancelled_result() -> Result:
    """What a cancelled build ends as, on every honest node alike."""
    return Result("cancelled", None, None, CANCELLED_REASON)


def cancel_result(target_timestamp: int) -> Result:
    """A cancel's own result: the same on every node, wherever the target was."""
    return Result("success", 0, None, f"cancel of build {target_timestamp} ordered")


def target_of(request: Request) -> Key | None:
    """The request `request` cancels, if it is a cancel that names an earlier request of its
    own client: a client can stop only its own builds, and only ones it asked for before."""
    cancels = request.operation.cancels
    if cancels is None or cancels >= request.timestamp:
        return None
    return request.client, cancels


class Cancels:
    def __init__(self) -> None:
        self.by_target: dict[Key, Key] = {}  # target -> the cancel that names it
        self._by_cancel: dict[Key, Key] = {}  # cancel -> its target

    def __contains__(self, key: Key) -> bool:
        """Whether the order cancelled `key` here (its cancel executed)."""
        return key in self.by_target

    def __len__(self) -> int:
        return len(self.by_target)

    def add(self, cancel: Request) -> Key | None:
        """`cancel` executed here: its target, now cancelled, or None if it names none it may."""
        target = target_of(cancel)
        if target is None:
            return None
        if target not in self.by_target:  # a second cancel of one target changes nothing
            self.by_target[target] = cancel.key
            self._by_cancel[cancel.key] = target
        return target

    def forget(self, keys: Iterable[Key]) -> None:
        """The client table forgot `keys` (at a checkpoint): drop the cancels among them."""
        for key in keys:
            target = self._by_cancel.pop(key, None)
            if target is not None:
                del self.by_target[target]

    def check_invariants(self) -> None:
        assert len(self.by_target) == len(self._by_cancel)
