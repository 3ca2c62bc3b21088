"""A build as the order gives it to the node that runs it.

Everything a build depends on that the order decides travels with it: the request, the
sequence number it executed at, the network document in force there (a change executed
later, even in the same turn or replayed before a restart's reruns, does not reach it) and
the builders the order picked. A driver turns it into a `builder.order.BuildOrder` with the
node's own settings for that document, never with whatever configuration it runs by then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pbft.messages import Request


@dataclass(frozen=True)
class OrderedBuild:
    seq: int
    request: Request
    # The digest of the document in force at `seq` (`pbft.networks.NetworkState.document_at`);
    # "" if it is no longer kept (a build still to run after more changes than the history
    # holds), which the driver answers with an error result rather than guess.
    network: str
    # That document, shared with the replica's history and never changed; None for the
    # configuration file's own network, which no change replaced, or if not kept.
    document: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    builders: tuple[int, ...] = ()  # the f+1 members the order picked (`pbft.builders`); () for all

    @classmethod
    def at(cls, seq: int, request: Request, found: tuple[str, Mapping[str, Any] | None] | None,
           builders: tuple[int, ...] = ()) -> OrderedBuild:
        """`request` executed at `seq`, with `found`, the document in force there as the
        network's history gives it (`NetworkState.document_at`: None if no longer kept)."""
        network, document = found or ("", None)
        return cls(seq, request, network, document, builders)
