"""Delivering notifications in the background: bounded, retried with backoff, never waited for.

`Notifier.send` only queues. A few worker tasks take notifications off the
queue and make one attempt each; an attempt that may succeed later (a
receiver down, a 5xx, a mail server's 4xx) is not retried by the worker that
made it: a timer puts it back on the queue after an exponential backoff,
so a receiver that is down holds no worker, and a notification to another
receiver is not kept waiting behind its retries. What bounds memory is the
count of notifications held at once, queued, being sent or waiting for
their next attempt (`NotifySettings.max_pending`): past it a notification is
dropped, counted and logged, and the verdict it tells of is not delayed.

Each notification ends once as `sent`, `failed` (refused for good, or out of
attempts) or `dropped` (no room, or the client stopped), counted by kind; a
retry is counted on its own. Logs name a notification by its build, its
kind and its target's place in the config and host, never by a full URL
(a hook's path often holds a token of its own) or a secret.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

OUTCOMES = ("sent", "failed", "dropped")


@dataclass(frozen=True)
class NotifySettings:
    """How the client sends notifications; tests shorten the waits."""

    workers: int = 4
    max_pending: int = 1000  # notifications held at once, queued, being sent or waiting for a retry
    max_attempts: int = 8  # with the backoffs below, the last about four minutes after the first
    first_backoff_s: float = 2.0  # the wait after the first failed attempt, doubled after each one
    max_backoff_s: float = 300.0  # the longest wait between two attempts
    call_timeout_s: float = 10.0  # one webhook POST, connection to answer
    close_grace_s: float = 2.0  # how long a stopping client lets notifications finish

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1 for the first)."""
        return min(self.first_backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


@dataclass(frozen=True)
class Notification:
    """One notification to one target: what its sender needs, and names for the logs."""

    kind: str  # "webhook" or "email": which sender delivers it
    build_id: str
    where: str  # where its target is, e.g. "example notify[0] (https://hooks.example.org)"
    # What its sender reads: in client.notifications, (target, event, delivery id). Not in the
    # repr, which a log line could show: a target holds a webhook's secret.
    payload: Any = field(repr=False)


class DeliveryError(Exception):
    """An attempt that failed; `retry` if another attempt may succeed."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


Sender = Callable[[Notification], Awaitable[None]]


@dataclass(eq=False)
class _Job:
    notification: Notification
    attempts: int = 0
    timer: asyncio.TimerHandle | None = None  # set while it waits for its next attempt


class Notifier:
    """Sends each notification with the sender of its kind, in the background."""

    def __init__(
        self, senders: dict[str, Sender], settings: NotifySettings = NotifySettings(),
        count: Callable[[str, str], None] = lambda kind, outcome: None,
    ) -> None:
        self._senders = senders
        self._settings = settings
        self._count = count  # (kind, "sent" | "failed" | "dropped" | "retried")
        # Unbounded as a queue: `_jobs`, which holds every notification until it ends, is the bound.
        self._ready: asyncio.Queue[_Job] = asyncio.Queue()
        self._jobs: set[_Job] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task] = []
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"notifier-{index}")
                         for index in range(self._settings.workers)]

    def send(self, notification: Notification) -> bool:
        """Queue `notification` without waiting; False if it was dropped."""
        if notification.kind not in self._senders:
            raise ValueError(f"no sender for {notification.kind} notifications")
        if self._closed or len(self._jobs) >= self._settings.max_pending:
            why = "the client is stopping" if self._closed else f"{self._settings.max_pending} are waiting already"
            log.warning("notification dropped: %s of build %s to %s: %s",
                        notification.kind, notification.build_id, notification.where, why)
            self._count(notification.kind, "dropped")
            return False
        job = _Job(notification)
        self._jobs.add(job)
        self._idle.clear()
        self._ready.put_nowait(job)
        return True

    async def close(self) -> None:
        """Let what is pending finish for up to `close_grace_s`, then drop the rest."""
        self._closed = True
        try:
            async with asyncio.timeout(self._settings.close_grace_s):  # not wait_for: see client/links.py
                await self._idle.wait()
        except TimeoutError:
            pass
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._jobs:
            log.warning("stopping with %d notifications not sent", len(self._jobs))
        for job in list(self._jobs):
            if job.timer is not None:
                job.timer.cancel()
            self._end(job, "dropped")

    async def _work(self) -> None:
        while True:
            job = await self._ready.get()
            await self._attempt(job)

    async def _attempt(self, job: _Job) -> None:
        notification = job.notification
        job.attempts += 1
        try:
            await self._senders[notification.kind](notification)
        except DeliveryError as error:
            self._failed(job, error)
        except Exception:
            log.exception("bug while sending a %s notification of build %s", notification.kind, notification.build_id)
            self._end(job, "failed")
        else:
            log.info("notification sent: %s of build %s to %s, attempt %d",
                     notification.kind, notification.build_id, notification.where, job.attempts)
            self._end(job, "sent")

    def _failed(self, job: _Job, error: DeliveryError) -> None:
        notification = job.notification
        if error.retry and job.attempts < self._settings.max_attempts and not self._closed:
            backoff_s = self._settings.backoff_s(job.attempts)
            log.warning("notification %s of build %s to %s, attempt %d: %s; next attempt in %g s",
                        notification.kind, notification.build_id, notification.where, job.attempts, error.reason,
                        backoff_s)
            self._count(notification.kind, "retried")
            job.timer = asyncio.get_running_loop().call_later(backoff_s, self._due, job)
            return
        if error.retry and job.attempts >= self._settings.max_attempts:
            why, outcome = f"gave up after {job.attempts} attempts", "failed"
        elif error.retry:
            why, outcome = "not retried: the client is stopping", "dropped"
        else:
            why, outcome = "not retried", "failed"
        log.warning("notification %s of build %s to %s, attempt %d: %s; %s",
                    notification.kind, notification.build_id, notification.where, job.attempts, error.reason, why)
        self._end(job, outcome)

    def _due(self, job: _Job) -> None:
        job.timer = None
        self._ready.put_nowait(job)

    def _end(self, job: _Job, outcome: str) -> None:
        self._jobs.discard(job)
        self._count(job.notification.kind, outcome)
        if not self._jobs:
            self._idle.set()
