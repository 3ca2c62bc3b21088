"""Submitting requests to the network and waiting for f+1 matching replies.

`submit` signs a request with a fresh timestamp, records it, sends it to the
primary of the view the client believes current, retransmits it to all
nodes every `client_retransmit_s` until f+1 nodes agree (OSDI'99 §4.1; 2f+1
for a result with artifacts, or `divergent`: pbft.replies), and
gives up at the deadline. Replies arrive through `on_frame`, which verifies
each one and routes it by timestamp to that request's collector.

Once f+1 agree, the client waits up to `client_settle_s` more for what the
nodes' ledgers will say: 2f+1 matching replies (certified), or replies that
leave no result a way to 2f+1 (disputed: honest nodes disagree, e.g. a
flaky test that passed on two nodes and failed on two). A disputed build is
answered, recorded and reported `disputed` with each node's result, never
as whichever f+1 replied first. With every node up and agreeing, the wait
ends at the (2f+1)-th reply; it runs to its end only when a node is down or
slow and another disagrees, and the f+1 are answered then, as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from pbft.replies import ReplyCollector, vouched_view
from client.attestation import verify_with
from pbft.attestation import Signed, signers
from client.outcome import Abandoned, Accepted, Disputed, Divergent, TimedOut, Verdict
from client.records import BuildRecords
from client.tables.verdicts import replies_until
from shared.config import NetworkConfig
from pbft.authenticator import Authenticator
from client.heads import BranchHeads
from pbft.build import COMMIT_SHA, Operation, combination_label
from pbft.cancels import cancelled_result
from pbft.handshake import Hello
from pbft.messages import BuildState, CurrentView, MessageError, Reply, Request, decode, encode, signed
from pbft.wire import decode_struct

log = logging.getLogger(__name__)

# How long close() lets abandoned background builds write their records;
# only a send stuck on a full socket could take longer.
BACKGROUND_CLOSE_S = 5.0
# Builds without a verdict that a restarted client follows again, at most: as many as a node
# keeps open for one client (pbft.slot.ReplicaSettings.max_open_per_client). Older ones end
# `timeout` at the restart.
MAX_RESUMED = 1024


class Links(Protocol):
    """What the service needs from the node links (see client.links.NodeLinks)."""

    def start(
        self,
        on_frame: Callable[[int, str], None],
        on_connect: Callable[[int, str], Awaitable[None]],
        on_down: Callable[[int], None],
    ) -> None: ...

    async def close(self) -> None: ...

    async def send(self, node_id: int, text: str) -> bool: ...

    async def broadcast(self, text: str) -> list[int]: ...

    def connected(self) -> list[int]: ...


class BuildObserver(Protocol):
    """Told about each request as it goes out and as it ends (e.g. client.statuses.CommitStatuses).

    Both calls are made on the build's path, so they must not block or raise.
    """

    def submitted(self, build_id: str, operation: Operation) -> None: ...

    def finished(self, operation: Operation, verdict: Verdict) -> None: ...

    def awaiting_approval(self, approval_id: str, operation: Operation) -> None: ...

    def resumed(self, build_ids: list[int], matrices: list[dict]) -> None:
        """A restarted client follows `build_ids` again; `matrices`: the records of the matrix
        builds whose combinations are among them."""


@dataclass
class _Outstanding:
    frame: str
    collector: ReplyCollector
    operation: Operation
    done: asyncio.Event = field(default_factory=asyncio.Event)
    all_replied: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # the collector's `settled`
    retransmitted: bool = False
    states: dict[int, str] = field(default_factory=dict)  # node -> its signed BUILD-STATE, the latest
    # The verdict of this build's cancel, once f+1 nodes agree it executed: the build is then
    # `cancelled` whatever its own replies say (pbft.cancels).
    cancelled_by: Verdict | None = None
    replied: asyncio.Event = field(default_factory=asyncio.Event)  # set at each reply counted

    def cancelled_repliers(self) -> list[int]:
        """The nodes whose reply says `cancelled`, in the order they came."""
        return [reply.sender for reply in self.collector.replies if reply.result.status == "cancelled"]

    def progress(self, quorum: int) -> str | None:
        """`running` when f+1 (`quorum`) nodes say the build runs, `queued` when f+1 say it waits
        or runs, else None: fewer could all be faulty."""
        if sum(1 for state in self.states.values() if state == "running") >= quorum:
            return "running"
        return "queued" if len(self.states) >= quorum else None


class ClientService:
    def __init__(
        self,
        config: NetworkConfig,
        name: str,
        auth: Authenticator,
        records: BuildRecords,
        links: Links,
        *,
        deadline_s: float | None = None,
        follow_links: bool = True,
        heads: BranchHeads | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._node_ids = frozenset(node.id for node in config.nodes)
        self._node_keys = {node.id: node.public_key for node in config.nodes}
        self._auth = auth
        self._records = records
        self._links = links
        self._retransmit_s = config.protocol.client_retransmit_s
        self._deadline_s = config.protocol.client_deadline_s if deadline_s is None else deadline_s
        self._queue_limit_s = max(config.protocol.client_queue_limit_s, self._deadline_s)
        self._settle_s = config.protocol.client_settle_s
        # Send a request to all nodes as soon as the primary's link is seen down; off, only a
        # retransmission does (scripts/bench.py failover compares the two).
        self._follow_links = follow_links
        # Pins the head of a branch a request names without a commit (client.heads); None: unpinned.
        self._heads = heads
        self._outstanding: dict[int, _Outstanding] = {}
        # Builds with a cancel on its way, by build id: set once the cancel has its verdict.
        # A build's own verdict waits for it, so that replies split between nodes that finished
        # first and nodes that stopped are never answered as a dispute (pbft.cancels).
        self._cancels: dict[int, asyncio.Event] = {}
        self._views: dict[int, int] = {}
        self._closing = False
        self._background: set[asyncio.Task] = set()
        self._observers: list[BuildObserver] = []

    def start(self) -> None:
        self._links.start(self.on_frame, self.on_connect, self.on_down)

    def observe(self, observer: BuildObserver) -> None:
        self._observers.append(observer)

    def _notify(self, event: str, *args) -> None:
        # Reporting on a build must never fail the build or its webhook.
        for observer in self._observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                log.exception("observer %s failed on %s", type(observer).__name__, event)

    def abandon_all(self) -> None:
        """Stop waiting for every outstanding request, so a shutdown is not held up by them."""
        self._closing = True
        for outstanding in self._outstanding.values():
            outstanding.done.set()

    async def close(self) -> None:
        # Builds followed in the background end promptly once abandoned, and
        # are awaited so that their records are written before the file closes.
        self.abandon_all()
        if self._background:
            _, stuck = await asyncio.wait(set(self._background), timeout=BACKGROUND_CLOSE_S)
            for task in stuck:
                task.cancel()
        await self._links.close()

    @property
    def view(self) -> int:
        return vouched_view(self._views, self._config.f)

    @property
    def waiting(self) -> int:
        """Builds sent and not yet ended."""
        return len(self._outstanding)

    @property
    def queued(self) -> int:
        """Builds sent, not yet ended, that f+1 nodes say wait for a build slot."""
        return sum(1 for outstanding in self._outstanding.values()
                   if outstanding.progress(self._config.f + 1) == "queued")

    @property
    def primary(self) -> int:
        return self.view % self._config.n

    def connected(self) -> list[int]:
        """The nodes whose link is up now."""
        return self._links.connected()

    async def submit(self, operation: Operation) -> Verdict:
        operation = await self.pinned(operation)
        timestamp, started_s = self._begin(operation)
        return await self._follow(timestamp, operation, started_s)

    async def pinned(self, operation: Operation) -> Operation:
        """`operation` with its branch's head pinned if it names no commit (client.heads), so
        that every node builds one commit, whenever each of them fetches."""
        return operation if self._heads is None else await self._heads.pin(operation)

    def resume(self) -> list[int]:
        """Follow again the builds this client's records hold without a verdict: a client
        stopped, or killed, while it waited for them. Each is the same signed request, sent
        again to every node: a node that executed it answers from its store, one that did not
        orders it, so none is built twice. Its deadline counts from now; its verdict and status
        land as a webhook's do. Returns the build ids followed."""
        pending = self._records.builds.pending(MAX_RESUMED)
        if pending and self._records.verdicts.give_up_pending(before=pending[0]["build_id"]):
            log.warning("client restarted with more than %d builds without a verdict: older ones end timeout",
                        MAX_RESUMED)
        resumed = []
        for record in pending:
            try:
                request = decode(record["request"])
            except MessageError as error:
                log.error("build %d: its stored request does not decode (%s): not resumed", record["build_id"], error)
                continue
            if not isinstance(request, Request) or request.client != self.name:
                log.error("build %d: its stored request is not this client's: not resumed", record["build_id"])
                continue
            if request.operation.cancels is not None:
                self._cancels.setdefault(request.operation.cancels, asyncio.Event())
            waited_s = max(0.0, time.time() - record["submitted_at"])
            self._outstanding[request.timestamp] = _Outstanding(
                json.dumps(encode(request)),
                ReplyCollector(self.name, request.timestamp, self._config.f, self._config.n),
                request.operation,
            )
            self._in_background(self._follow(request.timestamp, request.operation, time.monotonic(), waited_s=waited_s),
                                name=f"build-{request.timestamp}")
            resumed.append(request.timestamp)
        if resumed:
            log.info("resumed %d builds without a verdict: %s", len(resumed), " ".join(map(str, resumed)))
            parents = sorted({record["matrix_of"] for record in pending if record["matrix_of"] is not None})
            self._notify("resumed", resumed, [self._records.builds.get(parent) for parent in parents])
        return resumed

    def hold_for_approval(self, operation: Operation, delivery_id: str | None) -> int:
        """Keep a fork's pull request, unsent, until `approve`; return the approval's id."""
        approval_id = self._records.approvals.hold(operation, delivery_id, time.time())
        log.info(
            "pull request %s of %s from a fork waits for approval %d (commit %s)",
            operation.pull_request, operation.repository, approval_id, (operation.commit or "")[:12],
        )
        self._notify("awaiting_approval", str(approval_id), operation)
        return approval_id

    def approve(self, approval_id: int) -> int:
        """Start the build an approval held back, once, and return its build id (KeyError if
        there is no such approval). Approving one that already started returns that build."""
        approval = self._records.approvals.get(approval_id)
        if approval is None:
            raise KeyError(approval_id)
        if approval["build_id"] is not None:
            return int(approval["build_id"])
        # Nothing awaits between the lookup and the update: two approvals cannot both start it.
        build_id = self.submit_in_background(approval["operation"])
        self._records.approvals.approved(approval_id, build_id)
        log.info("approval %d started build %d", approval_id, build_id)
        return build_id

    def cancel(self, record: dict) -> int:
        """Ask the network to stop the build `record` (one still without a verdict): a request
        ordered like any other, whose execution stops it on every node at that point of the
        order; returns the cancel's own build id."""
        operation = decode_struct(Operation, record["request"]["operation"])
        assert operation.cancels is None, "a cancel is not a build"
        cancel = Operation(operation.repository, operation.branch, cancels=int(record["build_id"]))
        self._cancels.setdefault(int(record["build_id"]), asyncio.Event())
        build_id = self.submit_in_background(cancel)
        log.info("build %d cancels build %s", build_id, record["build_id"])
        return build_id

    def supersede(self, operation: Operation, build_id: int) -> list[int]:
        """Cancel the older builds of `operation`'s ref that build `build_id` makes moot."""
        return [self.cancel(record) for record in self._records.builds.superseded(operation, before=build_id)]

    async def rerun(self, record: dict) -> int:
        """Start a new build of what the build `record` built: the same repository, ref and
        commit, and return its id. The commit is its request's own, or the one its verdict
        names, or one that f+1 of its replies name (a disputed or timed-out build: one of them
        is honest); failing all of them, its branch's head now, pinned like a new build's."""
        operation = decode_struct(Operation, record["request"]["operation"])
        if operation.commit is None:
            commit = _commit_of(record, self._config.f + 1)
            operation = dataclasses.replace(operation, commit=commit) if commit else await self.pinned(operation)
        build_id = self.submit_in_background(operation)
        self._records.builds.link_rerun(build_id, int(record["build_id"]))
        self._records.store.commit()
        log.info("build %d runs build %s again", build_id, record["build_id"])
        return build_id

    def _expand(self, timestamp: int, operation: Operation, verdict: Verdict) -> Verdict:
        """Start one build per combination of a certified matrix verdict: the same request with
        the verdict's commit pinned and the combination named, each ordered, built and certified
        on its own, its record naming this one. The client reads no spec: f+1 nodes vouch for
        the combinations, and each node builds only one its spec at the commit declares."""
        accepted = verdict.outcome
        result = accepted.result
        if operation.combination is not None or result.commit is None:
            # No honest node answers so: a combination is built, never expanded again.
            log.warning("build %d: a matrix verdict for %s; nothing started", timestamp,
                        "a combination" if operation.combination is not None else "no commit")
            return verdict
        started = []
        for combination in result.combinations:
            build_id = self.submit_in_background(
                dataclasses.replace(operation, commit=result.commit, combination=combination)
            )
            self._records.builds.link_matrix(build_id, matrix_of=timestamp)
            started.append((str(build_id), combination))
        log.info("build %d: matrix of %d builds started: %s", timestamp, len(started),
                 " ".join(f"{build_id}={combination_label(combination)}" for build_id, combination in started))
        return dataclasses.replace(verdict, outcome=dataclasses.replace(accepted, matrix=tuple(started)))

    def submit_in_background(self, operation: Operation) -> int:
        """Sign, record and start a request, and return its build id at once.

        Forges give up on a webhook after about ten seconds, so a delivery is
        answered with the build id while a task waits for the verdict, which
        lands in the build records. The service holds the task so it is not
        garbage-collected, and `close` waits for it.
        """
        timestamp, started_s = self._begin(operation)
        self._in_background(self._follow(timestamp, operation, started_s), name=f"build-{timestamp}")
        return timestamp

    def _in_background(self, coroutine: Awaitable, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def _begin(self, operation: Operation) -> tuple[int, float]:
        # Synchronous up to the registration, so a caller gets a build id
        # that is already recorded and already listening for replies.
        started_s = time.monotonic()
        timestamp = self._records.store.next_timestamp(time.time_ns() // 1000)
        request = signed(Request(self.name, timestamp, operation), self._auth.sign)
        self._records.builds.add_pending(request, submitted_at=time.time())
        outstanding = _Outstanding(
            json.dumps(encode(request)),
            ReplyCollector(self.name, timestamp, self._config.f, self._config.n),
            operation,
        )
        self._outstanding[timestamp] = outstanding
        return timestamp, started_s

    async def _follow(self, timestamp: int, operation: Operation, started_s: float, *,
                      waited_s: float | None = None) -> Verdict:
        """Send a request and wait for its verdict. `waited_s`: a request resumed after a
        restart (`resume`), submitted that long ago, which goes to every node at once."""
        outstanding = self._outstanding[timestamp]
        try:
            if waited_s is None:
                # Sent first, then committed: the fsync overlaps the nodes' work instead of
                # delaying it. The request's timestamp is below a ceiling already on disk
                # (client.records), so a power cut in between cannot hand it out again. A
                # verdict is answered only after this commit and its own.
                await self._send_first(timestamp, operation, outstanding)
                await self._records_durable()
            else:
                await self._send_to_all(timestamp, outstanding, f"resumed, submitted {waited_s:.0f} s ago")
            await self._await_quorum(timestamp, outstanding, started_s)
            quorum_ms = round((time.monotonic() - started_s + (waited_s or 0.0)) * 1000, 2)
            if outstanding.cancelled_by is not None and not self._closing:
                await self._await_cancelled_replies(outstanding)
            elif self._closing:
                pass
            elif outstanding.collector.divergent or outstanding.collector.disputed:
                await self._await_the_rest(outstanding, started_s)
            elif outstanding.collector.accepted:
                await self._await_settled(outstanding)
            await self._await_cancel(timestamp, outstanding, started_s)
        finally:
            del self._outstanding[timestamp]
        if outstanding.cancelled_by is not None:
            verdict = self._finish_cancelled(timestamp, operation, outstanding, started_s - (waited_s or 0.0))
        else:
            verdict = self._finish(
                timestamp, operation, outstanding.collector, started_s - (waited_s or 0.0),
                outstanding.progress(self._config.f + 1), quorum_ms,
            )
        if _status(verdict) == "matrix" and not self._closing:
            verdict = self._expand(timestamp, operation, verdict)
        if operation.cancels is not None:
            self._cancel_decided(operation.cancels, verdict)
        await self._records_durable()
        self._notify("finished", operation, verdict)
        return verdict

    async def _await_cancel(self, timestamp: int, outstanding: _Outstanding, started_s: float) -> None:
        """A build with a cancel on its way answers once the cancel has its verdict (within the
        build's deadline): if it executed, the build is `cancelled` on every node, however its
        own replies went."""
        cancelled = self._cancels.get(timestamp)
        if cancelled is None or outstanding.cancelled_by is not None or self._closing:
            return
        try:
            async with asyncio.timeout(max(0.0, started_s + self._deadline_s - time.monotonic())):
                await cancelled.wait()
        except asyncio.TimeoutError:
            pass

    async def _await_cancelled_replies(self, outstanding: _Outstanding) -> None:
        """A build whose cancel has its verdict: wait up to `client_settle_s` for f+1 of its own
        replies to say `cancelled` (the nodes that stopped it, or never built it, send them as
        the cancel executes), so that its record holds a certificate of its own."""
        try:
            async with asyncio.timeout(self._settle_s):
                while (len(outstanding.cancelled_repliers()) <= self._config.f
                       and len(outstanding.collector.replies) < self._config.n):
                    outstanding.replied.clear()
                    await outstanding.replied.wait()
        except asyncio.TimeoutError:
            pass

    def _cancel_decided(self, target: int, verdict: Verdict) -> None:
        """The cancel of build `target` has its verdict. If it executed (f+1 nodes agree), the
        order made `target` cancelled on every node (pbft.cancels): its record says so, even
        if its own verdict came first, as the nodes' ledgers do."""
        waiting = self._cancels.pop(target, None)
        if _status(verdict) == "success":
            outstanding = self._outstanding.get(target)
            if outstanding is not None:
                outstanding.cancelled_by = verdict
                outstanding.done.set()
            else:
                self._cancel_finished(target, verdict)
        if waiting is not None:
            waiting.set()

    def _cancel_finished(self, target: int, cancel: Verdict) -> None:
        """A build whose own verdict came before its cancel's, which the order overrides."""
        record = self._records.builds.get(target)
        if record is None or record["state"] == "pending" or (record["result"] or {}).get("status") == "cancelled":
            return
        result = cancelled_result()
        agreed_by = self._cancelled_certificate([reply["sender"] for reply in record["replies"] or []
                                                 if (reply.get("result") or {}).get("status") == "cancelled"])
        self._records.verdicts.cancelled_by_order(target, result, agreed_by)
        log.warning("build %d: its cancel %s was ordered after its verdict (%s): cancelled on every node",
                    target, cancel.build_id, record["state"])
        operation = decode_struct(Operation, record["request"]["operation"])
        self._notify("finished", operation, Verdict(
            str(target), Accepted(result, agreed_by, cancelled_by=cancel.build_id), [], record["elapsed_ms"] or 0,
        ))

    def _cancelled_certificate(self, said_cancelled: list[int]) -> list[int]:
        """A cancelled build's agreed_by: the first f+1 nodes whose own signed replies say
        `cancelled`, when that many came; else none (nodes that finished first said what they
        built), and the cancel's certificate, which `cancelled_by` names, is the evidence."""
        return sorted(said_cancelled[:self._config.f + 1]) if len(said_cancelled) > self._config.f else []

    def _finish_cancelled(self, timestamp: int, operation: Operation, outstanding: _Outstanding,
                          started_s: float) -> Verdict:
        cancel = outstanding.cancelled_by
        elapsed_ms = round((time.monotonic() - started_s) * 1000)
        result, replies = cancelled_result(), outstanding.collector.replies
        agreed_by = self._cancelled_certificate(outstanding.cancelled_repliers())
        self._records.verdicts.accept(timestamp, result, agreed_by, elapsed_ms, replies)
        log.info("accepted build %d: %s status=cancelled by build %s, agreed_by=%s elapsed_ms=%d",
                 timestamp, operation.branch, cancel.build_id, agreed_by, elapsed_ms)
        return Verdict(str(timestamp), Accepted(result, agreed_by, cancelled_by=cancel.build_id), replies, elapsed_ms)

    async def _records_durable(self) -> None:
        await self._records.store.durable()

    async def _send_first(self, timestamp: int, operation: Operation, outstanding: _Outstanding) -> None:
        primary = self.primary
        sent = await self._links.send(primary, outstanding.frame)
        log.info(
            "submitted build %d: %s %s commit=%s view=%d primary=%d%s",
            timestamp, operation.repository, operation.branch, operation.commit, self.view, primary,
            "" if sent else " (link down)",
        )
        self._notify("submitted", str(timestamp), operation)
        if not sent and self._follow_links:
            await self._send_to_all(timestamp, outstanding, "the primary's link is down")

    async def _send_to_all(self, timestamp: int, outstanding: _Outstanding, why: str) -> None:
        """Send the request to every node, as a retransmission does: each backup then times
        the primary (OSDI'99 §4.4), and a view change follows if it is gone."""
        outstanding.retransmitted = True
        sent = await self._links.broadcast(outstanding.frame)
        log.info(
            "sent build %d to all nodes (%s): view=%d reached=%s replies_from=%s",
            timestamp, why, self.view, sent, [reply.sender for reply in outstanding.collector.replies],
        )

    def on_down(self, node_id: int) -> None:
        """A node's link went down. If it is the primary's, every request waiting for it goes
        to all nodes now rather than at its next retransmission: a killed primary then costs
        about one view-change timeout, not a retransmission period and the timeout."""
        if node_id != self.primary or self._closing or not self._follow_links:
            return
        for timestamp, outstanding in list(self._outstanding.items()):
            if not outstanding.retransmitted:
                self._in_background(self._send_to_all(timestamp, outstanding, "the primary's link went down"),
                                    name=f"send-{timestamp}")

    @property
    def queue_limit_s(self) -> float:
        return self._queue_limit_s

    def progress(self, build_id: int) -> str | None:
        """Where a build without a verdict is, as f+1 nodes say (`_Outstanding.progress`)."""
        outstanding = self._outstanding.get(build_id)
        return None if outstanding is None else outstanding.progress(self._config.f + 1)

    async def _await_quorum(self, timestamp: int, outstanding: _Outstanding, started_s: float) -> None:
        deadline_s = started_s + self._deadline_s
        retransmit_at_s = started_s + self._retransmit_s
        while not self._closing:
            wake_s = min(retransmit_at_s, deadline_s)
            try:
                # Not wait_for, which on Python 3.11 can drop a cancel (client/links.py _challenge).
                async with asyncio.timeout(max(0.0, wake_s - time.monotonic())):
                    await outstanding.done.wait()
                return
            except asyncio.TimeoutError:
                pass
            if retransmit_at_s >= deadline_s:
                # A build that waits for build slots, or runs, at f+1 nodes (one honest at least)
                # is not lost: wait on, a deadline at a time, up to the queue limit.
                progress = outstanding.progress(self._config.f + 1)
                limit_s = started_s + self._queue_limit_s
                if progress is None or deadline_s >= limit_s:
                    return
                deadline_s = min(deadline_s + self._deadline_s, limit_s)
                log.info("build %d is %s at f+1 nodes: waiting for its verdict up to %.0f s more",
                         timestamp, progress, deadline_s - time.monotonic())
            await self._send_to_all(timestamp, outstanding, "retransmission")
            retransmit_at_s += self._retransmit_s

    async def _await_settled(self, outstanding: _Outstanding) -> None:
        """Past f+1 agreeing replies, wait up to `client_settle_s` for the replies to say what
        the ledgers will: certified (2f+1 agree) or disputed (see the module's doc)."""
        try:
            async with asyncio.timeout(self._settle_s):
                await outstanding.settled.wait()
        except asyncio.TimeoutError:
            pass

    async def _await_the_rest(self, outstanding: _Outstanding, started_s: float) -> None:
        """Give the nodes yet to reply to a divergent or disputed build a little longer, so
        that its record shows every node's answer, not only those that made the verdict."""
        wait_s = min(self._retransmit_s, started_s + self._deadline_s - time.monotonic())
        try:
            async with asyncio.timeout(max(0.0, wait_s)):
                await outstanding.all_replied.wait()
        except asyncio.TimeoutError:
            pass

    def _finish(
        self, timestamp: int, operation: Operation, collector: ReplyCollector, started_s: float,
        progress: str | None = None, quorum_ms: float | None = None,
    ) -> Verdict:
        elapsed_ms = round((time.monotonic() - started_s) * 1000)
        replies = collector.replies
        if collector.divergent:
            outcome, by_node = collector.divergent_outcome, collector.artifacts_by_node
            self._records.verdicts.diverge(timestamp, outcome, by_node, elapsed_ms, replies)
            log.warning(
                "divergent build %d: %s status=%s commit=%s nodes built different artifacts: %s elapsed_ms=%d",
                timestamp, operation.branch, outcome.status, outcome.commit,
                " ".join(f"node{node}={digest}" for node, digest in by_node.items()), elapsed_ms,
            )
            return Verdict(str(timestamp), Divergent(outcome, by_node), replies, elapsed_ms)
        if collector.disputed:
            split = collector.split
            self._records.verdicts.dispute(timestamp, split, self._config.f, elapsed_ms, replies)
            log.warning(
                "disputed build %d: %s the nodes disagree, no result has %d replies: %s elapsed_ms=%d",
                timestamp, operation.branch, 2 * self._config.f + 1,
                " ".join(f"node{node}={result.status}/{result.exit_code}" for node, result in split.items()),
                elapsed_ms,
            )
            return Verdict(str(timestamp), Disputed(split, quorum_ms), replies, elapsed_ms)
        if collector.accepted:
            result = collector.result
            outcome = Accepted(result, collector.agreed_by, quorum_ms)
            self._records.verdicts.accept(timestamp, result, collector.agreed_by, elapsed_ms, replies)
            log.info(
                "accepted build %d: %s status=%s exit_code=%s commit=%s view=%d agreed_by=%s elapsed_ms=%d"
                " f_plus_1_ms=%.0f %s",
                timestamp, operation.branch, result.status, result.exit_code, result.commit,
                self.view, collector.agreed_by, elapsed_ms, quorum_ms or 0,
                collector.ledger_verdict if collector.settled else "not settled within client_settle_s",
            )
        elif self._closing:
            # Its record stays pending: the network may still build it, and the client
            # follows it again when it restarts (`resume`).
            log.warning("build %d: %s left without a verdict at shutdown; followed again after a restart",
                        timestamp, operation.branch)
            outcome = Abandoned()
        else:
            outcome = TimedOut(progress)
            self._records.verdicts.time_out(timestamp, elapsed_ms, replies)
            log.warning(
                "timed out build %d: %s view=%d no quorum among replies_from=%s elapsed_ms=%d",
                timestamp, operation.branch, self.view, [reply.sender for reply in replies], elapsed_ms,
            )
        return Verdict(str(timestamp), outcome, replies, elapsed_ms)

    async def on_connect(self, node_id: int, challenge: str) -> None:
        """Say HELLO over the connection's challenge, then send it what that node should have had.

        A request whose send found the link down, or that a restarted node
        lost, reaches the node now instead of at the next retransmission.
        """
        hello = signed(Hello(self.name, node_id, challenge), self._auth.sign)
        await self._links.send(node_id, json.dumps(encode(hello)))
        primary = self.primary
        for outstanding in list(self._outstanding.values()):
            if outstanding.retransmitted or node_id == primary:
                await self._links.send(node_id, outstanding.frame)

    def on_frame(self, link_node_id: int, text: str) -> None:
        """Verify a frame from a node and count it; drop anything else with a reason."""
        reply = self._parse_reply(link_node_id, text)
        if isinstance(reply, BuildState):
            self._on_build_state(link_node_id, reply)
            return
        if isinstance(reply, CurrentView):
            self._on_current_view(link_node_id, reply)
            return
        if reply is None:
            return
        outstanding = self._outstanding.get(reply.timestamp)
        if outstanding is None:
            # Replies beyond the f+1 that decided a request arrive after it is done.
            self._late_reply(link_node_id, reply)
            return
        if not self._auth.verify_node(reply.sender, reply.payload(), reply.sig):
            log.warning("ignore_reply_bad_signature: sender %d on link %d", reply.sender, link_node_id)
            return
        attestation = Signed(outstanding.operation, reply.result)
        if attestation.exists and not signers(attestation, [reply], self._node_keys, verify_with):
            # Every verdict's f+1 replies must make its attestation: one whose attestation
            # signatures do not verify is a faulty node's, and does not count.
            log.warning("ignore_reply_bad_attestation: sender %d on link %d", reply.sender, link_node_id)
            return
        self._views[reply.sender] = max(reply.view, self._views.get(reply.sender, 0))
        log.debug("reply from node %d for build %d: %s", reply.sender, reply.timestamp, reply.result.agreed())
        collector = outstanding.collector
        # Disputed is final, whatever replies come later: no need to wait for an f+1.
        if collector.add(reply) or collector.disputed:
            outstanding.done.set()
        outstanding.replied.set()
        if collector.settled:
            outstanding.settled.set()
        if len(outstanding.collector.replies) == self._config.n:
            outstanding.all_replied.set()

    def _late_reply(self, link_node_id: int, reply: Reply) -> None:
        """Keep a reply that came after its build's verdict with the build's record, so that the
        record tells a node that answered late from one that never did (client.records
        `add_late_reply`, within `replies_until`). It changes no verdict."""
        if not self._auth.verify_node(reply.sender, reply.payload(), reply.sig):
            log.warning("ignore_reply_bad_signature: sender %d on link %d", reply.sender, link_node_id)
            return
        if self._records.verdicts.add_late_reply(reply, time.time(), self._deadline_s, self._settle_s):
            log.debug("late reply from node %d for build %d kept", reply.sender, reply.timestamp)
            self._in_background(self._records_durable(), name=f"late-reply-{reply.timestamp}")

    def silent_nodes(self, build: dict) -> list[int] | None:
        """The nodes that sent no reply to `build` (a record's summary): none of a build without
        a verdict, and None while one may still answer (client.records `replies_until`)."""
        if build["state"] == "pending":
            return None
        missing = self._node_ids - set(build["replied_by"])
        if missing and time.time() <= replies_until(
                int(build["build_id"]), build["elapsed_ms"], self._deadline_s, self._settle_s):
            return None
        return sorted(missing)

    def _on_current_view(self, link_node_id: int, news: CurrentView) -> None:
        """A node says the view it works in: counted as a reply's view is (`view` takes the
        one f+1 nodes reach), so a client that has had no reply yet knows the primary."""
        if not self._auth.verify_node(news.sender, news.payload(), news.sig):
            log.warning("ignore_current-view_bad_signature: sender %d on link %d", news.sender, link_node_id)
            return
        self._views[news.sender] = max(news.view, self._views.get(news.sender, 0))

    def _on_build_state(self, link_node_id: int, news: BuildState) -> None:
        outstanding = self._outstanding.get(news.timestamp)
        if outstanding is None:
            return  # its verdict is in
        if not self._auth.verify_node(news.sender, news.payload(), news.sig):
            log.warning("ignore_build-state_bad_signature: sender %d on link %d", news.sender, link_node_id)
            return
        outstanding.states[news.sender] = news.state

    def _parse_reply(self, link_node_id: int, text: str) -> Reply | BuildState | CurrentView | None:
        try:
            message = decode(json.loads(text))
        except (json.JSONDecodeError, MessageError, RecursionError) as error:
            log.warning("ignore_frame_malformed from link %d: %s", link_node_id, str(error)[:200])
            return None
        if not isinstance(message, (Reply, BuildState, CurrentView)):
            log.warning("ignore_frame_not_reply from link %d: %s", link_node_id, type(message).__name__)
            return None
        if message.client != self.name:
            log.warning("ignore_reply_other_client from link %d: %r", link_node_id, message.client)
            return None
        if message.sender not in self._node_ids:
            log.warning("ignore_reply_unknown_sender from link %d: %d", link_node_id, message.sender)
            return None
        return message


def _status(verdict: Verdict) -> str | None:
    """The agreed status of an accepted verdict; None for any other outcome."""
    return verdict.outcome.result.status if isinstance(verdict.outcome, Accepted) else None


def _commit_of(record: dict, quorum: int) -> str | None:
    """The commit a finished build was built on: its verdict's, or one `quorum` replies name."""
    result = record["result"]
    if result is not None and result.get("commit") is not None:
        return result["commit"]
    named: dict[str, set[int]] = {}
    for reply in record.get("replies") or []:
        commit = (reply.get("result") or {}).get("commit")
        if isinstance(commit, str) and COMMIT_SHA.fullmatch(commit):
            named.setdefault(commit, set()).add(reply.get("sender"))
    agreed = [commit for commit, senders in named.items() if len(senders) >= quorum]
    return agreed[0] if len(agreed) == 1 else None
