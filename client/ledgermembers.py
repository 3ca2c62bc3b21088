"""Whose votes count for a build another client asked for: the members and f in force at the
sequence number it was ordered at, as the ledger import learns them from the order it reads
(client.ledgerimport).

A change of the network document that adds, removes or re-keys a node, or changes f, executes
at some sequence number s like any request (pbft.epochs): the members before it vote on the
builds ordered up to s, those it names on the builds after s. A node that has left since, or
signs with another key now, signed the votes of a build ordered before the change validly
then, so a client that imports that build checks its votes against the members of the build's
own sequence number, as every node does (`pbft.epochs.Epochs.members_at`), never against
today's: with today's, a build every ledger certified could stay pending and end `timeout`.

The import reads every sequence number of the order in turn, and the changes with the rest: a
change's request carries the whole document it makes, signed by the client that handed it in,
and f+1 RESULT votes of the members before it say that it applied. From the next sequence
number on, its members count here. The reading does not move past a change of the members
until its verdict is known (client.ledgerimport), so the members of every build it reads are.

Kept, in the records, so that a restart reads on with them: the members of the last MAX_PAST
changes and those before them, a few rows a year however long the ledger (pbft.epochs keeps
as many). A build ordered before the oldest kept is checked against the oldest, as a node does.

What the client cannot know is the members before the first change it reads: a change carries
the document it makes and only the digest of the one it replaces, and nothing signed by f+1
members names a document by its contents. So until it has read a change of the members, the
client takes the members of the document it started with to be in force from the start of the
order, as a node does until its ledger holds a change (pbft.replica: its epochs begin with
the document it starts with). That is right for a client started from the document the network
started from, which every host's file holds (a change through the order never rewrites it:
docs/operations.md), and for a network without owners, whose members change only at a
restart of every node with a new file. A client started with a later document than the
network's first checks the builds before the first change it reads against that document's
members: one of them whose votes only the members of its day make f+1 of stays pending and
ends `timeout`, as every such build did before the import knew earlier members.
"""

from __future__ import annotations

import functools
import logging

from client.tables.imported import Imported
from pbft.epochs import MAX_PAST, Epochs
from pbft.networks import membership_problem
from pbft.membership import Membership
from shared.config import NetworkConfig
from shared.crypto import parse_public_key

log = logging.getLogger(__name__)

# The members of a build, for its votes alone: no log window applies to them here.
NO_LOG_WINDOW = 0


class LedgerMembers:
    def __init__(self, imported: Imported, started: NetworkConfig) -> None:
        """The members `imported` keeps from the changes read; until one was, those of
        `started`, the document the client started with, from the start of the order."""
        self._imported = imported
        kept = imported.memberships()
        if len(kept) < 2:
            kept = [(0, started.f, [(node.id, node.public_key) for node in started.nodes])]
            imported.add_membership(*kept[0], keep=MAX_PAST + 1)
        (_, f, keys), *later = kept
        self._epochs = Epochs(Membership.of(keys, f, NO_LOG_WINDOW))
        for start, f, keys in later:
            self._begin(start, Membership.of(keys, f, NO_LOG_WINDOW))

    def at(self, seq: int) -> Membership:
        """The members whose votes count for a build ordered at `seq`, and f."""
        return self._epochs.members_at(seq)

    @property
    def last_change(self) -> int:
        """The sequence number of the last change of the members learnt (0: none)."""
        return self._epochs.current.start

    def learn(self, seq: int, document: dict) -> None:
        """The change executed at `seq` applied, with the network document `document`: if it
        names other members or another f than those before it, they count after `seq`."""
        members = named_by(document)
        if members is None or seq <= self.last_change or members == self.at(seq):
            return
        self._begin(seq, members)
        self._imported.add_membership(seq, members.f, list(members.keys), keep=MAX_PAST + 1)
        log.warning("the members change after sequence number %d: nodes %s, f=%d; the votes of the builds "
                    "ordered after it are checked against them", seq, list(members.ids), members.f)

    def _begin(self, start: int, members: Membership) -> None:
        self._epochs.pend(start, members)
        self._epochs.begin()


def named_by(document: dict) -> Membership | None:
    """The members and f a network document names; None if they make no membership."""
    if membership_problem(document) is not None:
        return None
    return Membership.of(((node["id"], node["public_key"]) for node in document["nodes"]), document["f"],
                         NO_LOG_WINDOW)


@functools.lru_cache(maxsize=1024)
def public_key(hex_key: str):
    """A member's public key, parsed once: a few keys sign every vote the import checks."""
    return parse_public_key(hex_key)
