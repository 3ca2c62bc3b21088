"""What happens to the client's builds, as one stream of events that every observer reads.

The build records (client.recorder), the commit statuses (client.statuses),
the notifications (client.notifications) and the metrics (client.metrics)
all learn of a build the same way: the request core and the verbs publish
an event, and each observer takes what it needs from it. So a verdict is
recorded, posted, notified and counted from one event, never written by the
code that reached it while the others are told about it.

Observers are called synchronously on the build's path, the critical ones
first, each kind in the order it subscribed: they must not block. A critical
observer's failure is the build's (the records: a verdict that could not be
recorded must not be answered); any other's is logged, and the build goes on.
A verdict reaches the others only once the records have it on disk
(`publish_once_durable`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from client.commitinfo import CommitInfo
from client.outcome import Verdict
from pbft.build import Operation
from pbft.messages import Reply, Request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where a new build comes from, beyond its request: the build it runs again, the matrix
    build it is one combination of, or what a forge's delivery said of its commit."""

    rerun_of: int | None = None
    matrix_of: int | None = None
    commit_info: CommitInfo | None = None


@dataclass(frozen=True)
class Requested:
    """A build's request is signed and about to leave: from here on it is the client's to follow."""

    request: Request
    submitted_at: float
    origin: Origin = Origin()


@dataclass(frozen=True)
class Submitted:
    """A build's request went to the primary (or to every node, if the primary's link is down)."""

    build_id: str
    operation: Operation


@dataclass(frozen=True)
class HeldForApproval:
    """A fork's pull request waits, unsent, until someone approves it."""

    approval_id: str
    operation: Operation


@dataclass(frozen=True)
class Finished:
    """A build has its verdict, or the client stopped waiting for one."""

    operation: Operation
    verdict: Verdict


@dataclass(frozen=True)
class OrderCancelled:
    """A build's cancel executed after the build's own verdict came: the order made it
    `cancelled` on every node (pbft.cancels), and `verdict` says so."""

    operation: Operation
    verdict: Verdict


@dataclass(frozen=True)
class Superseding:
    """f+1 nodes say build `build_id` waits for the client's older build `older` of its
    concurrency group, whose spec has a newer build cancel the older (`cancel_in_progress`)."""

    build_id: int
    older: int
    operation: Operation


@dataclass(frozen=True)
class LateReply:
    """A node's signed reply came after its build's verdict (its signature is checked)."""

    reply: Reply
    at_s: float


@dataclass(frozen=True)
class Resumed:
    """A restarted client follows `build_ids` again; `matrices`: the records of the matrix
    builds whose combinations are among them."""

    build_ids: list[int]
    matrices: list[dict]


@dataclass(frozen=True)
class GivenUp:
    """A restarted client follows only its newest `followed` builds without a verdict: those
    older than build `before` end `timeout`."""

    before: int
    followed: int


Event = (Requested | Submitted | HeldForApproval | Finished | OrderCancelled | Superseding | LateReply | Resumed
         | GivenUp)
Observer = Callable[[Event], None]


class EventStream:
    def __init__(self) -> None:
        self._observers: list[tuple[Observer, bool]] = []

    def subscribe(self, observer: Observer, *, critical: bool = False) -> None:
        self._observers.append((observer, critical))

    def publish(self, event: Event) -> None:
        self._tell(event, critical=True)
        self._tell(event, critical=False)

    async def publish_once_durable(self, event: Event, durable: Callable[[], Awaitable[None]]) -> None:
        """`event` to the critical observers (the records, which write it), then, once `durable()`
        has committed what they wrote, to the others: no status or notification tells the
        world of a verdict that a crash of the client could still take from its records."""
        self._tell(event, critical=True)
        await durable()
        self._tell(event, critical=False)

    def _tell(self, event: Event, *, critical: bool) -> None:
        for observer, its_critical in self._observers:
            if its_critical != critical:
                continue
            if critical:
                observer(event)
                continue
            # Reporting on a build must never fail the build or its webhook.
            try:
                observer(event)
            except Exception:
                log.exception("observer %s failed on %s", _name(observer), type(event).__name__)


def _name(observer: Observer) -> str:
    owner = getattr(observer, "__self__", observer)
    return type(owner).__name__
