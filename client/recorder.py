"""The build records as an observer of the client's events (client.events).

What happens to a build reaches its record the way it reaches the commit
statuses, the notifications and the metrics: a signed request becomes a
pending row (with the build it re-runs, the matrix it belongs to, or what its
forge said of its commit), a verdict is written onto it, a verdict the order
overruled becomes `cancelled`, a reply that came late joins the others. The
writes join the records' open transaction: whoever answers a caller waits
for the group commit first (client.tables.store).

The recorder is the stream's critical observer: a verdict it cannot write
fails the build, rather than being answered with no record behind it.
"""

from __future__ import annotations

import asyncio
import logging

from client.events import Event, Finished, GivenUp, LateReply, OrderCancelled, Origin, Requested
from client.outcome import Abandoned, Accepted, Disputed, Divergent, TimedOut, Verdict
from client.records import BuildRecords
from client.requests import RequestSettings
from pbft.messages import Reply, Request

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, records: BuildRecords, f: int, settings: RequestSettings) -> None:
        self._records = records
        self._f = f
        self._settings = settings

    def observe(self, event: Event) -> None:
        match event:
            case Requested(request=request, submitted_at=submitted_at, origin=origin):
                self._requested(request, submitted_at, origin)
            case Finished(verdict=verdict):
                self._finished(verdict)
            case OrderCancelled(verdict=Verdict(build_id=build_id, outcome=Accepted() as cancelled)):
                self._records.verdicts.cancelled_by_order(int(build_id), cancelled.result, cancelled.agreed_by)
            case LateReply(reply=reply, at_s=at_s):
                self._late(reply, at_s)
            case GivenUp(before=before, followed=followed):
                if self._records.verdicts.give_up_pending(before):
                    log.warning("client restarted with more than %d builds without a verdict: older ones end timeout",
                                followed)

    def _requested(self, request: Request, submitted_at: float, origin: Origin) -> None:
        builds, build_id = self._records.builds, request.timestamp
        builds.add_pending(request, submitted_at)
        if origin.commit_info is not None:
            info = origin.commit_info
            builds.describe_commit(build_id, info.message, info.author, info.url)
        if origin.rerun_of is not None:
            builds.link_rerun(build_id, origin.rerun_of)
        if origin.matrix_of is not None:
            builds.link_matrix(build_id, origin.matrix_of)

    def _finished(self, verdict: Verdict) -> None:
        verdicts, build_id = self._records.verdicts, int(verdict.build_id)
        match verdict.outcome:
            case Accepted(result=result, agreed_by=agreed_by):
                verdicts.accept(build_id, result, agreed_by, verdict.elapsed_ms, verdict.replies)
            case Divergent(result=result, artifacts_by_node=by_node):
                verdicts.diverge(build_id, result, by_node, verdict.elapsed_ms, verdict.replies)
            case Disputed(split=split):
                verdicts.dispute(build_id, split, self._f, verdict.elapsed_ms, verdict.replies)
            case TimedOut():
                verdicts.time_out(build_id, verdict.elapsed_ms, verdict.replies)
            case Abandoned():
                pass  # pending still: the client follows it again when it restarts

    def _late(self, reply: Reply, at_s: float) -> None:
        """Keep a reply that came after its build's verdict with the build's record, so that the
        record tells a node that answered late from one that never did (within
        client.tables.verdicts `replies_until`). It changes no verdict."""
        if self._records.verdicts.add_late_reply(reply, at_s, self._settings.deadline_s, self._settings.settle_s):
            log.debug("late reply from node %d for build %d kept", reply.sender, reply.timestamp)
            # Nobody waits for this commit: a failure of it is logged here.
            self._records.store.commit_soon().add_done_callback(_log_failure)


def _log_failure(commit: asyncio.Future) -> None:
    if not commit.cancelled() and commit.exception() is not None:
        log.error("late replies not committed: %s", commit.exception())
