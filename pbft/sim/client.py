"""A simulated client (OSDI'99 §4.1): signs requests with increasing
timestamps, sends each to the primary it believes current, retransmits to
all nodes on timeout, and accepts a verdict once f+1 distinct nodes sign
the same agreed result.
"""

from __future__ import annotations

from pbft.messages import Operation, Reply, Request, Result, signed
from pbft.quorum import reply_quorum
from pbft.sim.auth import SimAuthenticator

Verdict = tuple  # the agreed part of a result, hashable


def verdict(result: Result) -> Verdict:
    return result.agreed_key()


class SimClient:
    def __init__(self, name: str, auth: SimAuthenticator, n: int, f: int) -> None:
        self.name = name
        self.auth = auth
        self.n = n
        self.f = f
        self.view = 0  # from the replies of its last accepted verdict
        self._last_timestamp = 0
        self.requests: dict[int, Request] = {}  # timestamp -> request, every one submitted
        self._votes: dict[int, dict[int, tuple[Verdict, int]]] = {}  # timestamp -> sender -> (verdict, view)
        self.accepted: dict[int, Verdict] = {}

    @property
    def primary(self) -> int:
        return self.view % self.n

    def new_request(self, operation: Operation) -> Request:
        self._last_timestamp += 1
        request = signed(Request(self.name, self._last_timestamp, operation), self.auth.sign)
        self.requests[request.timestamp] = request
        self._votes[request.timestamp] = {}
        return request

    def on_reply(self, reply: Reply) -> tuple[Verdict | None, str | None]:
        """Count one reply: return the verdict if it completes a certificate, else why it did nothing."""
        if reply.client != self.name or reply.timestamp not in self.requests:
            return None, "ignore_reply_unknown_request"
        if reply.timestamp in self.accepted:
            return None, "ignore_reply_already_accepted"
        if not 0 <= reply.sender < self.n or not self.auth.verify_node(reply.sender, reply.payload(), reply.sig):
            return None, "ignore_reply_bad_signature"
        votes = self._votes[reply.timestamp]
        if reply.sender in votes:
            return None, "ignore_reply_duplicate"
        votes[reply.sender] = (verdict(reply.result), reply.view)
        matching = [view for vote, view in votes.values() if vote == votes[reply.sender][0]]
        if len(matching) < reply_quorum(self.f):
            return None, None
        self.accepted[reply.timestamp] = votes[reply.sender][0]
        del self._votes[reply.timestamp]
        # At least one of the matching repliers is honest, so the lowest view they report is not inflated.
        self.view = max(self.view, min(matching))
        return self.accepted[reply.timestamp], None
