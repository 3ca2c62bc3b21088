"""A request's verdict, from the replies collected for it, and the log line that says it.

The collector (pbft.replies) decides; this reads its decision in the order
that makes a verdict honest: divergent first (the nodes built different
artifacts), then disputed (no result can reach 2f+1 replies, even if f+1
agreed first), then accepted; without any of them, abandoned if the client
is stopping (the network may still build it) and timed out otherwise. The
ledger import reads another client's build from its nodes' votes by the same
rule (`outcome_of`, `settling`), so that every client records one verdict.
"""

from __future__ import annotations

import logging

from client.outcome import Abandoned, Accepted, Disputed, Divergent, Outcome, TimedOut, Verdict
from client.requests import Outstanding, RequestCore
from pbft.replies import ReplyCollector

log = logging.getLogger(__name__)


def outcome_of(collector: ReplyCollector, quorum_ms: float | None = None) -> Outcome | None:
    """What the replies `collector` counted make of a build once nobody waits for more of them,
    read in the order that makes a verdict honest; None while they make none. The signing
    client's rule, and the ledger import's for the votes of another client's build
    (client.ledgerimport), so that both record one verdict. `quorum_ms`: when f+1 replies
    first agreed, for the outcome to carry."""
    if collector.divergent:
        return Divergent(collector.divergent_outcome, collector.artifacts_by_node)
    if collector.disputed:
        return Disputed(collector.split, quorum_ms)
    if collector.accepted:
        return Accepted(collector.result, collector.agreed_by, quorum_ms)
    return None


def settling(collector: ReplyCollector) -> bool:
    """Whether a build whose f+1 replies agree waits on for its verdict to settle: until the
    replies say what the nodes' ledgers will (`ReplyCollector.settled`: 2f+1 agree, or no
    result can get there any more), for at most client_settle_s after the f+1 first agreed
    (client.verbs.submit, and client.ledgerimport for another client's build)."""
    return collector.accepted and not collector.settled


def verdict_of(outstanding: Outstanding, core: RequestCore, elapsed_ms: int, quorum_ms: float) -> Verdict:
    """The verdict of `outstanding` once the client stops waiting for it; `quorum_ms`: when f+1
    replies first agreed, or the wait ended without them."""
    collector, operation, build_id = outstanding.collector, outstanding.operation, outstanding.build_id
    replies = collector.replies
    outcome = outcome_of(collector, quorum_ms)
    match outcome:
        case Divergent():
            log.warning(
                "divergent build %d: %s status=%s commit=%s nodes built different artifacts: %s elapsed_ms=%d",
                build_id, operation.branch, outcome.result.status, outcome.result.commit,
                " ".join(f"node{node}={digest}" for node, digest in outcome.artifacts_by_node.items()), elapsed_ms,
            )
        case Disputed():
            log.warning(
                "disputed build %d: %s the nodes disagree, no result has %d replies: %s elapsed_ms=%d",
                build_id, operation.branch, 2 * core.f + 1,
                " ".join(f"node{node}={result.status}/{result.exit_code}" for node, result in outcome.split.items()),
                elapsed_ms,
            )
        case Accepted():
            log.info(
                "accepted build %d: %s status=%s exit_code=%s commit=%s view=%d agreed_by=%s elapsed_ms=%d"
                " f_plus_1_ms=%.0f %s",
                build_id, operation.branch, outcome.result.status, outcome.result.exit_code, outcome.result.commit,
                core.view, outcome.agreed_by, elapsed_ms, quorum_ms or 0,
                collector.ledger_verdict if collector.settled else "not settled within client_settle_s",
            )
        case None if core.closing:
            # Its record stays pending: the network may still build it, and the client
            # follows it again when it restarts (client.verbs.resume).
            outcome = Abandoned()
            log.warning("build %d: %s left without a verdict at shutdown; followed again after a restart",
                        build_id, operation.branch)
        case None:
            outcome = TimedOut(outstanding.progress(core.f + 1))
            log.warning(
                "timed out build %d: %s view=%d no quorum among replies_from=%s elapsed_ms=%d",
                build_id, operation.branch, core.view, [reply.sender for reply in replies], elapsed_ms,
            )
    return Verdict(str(build_id), outcome, replies, elapsed_ms)
