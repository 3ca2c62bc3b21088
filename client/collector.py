"""Counting signed replies until f+1 distinct nodes agree (OSDI'99 §4.1).

Pure: no I/O and no clock. Callers hand in replies whose signatures they
have already checked. With at most f faulty nodes, f+1 matching replies
include at least one honest node, so the agreed result is one an honest
node produced; fewer never suffice, and a node's later replies never
replace its first, so no node can vote twice or change its vote.
"""

from __future__ import annotations

from typing import Mapping

from pbft.messages import Reply, Result
from pbft.quorum import reply_quorum, winner

AgreedResult = tuple


def agreed_part(result: Result) -> AgreedResult:
    """The hashable form of what honest nodes compute alike (status, exit code, commit, spec)."""
    return result.agreed_key()


class ReplyCollector:
    """The replies to one request `(client, timestamp)` and the verdict they make."""

    def __init__(self, client: str, timestamp: int, f: int) -> None:
        self.client = client
        self.timestamp = timestamp
        self._needed = reply_quorum(f)
        self._first_reply: dict[int, Reply] = {}
        self._votes: dict[int, AgreedResult] = {}
        self._agreed: tuple[AgreedResult, list[int]] | None = None

    def add(self, reply: Reply) -> bool:
        """Count `reply`; return True only for the reply that completes the quorum."""
        if (reply.client, reply.timestamp) != (self.client, self.timestamp):
            return False
        if reply.sender in self._first_reply:
            return False
        self._first_reply[reply.sender] = reply
        self._votes[reply.sender] = agreed_part(reply.result)
        if self._agreed is not None:
            return False
        self._agreed = winner(self._votes, self._needed)
        return self._agreed is not None

    @property
    def accepted(self) -> bool:
        return self._agreed is not None

    @property
    def agreed_by(self) -> list[int]:
        """The senders whose replies formed the quorum, in id order."""
        return [] if self._agreed is None else list(self._agreed[1])

    @property
    def certificate(self) -> list[Reply]:
        """The signed replies behind the verdict: anyone with the public keys can recheck it."""
        return [self._first_reply[sender] for sender in self.agreed_by]

    @property
    def result(self) -> Result | None:
        """The agreed result; its free-text reason is taken from the lowest agreeing node."""
        certificate = self.certificate
        return certificate[0].result if certificate else None

    @property
    def replies(self) -> list[Reply]:
        """Every counted reply (the first from each sender), in arrival order."""
        return list(self._first_reply.values())


def vouched_view(views: Mapping[int, int], f: int) -> int:
    """The highest view that at least f+1 distinct nodes have reported reaching.

    A client directs its first send to the primary of this view. Taking the
    (f+1)-th highest report means one faulty node announcing an absurd view
    cannot steer the client's requests to a primary of its choosing.
    """
    reports = sorted(views.values(), reverse=True)
    return reports[f] if len(reports) > f else 0
