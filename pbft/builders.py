"""Which members build a request: all of them, or f+1 the order picks, and when the others do.

A verdict needs f+1 matching signed results, and f+1 honest builders that agree give
exactly that; so a repository may ask for `builders: f+1` (shared/config_repositories.py,
agreed in the network document). For the request executed at sequence number `seq`, the
chosen builders are the f+1 members from the (seq mod n)-th on, by id, wrapping round: a
function of the order alone, so every honest node names the same ones, and the load rotates.

The other members stand by (`Standby`), and build as well when
- two chosen builders' results differ: the members' usual quorum has to settle it;
- a chosen builder's result carries artifacts: those are agreed by 2f+1 matching results
  (`pbft.quorum.artifact_quorum`), since each node serves the bytes its own build made;
- the verdict is still open `standby_s` after the first chosen builder's result came: a
  chosen builder is silent, slow or gone. At least one chosen builder is honest and votes
  in the end, so a silent one costs at most `standby_s` and one more build;
- the client sends the request again after the verdict was decided: a chosen builder may
  have voted one result to its peers and replied another to the client, which then lacks
  f+1 matching replies. (Before the verdict, a client resends every build that runs longer
  than `client_retransmit_s`: that alone is no reason to build.)

The verdict of such a build is certified once every chosen builder voted and all agree,
without artifacts (`pbft.quorum.verdict`'s `chosen`); otherwise by the usual quorum. At
least one of the f+1 is honest, so a result they all sign is an honest node's: a liar among
them costs time, never a wrong verdict.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from pbft.messages import Request

BUILDERS = ("all", "f+1")


def builders_of(document: dict, repository: str) -> str:
    """The repository's `builders` in the network document: `all` unless it says `f+1`."""
    for entry in document.get("repositories") or ():
        if isinstance(entry, dict) and entry.get("name") == repository:
            return "f+1" if entry.get("builders") == "f+1" else "all"
    return "all"


def chosen_builders(seq: int, ids: tuple[int, ...], f: int) -> tuple[int, ...]:
    """The f+1 members that build the request executed at `seq`, sorted by id."""
    assert list(ids) == sorted(set(ids)) and len(ids) > f >= 0, "member ids, sorted, more than f"
    return tuple(sorted(ids[(seq + i) % len(ids)] for i in range(f + 1)))


def picked(document: dict | None, repository: str, seq: int, ids: tuple[int, ...], f: int) -> tuple[int, ...]:
    """The members the order picked to build a request of `repository` executed at `seq`,
    `ids` and `f` being the membership there: f+1 of them if the document in force asks for
    it, else () (every member builds it)."""
    if builders_of(document or {}, repository) != "f+1":
        return ()
    return chosen_builders(seq, ids, f)


def named_by(named: Iterable[tuple[int, ...]], needed: int) -> tuple[int, ...]:
    """The picked builders that `needed` signed replies name alike (f+1: one of them honest),
    from each reply's `builders`; () if no set is named that often."""
    counts = Counter(builders for builders in named if builders)
    return next((builders for builders, count in counts.items() if count >= needed), ())


@dataclass
class Waiting:
    """A build this node stands by for: where it was executed, who builds it, and when the
    first chosen builder's result came (None: not yet)."""

    seq: int
    request: Request
    chosen: tuple[int, ...]
    first_vote_at: float | None = None
    decided: bool = False  # its verdict is: only its client's asking again makes this node build it


class Standby:
    """The builds this node stands by for, until it builds one or the client table forgets it
    (which bounds them). Once a verdict is decided, only the client sending the request again
    makes this node build it: a picked builder may have told its peers one result and the
    client another, so that the client lacks f+1 matching replies."""

    def __init__(self, standby_s: float) -> None:
        self.standby_s = standby_s
        self.waiting: dict[tuple[str, int], Waiting] = {}

    def wait(self, seq: int, request: Request, chosen: tuple[int, ...]) -> Waiting:
        waiting = self.waiting[request.key] = Waiting(seq, request, chosen)
        return waiting

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self.waiting

    def open(self, key: tuple[str, int]) -> bool:
        """Whether this node stands by for `key` and its verdict is still open."""
        waiting = self.waiting.get(key)
        return waiting is not None and not waiting.decided

    def vote(self, key: tuple[str, int], sender: int, now: float) -> None:
        """A vote for `key` was kept: the first chosen builder's starts the wait."""
        waiting = self.waiting.get(key)
        if waiting is not None and waiting.first_vote_at is None and sender in waiting.chosen:
            waiting.first_vote_at = now

    def decided(self, key: tuple[str, int]) -> None:
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting.decided = True

    def overdue(self, now: float) -> list[tuple[str, int]]:
        """The open builds whose first chosen result came `standby_s` ago or more, oldest first."""
        return [key for key, waiting in sorted(self.waiting.items(), key=lambda item: item[1].seq)
                if not waiting.decided and waiting.first_vote_at is not None
                and now >= waiting.first_vote_at + self.standby_s]

    def take(self, key: tuple[str, int]) -> Waiting:
        """This node builds `key` after all."""
        return self.waiting.pop(key)

    def drop(self, key: tuple[str, int]) -> None:
        """The client table forgot `key`: nothing to stand by for."""
        self.waiting.pop(key, None)
