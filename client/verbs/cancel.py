"""The verb cancel: ask the network to stop a build, and what the cancel's verdict does to the build.

A cancel is a request ordered like any other (pbft.cancels): where it
executes, every node stops its target at that point of the order, answers a
target not yet executed `cancelled`, and makes the target's verdict
`cancelled` in its ledger. So the client's word on a build with a cancel on
its way waits for the cancel's verdict (`CancelBook.wait`): replies split
between nodes that finished first and nodes that stopped are never answered
as a dispute. Once the cancel has f+1 agreeing replies, the build is
`cancelled`, with a certificate of its own when f+1 of its own replies say
so, and the cancel's otherwise, however its replies went; a build whose own
verdict came first is overruled (client.events `OrderCancelled`), as the
nodes' ledgers are.

A newer push to a repository with `auto_cancel` supersedes the builds of
its ref still without a verdict (client.deliveries): each gets a cancel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from client.events import EventStream, OrderCancelled
from client.outcome import Accepted, Verdict
from client.requests import Outstanding, RequestCore
from client.tables.builds import Builds
from pbft.build import Actor, Operation, Result
from pbft.cancels import cancelled_result
from pbft.wire import decode_struct

log = logging.getLogger(__name__)


class CancelBook:
    """The cancels on their way, by the build each targets, and the builds their verdicts decided."""

    def __init__(self, core: RequestCore, builds: Builds, events: EventStream) -> None:
        self._core = core
        self.client_name = core.name
        self._builds = builds
        self._events = events
        # Set once the target's cancel has its verdict; a target's own verdict waits for it.
        self._on_their_way: dict[int, asyncio.Event] = {}
        # The verdicts of cancels that executed while their targets were still followed.
        self._deciding: dict[int, Verdict] = {}

    def expect(self, target: int) -> None:
        """A cancel of build `target` is on its way."""
        self._on_their_way.setdefault(target, asyncio.Event())

    def expecting(self, target: int) -> bool:
        """Whether a cancel of build `target` is on its way."""
        return target in self._on_their_way

    def deciding(self, build_id: int) -> Verdict | None:
        """The verdict of the cancel that made build `build_id` cancelled, while it is followed."""
        return self._deciding.get(build_id)

    def take(self, build_id: int) -> Verdict | None:
        """`deciding`, for the build's own verdict: it is no longer followed from here."""
        return self._deciding.pop(build_id, None)

    async def wait(self, build_id: int, until_s: float) -> None:
        """Until the cancel on its way to build `build_id`, if any, has its verdict (at the latest
        `until_s`, on the monotonic clock): if it executed, the build is `cancelled` on every
        node, however its own replies went."""
        cancelled = self._on_their_way.get(build_id)
        if cancelled is None or build_id in self._deciding or self._core.closing:
            return
        try:
            async with asyncio.timeout(max(0.0, until_s - time.monotonic())):
                await cancelled.wait()
        except asyncio.TimeoutError:
            pass

    def decided(self, target: int, verdict: Verdict) -> None:
        """The cancel of build `target` has its verdict. If it executed (f+1 nodes agree), the
        order made `target` cancelled on every node (pbft.cancels): its record says so, even
        if its own verdict came first, as the nodes' ledgers do."""
        on_its_way = self._on_their_way.pop(target, None)
        match verdict.outcome:
            case Accepted(result=Result(status="success")):
                outstanding = self._core.outstanding(target)
                if outstanding is not None:
                    self._deciding[target] = verdict
                    outstanding.done.set()
                else:
                    self._overrule(target, verdict)
        if on_its_way is not None:
            on_its_way.set()

    def _overrule(self, target: int, cancel: Verdict) -> None:
        """A build whose own verdict came before its cancel's, which the order overrides."""
        record = self._builds.get(target)
        if record is None or record["state"] == "pending" or (record["result"] or {}).get("status") == "cancelled":
            return
        agreed_by = cancelled_certificate([reply["sender"] for reply in record["replies"] or []
                                           if (reply.get("result") or {}).get("status") == "cancelled"], self._core.f)
        log.warning("build %d: its cancel %s was ordered after its verdict (%s): cancelled on every node",
                    target, cancel.build_id, record["state"])
        operation = decode_struct(Operation, record["request"]["operation"])
        overruled = Accepted(cancelled_result(), agreed_by, cancelled_by=cancel.build_id)
        self._events.publish(OrderCancelled(operation, Verdict(str(target), overruled, [], record["elapsed_ms"] or 0)))


class Cancel:
    def __init__(self, book: CancelBook, start: Callable[[Operation], int], builds: Builds) -> None:
        self._book = book
        self._start = start  # starts a build and returns its id at once (client.verbs.submit)
        self._builds = builds

    def start(self, record: dict, actor: Actor | None) -> int:
        """Ask the network, for `actor`, to stop the build `record` (one still without a
        verdict): a request ordered like any other, whose execution stops it on every node at
        that point of the order; returns the cancel's own build id."""
        operation = decode_struct(Operation, record["request"]["operation"])
        assert operation.cancels is None, "a cancel is not a build"
        cancel = Operation(operation.repository, operation.branch, cancels=int(record["build_id"]), actor=actor)
        self._book.expect(int(record["build_id"]))
        build_id = self._start(cancel)
        log.info("build %d cancels build %s", build_id, record["build_id"])
        return build_id

    def supersede(self, operation: Operation, build_id: int) -> list[int]:
        """Cancel the older builds of `operation`'s ref that build `build_id` makes moot, for
        whoever asked for it."""
        # This client's own only: the order lets a client cancel nothing else (pbft.cancels).
        return [self.start(record, operation.actor) for record in self._builds.superseded(operation, before=build_id)
                if record["request"]["client"] == self._book.client_name]


def said_cancelled(outstanding: Outstanding) -> list[int]:
    """The nodes whose reply says `cancelled`, in the order they came."""
    return [reply.sender for reply in outstanding.collector.replies if reply.result.status == "cancelled"]


def enough_said_cancelled(outstanding: Outstanding, f: int, n: int) -> bool:
    """Whether a build whose cancel has its verdict has f+1 of its own replies saying `cancelled`
    (the nodes that stopped it, or never built it, send them as the cancel executes), so that
    its record holds a certificate of its own; or has every node's reply."""
    return len(said_cancelled(outstanding)) > f or len(outstanding.collector.replies) >= n


def cancelled_certificate(said: list[int], f: int) -> list[int]:
    """A cancelled build's agreed_by: the first f+1 nodes whose own signed replies say
    `cancelled`, when that many came; else none (nodes that finished first said what they
    built), and the cancel's certificate, which `cancelled_by` names, is the evidence."""
    return sorted(said[:f + 1]) if len(said) > f else []


def cancelled_verdict(outstanding: Outstanding, cancel: Verdict, elapsed_ms: int, f: int) -> Verdict:
    """The verdict of a build whose cancel executed while the client followed it."""
    agreed_by = cancelled_certificate(said_cancelled(outstanding), f)
    log.info("accepted build %d: %s status=cancelled by build %s, agreed_by=%s elapsed_ms=%d",
             outstanding.build_id, outstanding.operation.branch, cancel.build_id, agreed_by, elapsed_ms)
    return Verdict(str(outstanding.build_id), Accepted(cancelled_result(), agreed_by, cancelled_by=cancel.build_id),
                   outstanding.collector.replies, elapsed_ms)
