"""A simulated client (OSDI'99 §4.1): signs requests with increasing
timestamps, sends each to the primary it believes current, retransmits to
all nodes on timeout, and counts signed replies with the real client's rule
(`pbft.replies`): f+1 matching replies, 2f+1 for a result with artifacts,
or a `divergent` verdict when nodes built different artifacts. As the real
client does (client/verbs/cancel.py), once a cancel of one of its builds has its
verdict, that build is `cancelled` (`pbft.cancels`): the order decided it,
whatever its own replies, split between nodes that finished it first and
nodes that stopped it, can still make. A request the order found a duplicate of
an earlier one's delivery is answered `skipped` by every honest node
(`pbft.deliveries`): f+1 such replies are its verdict, as any result's are.
"""

from __future__ import annotations

from typing import Callable

from pbft.build import Operation, Result
from pbft.cancels import cancelled_result
from pbft.messages import Reply, Request, signed
from pbft.replies import ReplyCollector
from pbft.sim.auth import SimAuthenticator
from pbft.membership import Membership

Verdict = tuple  # the agreed part of a result, hashable
DIVERGENT = "divergent"  # a divergent verdict is (DIVERGENT, what the nodes agree on apart from artifacts)


def verdict(result: Result) -> Verdict:
    return result.agreed_key()


class SimClient:
    def __init__(self, name: str, auth: SimAuthenticator, n: int, f: int,
                 members: Callable[[], Membership] | None = None) -> None:
        """`members()`: the membership the order runs now, which a real client learns from f+1
        nodes (client.networkdocs); the requests it makes count replies by it."""
        self.name = name
        self.auth = auth
        self.n = n
        self.f = f
        self._members = members
        self.view = 0  # from the replies of its last accepted verdict
        self._last_timestamp = 0
        self.requests: dict[int, Request] = {}  # timestamp -> request, every one submitted
        self._collectors: dict[int, ReplyCollector] = {}  # timestamp -> its replies, until decided
        self.accepted: dict[int, Verdict] = {}  # decided: accepted or divergent
        self.cancelled_by_order: set[int] = set()  # builds accepted `cancelled` on their cancel's verdict

    @property
    def primary(self) -> int:
        return self.view % self.n if self._members is None else self._members().primary(self.view)

    def new_request(self, operation: Operation) -> Request:
        self._last_timestamp += 1
        request = signed(Request(self.name, self._last_timestamp, operation), self.auth.sign)
        self.requests[request.timestamp] = request
        f, n = (self.f, self.n) if self._members is None else (self._members().f, self._members().n)
        self._collectors[request.timestamp] = ReplyCollector(self.name, request.timestamp, f, n)
        return request

    def on_reply(self, reply: Reply) -> tuple[list[tuple[int, Verdict]], str | None]:
        """Count one reply: return the verdicts it decided (its request's, and the cancelled
        build's when it decides a cancel), else why it did nothing."""
        decided, reason = self._count(reply)
        if decided is None:
            return [], reason
        verdicts = [(reply.timestamp, decided)]
        target = self.requests[reply.timestamp].operation.cancels
        if target is not None and decided[0] == "success" and target in self._collectors:
            del self._collectors[target]
            self.accepted[target] = verdict(cancelled_result())
            self.cancelled_by_order.add(target)
            verdicts.append((target, self.accepted[target]))
        return verdicts, None

    def _count(self, reply: Reply) -> tuple[Verdict | None, str | None]:
        if reply.client != self.name or reply.timestamp not in self.requests:
            return None, "ignore_reply_unknown_request"
        if reply.timestamp in self.accepted:
            return None, "ignore_reply_already_accepted"
        if not 0 <= reply.sender < self.n or not self.auth.verify_node(reply.sender, reply.payload(), reply.sig):
            return None, "ignore_reply_bad_signature"
        collector = self._collectors[reply.timestamp]
        if collector.has_reply_from(reply.sender):
            return None, "ignore_reply_duplicate"
        if not collector.add(reply):
            return None, None
        del self._collectors[reply.timestamp]
        if collector.divergent:
            self.accepted[reply.timestamp] = (DIVERGENT, verdict(collector.divergent_outcome))
            return self.accepted[reply.timestamp], None
        self.accepted[reply.timestamp] = verdict(collector.result)
        # At least one of the matching repliers is honest, so the lowest view they report is not inflated.
        self.view = max(self.view, min(reply.view for reply in collector.certificate))
        return self.accepted[reply.timestamp], None
