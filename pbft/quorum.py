"""Quorum rules as small pure functions (OSDI'99 §4.2, §4.1).

Every count is over distinct senders: callers keep votes in a mapping from
sender to what that sender said, so a repeated or replayed vote from one
node can never count twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Mapping, TypeVar

V = TypeVar("V", bound=Hashable)


def commit_quorum(n: int, f: int) -> int:
    """Distinct nodes whose matching votes make a certificate (COMMITs that make a request
    committed-local, CHECKPOINTs, VIEW-CHANGEs): ⌈(n+f+1)/2⌉, so that any two such sets share
    f+1 nodes, one of them honest, and the n-f honest nodes alone make one. It is 2f+1 when
    n = 3f+1, and more in a network with nodes beyond that (five nodes with f = 1 need four).
    """
    assert n >= 3 * f + 1, "n >= 3f+1"
    return (n + f) // 2 + 1


def prepare_quorum(n: int, f: int) -> int:
    """Matching PREPAREs from distinct backups that, with the pre-prepare, make a request prepared."""
    return commit_quorum(n, f) - 1


def reply_quorum(f: int) -> int:
    """Matching REPLYs a client needs: at least one of f+1 distinct nodes is honest."""
    return f + 1


def artifact_quorum(f: int) -> int:
    """Matching REPLYs a client needs for a build with artifacts: 2f+1, so that f+1 honest nodes
    hold what they name (whatever n is: this is about who holds the files, not about quorums
    that must intersect)."""
    return 2 * f + 1


def matching(votes: Mapping[int, V], value: V) -> int:
    """How many distinct senders voted for `value`."""
    return sum(1 for vote in votes.values() if vote == value)


def winner(votes: Mapping[int, V], needed: int) -> tuple[V, list[int]] | None:
    """The value at least `needed` distinct senders agree on, with those senders.

    With needed > len(votes)/2 at most one value can win; callers use the
    quorum sizes above, which guarantee that among honest-majority votes.
    """
    if not votes:
        return None
    value, count = Counter(votes.values()).most_common(1)[0]
    if count < needed:
        return None
    return value, sorted(sender for sender, vote in votes.items() if vote == value)


def verdict(
    votes: Mapping[int, V], n: int, f: int, chosen: tuple[int, ...] = (), proven: frozenset[int] = frozenset()
) -> tuple[str, V | None]:
    """What nodes' RESULT votes for one build amount to.

    "certified" once 2f+1 distinct nodes agree (two results can never both
    get there); "disputed" once no result can get there any more, however the
    missing nodes vote (honest nodes disagree: a flaky build); else "pending".
    A build only `chosen` builders ran (`pbft.builders`) is also certified once
    every one of them voted and all agree on a result without artifacts (a
    result's agreed key ends with its artifacts' digest, None without).

    `proven`: voters proven faulty, that signed two results for the build (`pbft.votes`).
    Each counts towards 2f+1 for whichever result the others agree on: a result is
    certified where 2f+1 nodes each signed it or are proven faulty. Two results still
    cannot both get there, since two such sets share f+1 nodes, an honest one among them,
    which is never proven and signs one result. A proven node is left out of the picked
    builders' agreement: at least one of the f+1 is honest and signs one result, the one
    every honest node that certified by that rule saw it sign (docs/faults.md, "A node
    signs two results for one build").
    """
    chosen = tuple(node for node in chosen if node not in proven)
    if chosen and all(node in votes for node in chosen):
        said = {votes[node] for node in chosen}
        if len(said) == 1 and next(iter(said))[-1] is None:  # type: ignore[index]
            return "certified", next(iter(said))
    counts = Counter(value for sender, value in votes.items() if sender not in proven)
    value, best = counts.most_common(1)[0] if counts else (None, 0)
    best += sum(1 for sender in proven if sender in votes)
    if value is not None and best >= commit_quorum(n, f):
        return "certified", value
    if best + (n - len(votes)) < commit_quorum(n, f):
        return "disputed", None
    return "pending", None
