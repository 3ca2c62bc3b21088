"""Deliveries: one build per forge delivery (or schedule slot), decided by the order.

A forge may deliver one webhook to two clients of the network (both behind
one address, or a redelivery that reaches the other), and two clients may
fire one schedule's slot. Each client signs its own request for it, with
`Operation.delivery` naming what it answers (`<forge>:<delivery id>`,
`schedule:<name>@<slot>`). Where such a request executes, it is the first of
its (repository, delivery) or a duplicate, by the order alone: a duplicate
is answered `skipped` (`duplicate_result`) on every honest node and never
built, whichever client signed it and whatever either client remembers.

An entry lives while the client table remembers any request that names it,
and is forgotten with the last of them (`forget`). So whether a request is a
duplicate depends only on the requests above their clients' floors, which
is what a restart replays from the ledger (`Replica.restore`): a node that
restarted, one that learnt the batches by state transfer and one that
executed them decide the next delivery alike. A duplicate's own answer is
in its reply, stored as it executed. The table holds no more requests than
the client table does.
"""

from __future__ import annotations

from typing import Iterable

from pbft.build import Operation, Result
from pbft.messages import Request

Key = tuple[str, int]  # (client, timestamp)
Delivery = tuple[str, str]  # (repository, delivery)


def duplicate_result(delivery: str) -> Result:
    """A duplicate's answer, the same on every node: it names the delivery, not the request
    that built it, which a node that restarted after that request was forgotten cannot know."""
    return Result("skipped", None, None, f"delivery {delivery} was ordered before: it builds once")


def is_duplicate(operation: Operation, result: Result) -> bool:
    """Whether `result` is the order's answer to a request of a delivery it took before: the
    delivery's build, signed by whichever client, is the one to report."""
    return (operation.delivery is not None and result.status == "skipped" and result.commit is None
            and result.reason == duplicate_result(operation.delivery).reason)


def delivery_of(request: Request) -> Delivery | None:
    """The (repository, delivery) a build names; None for a request that names none, and for a
    cancel or a network change, which build nothing."""
    operation = request.operation
    if operation.delivery is None or operation.cancels is not None or operation.change is not None:
        return None
    return operation.repository, operation.delivery


class Deliveries:
    def __init__(self) -> None:
        self._keys: dict[Delivery, set[Key]] = {}  # delivery -> the remembered requests that name it
        self._of: dict[Key, Delivery] = {}

    def __len__(self) -> int:
        return len(self._of)

    def add(self, request: Request) -> bool:
        """`request` executed here: whether it is a duplicate of a delivery the order took before."""
        delivery = delivery_of(request)
        if delivery is None or request.key in self._of:
            return False
        keys = self._keys.setdefault(delivery, set())
        duplicate = bool(keys)
        keys.add(request.key)
        self._of[request.key] = delivery
        return duplicate

    def forget(self, keys: Iterable[Key]) -> None:
        """The client table forgot `keys` (at a checkpoint): a delivery none of them names any more
        builds again, were it delivered again."""
        for key in keys:
            delivery = self._of.pop(key, None)
            if delivery is not None:
                named = self._keys[delivery]
                named.discard(key)
                if not named:
                    del self._keys[delivery]

    def check_invariants(self) -> None:
        assert sum(map(len, self._keys.values())) == len(self._of)
