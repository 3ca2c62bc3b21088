"""The client's Prometheus metrics (GET /metrics): webhooks answered, builds submitted and
their verdicts, webhook-to-verdict latency, the builds still waiting, and the notifications
of verdicts sent.

The metrics observe the client's events (client.events) as the records,
statuses and notifications do; the client's registry is its own, not the
library's global one.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from client.events import Event, Finished, HeldForApproval, OrderCancelled, Resumed, Submitted
from client.outcome import Abandoned, Accepted, Disputed, Divergent, TimedOut, Verdict

VERDICT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class ClientMetrics:
    def __init__(self, outstanding: Callable[[], int], queued: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("pbft_client_webhooks", "Webhook calls answered, by HTTP status", ["code"], registry=r)
        self.submitted_builds = Counter("pbft_client_builds_submitted", "Builds sent to the network", registry=r)
        self.resumed_builds = Counter("pbft_client_builds_resumed",
                                      "Builds without a verdict followed again after a restart", registry=r)
        self.verdicts = Counter(
            "pbft_client_verdicts",
            "Builds ended: accepted with f+1 matching replies (by result status), divergent (artifacts differ "
            "between nodes), disputed (no result can get 2f+1 replies: the nodes disagree), or without a "
            "verdict (no_quorum, abandoned)",
            ["status"], registry=r)
        self.verdict_seconds = Histogram("pbft_client_verdict_seconds", "From a build's request to its verdict",
                                         buckets=VERDICT_BUCKETS_S, registry=r)
        self.held_for_approval = Counter(
            "pbft_client_held_for_approval", "Fork pull requests held until someone approves them", registry=r)
        self.notifications = Counter(
            "pbft_client_notifications",
            "Notifications of verdicts (webhook, email) by how they ended: sent, failed (refused for good, or "
            "out of attempts) or dropped (no room in the queue, or the client stopped)",
            ["kind", "outcome"], registry=r)
        self.notification_retries = Counter(
            "pbft_client_notification_retries", "Notification attempts that failed and were tried again later",
            ["kind"], registry=r)
        self.reloads = Counter("pbft_client_reloads",
                               "Configuration reloads (SIGHUP) by outcome: applied, or refused (the running "
                               "configuration stays)", ["outcome"], registry=r)
        for outcome in ("applied", "refused"):
            self.reloads.labels(outcome)
        for kind in ("webhook", "email"):  # shown at 0 before the first, so that a rate can be taken
            self.notification_retries.labels(kind)
            for outcome in ("sent", "failed", "dropped"):
                self.notifications.labels(kind, outcome)
        outstanding_builds = Gauge("pbft_client_builds_waiting", "Builds sent and not yet ended", registry=r)
        outstanding_builds.set_function(outstanding)
        queued_builds = Gauge("pbft_client_builds_queued",
                              "Builds f+1 nodes say wait for a build slot (their signed BUILD-STATEs)", registry=r)
        queued_builds.set_function(queued)

    def observe(self, event: Event) -> None:
        match event:
            case Submitted():
                self.submitted_builds.inc()
            case HeldForApproval():
                self.held_for_approval.inc()
            case Resumed(build_ids=build_ids):
                self.resumed_builds.inc(len(build_ids))
            case Finished(verdict=verdict) | OrderCancelled(verdict=verdict):
                self._finished(verdict)

    def _finished(self, verdict: Verdict) -> None:
        match verdict.outcome:
            case Accepted(result=result):
                status = result.status
            case Divergent():
                status = "divergent"
            case Disputed():
                status = "disputed"
            case TimedOut():
                status = "no_quorum"
            case Abandoned():
                status = "abandoned"
        self.verdicts.labels(status).inc()
        self.verdict_seconds.observe(verdict.elapsed_ms / 1000)

    def count_notification(self, kind: str, outcome: str) -> None:
        """How a notification ended, or that an attempt is retried (client.notifier)."""
        if outcome == "retried":
            self.notification_retries.labels(kind).inc()
        else:
            self.notifications.labels(kind, outcome).inc()

    def count_reload(self, outcome: str) -> None:
        """How a configuration reload ended (shared.reload)."""
        self.reloads.labels(outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def count_webhooks(self) -> Callable:
        """A middleware counting the answers to POST /webHook, refusals included."""

        @web.middleware
        async def middleware(request: web.Request, handler) -> web.StreamResponse:
            if request.path != "/webHook":
                return await handler(request)
            try:
                response = await handler(request)
            except web.HTTPException as error:
                self.webhooks.labels(str(error.status)).inc()
                raise
            self.webhooks.labels(str(response.status)).inc()
            return response

        return middleware
