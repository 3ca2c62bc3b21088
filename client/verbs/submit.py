"""The verb submit: sign a build's request, record it, send it and follow it to its verdict.

Every verb's builds go through here: a webhook's (`wait`, which answers with
the verdict), a forge delivery's, an approval's, a cancel's, a re-run's, a
matrix's combinations and a schedule's (`start`, which answers with the
build id at once and follows the build in the background), and the builds a
restarted client follows again (`follow_again`).

Once f+1 agree, the client waits up to `client_settle_s` more for what the
nodes' ledgers will say: 2f+1 matching replies (certified), or replies that
leave no result a way to 2f+1 (disputed: honest nodes disagree, e.g. a
flaky test that passed on two nodes and failed on two). A disputed build is
answered, recorded and reported `disputed` with each node's result, never
as whichever f+1 replied first. With every node up and agreeing, the wait
ends at the (2f+1)-th reply; it runs to its end only when a node is down or
slow and another disagrees, and the f+1 are answered then, as before. A
divergent or disputed build waits a little for the nodes yet to reply, so
that its record shows every node's answer; a build with a cancel on its way
waits for the cancel's verdict (client.verbs.cancel).

The verdict is published (client.events `Finished`) for the records, the
statuses, the notifications and the metrics, and answered only once the
records' group commit holds it.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from client.events import EventStream, Finished, Origin, Requested
from client.intake import WebhookError
from client.outcome import Accepted, Verdict
from client.requests import Outstanding, RequestCore
from client.tables.store import RecordStore
from client.verbs.cancel import CancelBook, cancelled_verdict, enough_said_cancelled
from client.verbs.matrix import expand
from client.verdicts import settling, verdict_of
from pbft.build import Operation, Result
from pbft.messages import MAX_REQUEST_BYTES, Request

# The operation with its branch's head pinned (client.heads `BranchHeads.pin`).
Pin = Callable[[Operation], Awaitable[Operation]]


class Submit:
    def __init__(
        self, core: RequestCore, events: EventStream, cancels: CancelBook, store: RecordStore, pin: Pin | None,
    ) -> None:
        self._core = core
        self._events = events
        self._cancels = cancels
        self._store = store
        # Pins the head of a branch a request names without a commit; None: unpinned.
        self._pin = pin

    async def wait(self, operation: Operation) -> Verdict:
        """Submit `operation` and wait for its verdict."""
        outstanding, started_s = self._begin(await self.pinned(operation), Origin())
        return await self._follow(outstanding, started_s)

    def start(self, operation: Operation, origin: Origin = Origin()) -> int:
        """Sign, record and start a request, and return its build id at once.

        Forges give up on a webhook after about ten seconds, so a delivery is
        answered with the build id while a task waits for the verdict, which
        lands in the build records.
        """
        outstanding, started_s = self._begin(operation, origin)
        self._core.tasks.spawn(self._follow(outstanding, started_s), name=f"build-{outstanding.build_id}")
        return outstanding.build_id

    async def pinned(self, operation: Operation) -> Operation:
        """`operation` with its branch's head pinned if it names no commit (client.heads), so
        that every node builds one commit, whenever each of them fetches."""
        return operation if self._pin is None else await self._pin(operation)

    def follow_again(self, request: Request, waited_s: float) -> None:
        """Follow a request this client signed and recorded before it restarted, `waited_s` ago:
        it goes to every node at once, and its deadline counts from now."""
        outstanding = self._core.track(request)
        self._core.tasks.spawn(self._follow(outstanding, time.monotonic(), waited_s=waited_s),
                               name=f"build-{request.timestamp}")

    def _begin(self, operation: Operation, origin: Origin) -> tuple[Outstanding, float]:
        # Synchronous up to the registration, so a caller gets a build id
        # that is already recorded and already listening for replies.
        started_s = time.monotonic()
        request = self._core.sign(operation)
        if request.size > MAX_REQUEST_BYTES:
            # Nodes refuse it unread (pbft.messages): say so now rather than time out.
            raise WebhookError(413, f"the build's request is {request.size} bytes signed, over the {MAX_REQUEST_BYTES} "
                                    "a node takes: shorten what it carries (its inputs, a network document)")
        self._events.publish(Requested(request, time.time(), origin))
        return self._core.track(request), started_s

    async def _follow(self, outstanding: Outstanding, started_s: float, *, waited_s: float | None = None) -> Verdict:
        """Send a request and wait for its verdict. `waited_s`: a request followed again after
        a restart, submitted that long ago, which goes to every node at once."""
        core, build_id = self._core, outstanding.build_id
        submitted_s = started_s - (waited_s or 0.0)
        try:
            if waited_s is None:
                # Sent first, then committed: the fsync overlaps the nodes' work instead of
                # delaying it. The request's timestamp is below a ceiling already on disk
                # (client.tables.store), so a power cut in between cannot hand it out again. A
                # verdict is answered only after this commit and its own.
                await core.send_first(outstanding)
                await self._store.durable()
            else:
                await core.send_to_all(outstanding, f"resumed, submitted {waited_s:.0f} s ago")
            await core.await_quorum(outstanding, started_s)
            # Counted, as the elapsed time is, from the request's submission.
            quorum_ms = round((time.monotonic() - submitted_s) * 1000, 2)
            await self._settle(outstanding, started_s)
            await self._cancels.wait(build_id, started_s + core.settings.deadline_s)
        finally:
            core.forget(build_id)
            # Taken with nothing awaited since: a cancel decided from here on finds the build
            # no longer followed, and overrules its verdict instead (CancelBook.decided).
            cancel = self._cancels.take(build_id)
        verdict = self._verdict(outstanding, cancel, round((time.monotonic() - submitted_s) * 1000), quorum_ms)
        await self._events.publish_once_durable(Finished(outstanding.operation, verdict), self._store.durable)
        return verdict

    async def _settle(self, outstanding: Outstanding, started_s: float) -> None:
        """Past its quorum, or its deadline, what a build waits for before its verdict is final."""
        core, collector = self._core, outstanding.collector
        if core.closing:
            return
        settings = core.settings
        if self._cancels.deciding(outstanding.build_id) is not None:
            await core.await_replies(outstanding, lambda: enough_said_cancelled(outstanding, core.f, core.n),
                                     settings.settle_s)
        elif collector.divergent or collector.disputed:
            wait_s = min(settings.retransmit_s, started_s + settings.deadline_s - time.monotonic())
            await core.await_replies(outstanding, lambda: len(collector.replies) == core.n, wait_s)
        elif settling(collector):
            await core.await_replies(outstanding, lambda: not settling(collector), settings.settle_s)

    def _verdict(self, outstanding: Outstanding, cancel: Verdict | None, elapsed_ms: int, quorum_ms: float) -> Verdict:
        """The build's verdict (`cancel`: the verdict of the cancel that decided it, if one did),
        with the builds it starts if it is a matrix; a cancel's verdict decides its target."""
        if cancel is not None:
            verdict = cancelled_verdict(outstanding, cancel, elapsed_ms, self._core.f)
        else:
            verdict = verdict_of(outstanding, self._core, elapsed_ms, quorum_ms)
        match verdict.outcome:
            case Accepted(result=Result(status="matrix")) if not self._core.closing:
                verdict = expand(outstanding.request, verdict, self.start)
        if outstanding.operation.cancels is not None:
            self._cancels.decided(outstanding.operation.cancels, verdict)
        return verdict
