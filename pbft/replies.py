"""Counting signed replies until f+1 distinct nodes agree (OSDI'99 §4.1).

The client's rule, in the core so that the simulator's clients count
replies exactly as the real one does. Pure: no I/O and no clock. Callers hand in replies whose signatures they
have already checked. With at most f faulty nodes, f+1 matching replies
include at least one honest node, so the agreed result is one an honest
node produced; fewer never suffice, and a node's later replies never
replace its first, so no node can vote twice or change its vote.

A result that names artifacts (`Result.artifacts`) needs 2f+1 matching
replies, the quorum that certifies it in every node's ledger: then at
least f+1 honest nodes built those very bytes, and a build whose honest
nodes made different bytes cannot be accepted as any one of them. It ends
`divergent` instead, once at least f+1 nodes replied that it succeeded
with artifacts and no result can reach its quorum any more, however the
nodes yet to reply answer. Up to f liars alone cannot cause that: the
2f+1 honest nodes of a reproducible build still agree.

Past the f+1 replies that decide, the collector goes on counting towards
what every node's ledger will say of the build (`pbft.quorum.verdict`):
`certified` once 2f+1 replies match, or once every builder the order picked
for a repository with `builders: f+1` replied alike (`pbft.builders`), and
`disputed` once no result can get there any more (honest nodes disagree: a
flaky build). The client waits a
little for one of them before it answers (client/verbs/submit.py), so that a build
that passed on two nodes and failed on two is said to be disputed rather
than reported as whichever pair replied first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Mapping

from pbft.build import Result
from pbft.builders import named_by
from pbft.messages import Reply
from pbft.quorum import artifact_quorum, reply_quorum, verdict

AgreedResult = tuple


def agreed_part(result: Result) -> AgreedResult:
    """The hashable form of what honest nodes compute alike (status, exit code, commit, spec)."""
    return result.agreed_key()


class ReplyCollector:
    """The replies to one request `(client, timestamp)` and the verdict they make."""

    def __init__(self, client: str, timestamp: int, f: int, n: int | None = None) -> None:
        self.client = client
        self.timestamp = timestamp
        self._f = f
        self._n = 3 * f + 1 if n is None else n
        self._first_reply: dict[int, Reply] = {}
        self._votes: dict[int, AgreedResult] = {}
        self._agreed: tuple[AgreedResult, list[int]] | None = None
        self._divergent = False

    def add(self, reply: Reply) -> bool:
        """Count `reply`; return True only for the reply that decides the verdict
        (completes a quorum, or makes every quorum impossible for a build with artifacts)."""
        if (reply.client, reply.timestamp) != (self.client, self.timestamp):
            return False
        if reply.sender in self._first_reply:
            return False
        self._first_reply[reply.sender] = reply
        self._votes[reply.sender] = agreed_part(reply.result)
        if self.decided:
            return False
        self._agreed = self._winner(reply)
        self._divergent = self._agreed is None and self._diverged()
        return self.decided

    def has_reply_from(self, sender: int) -> bool:
        return sender in self._first_reply

    def _needed(self, result: Result) -> int:
        return reply_quorum(self._f) if result.artifacts is None else artifact_quorum(self._f)

    def _winner(self, reply: Reply) -> tuple[AgreedResult, list[int]] | None:
        # Only the newest reply's result gained a vote, so only it can have just won.
        key = self._votes[reply.sender]
        senders = sorted(sender for sender, vote in self._votes.items() if vote == key)
        return (key, senders) if len(senders) >= self._needed(reply.result) else None

    def _diverged(self) -> bool:
        missing = self._n - len(self._votes)
        counts = Counter(self._votes.values())
        results = {self._votes[sender]: reply.result for sender, reply in self._first_reply.items()}
        if any(count + missing >= self._needed(results[key]) for key, count in counts.items()):
            return False  # some result can still be accepted
        if missing and reply_quorum(self._f) <= missing:
            return False  # the missing nodes alone could still agree on a result without artifacts
        return self._divergent_outcome() is not None

    def _divergent_outcome(self) -> Result | None:
        """What at least f+1 nodes agree on but for their artifacts (the most replied such), if any."""
        outcomes: dict[AgreedResult, list[Result]] = {}
        for sender in sorted(self._first_reply):
            result = self._first_reply[sender].result
            if result.artifacts is not None:
                outcome = replace(result, artifacts=None)
                outcomes.setdefault(outcome.agreed_key(), []).append(outcome)
        found = max(outcomes.values(), key=len, default=[])
        return found[0] if len(found) >= reply_quorum(self._f) else None

    @property
    def accepted(self) -> bool:
        return self._agreed is not None

    @property
    def ledger_verdict(self) -> str:
        """What the nodes' ledgers will say, as far as the replies so far tell: "certified",
        "disputed", or "pending" (pbft.quorum.verdict over the replies, with the builders the
        order picked if f+1 replies name them: at least one of those is honest)."""
        return verdict(self._votes, self._n, self._f, self._chosen())[0]

    def _chosen(self) -> tuple[int, ...]:
        """The builders f+1 replies name (`pbft.builders`); () if no set is named that often."""
        return named_by((reply.builders for reply in self._first_reply.values()), reply_quorum(self._f))

    @property
    def disputed(self) -> bool:
        """Whether no result can get 2f+1 matching replies any more and the replies are not
        `divergent` (that is, the nodes disagree on more than their artifacts' bytes)."""
        return not self._divergent and self.ledger_verdict == "disputed"

    @property
    def settled(self) -> bool:
        """Whether the replies already say what the ledgers will: certified, disputed or divergent."""
        return self._divergent or self.ledger_verdict != "pending"

    @property
    def split(self) -> dict[int, Result]:
        """Each replying node's result, by node id."""
        return {sender: self._first_reply[sender].result for sender in sorted(self._first_reply)}

    @property
    def divergent(self) -> bool:
        """Whether the replies show nodes that built different artifacts, and no verdict can come."""
        return self._divergent

    @property
    def decided(self) -> bool:
        return self._agreed is not None or self._divergent

    @property
    def divergent_outcome(self) -> Result | None:
        """For a divergent build, what its nodes agree on apart from the artifacts
        (status, exit code, commit, spec; the reason of the lowest such node)."""
        return self._divergent_outcome() if self._divergent else None

    @property
    def artifacts_by_node(self) -> dict[int, str | None]:
        """Each replying node's artifact manifest digest, by node id (None: its result names none)."""
        return {sender: self._first_reply[sender].result.artifacts for sender in sorted(self._first_reply)}

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
