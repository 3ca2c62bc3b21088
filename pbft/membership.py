"""Who counts: the members of the network in one epoch, their keys and f.

Neutral ground for the ordering (views, view changes, epochs) and the CI's
state machine (result votes), which both count messages by member.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable

from pbft.authenticator import Authenticator
from pbft.quorum import commit_quorum


@dataclass(frozen=True)
class Membership:
    """The nodes whose messages count, with the key each signs with, and f.

    `keys` holds each node's id and public key (64 hex digits), sorted by id; a key of ""
    is one the authenticator holds by the node's id (the simulator's, core tests' networks,
    which have no network document). Ids need not be 0..n-1: the primary of view v is the
    (v mod n)-th id, in order."""

    keys: tuple[tuple[int, str], ...]
    f: int
    log_window: int

    @classmethod
    def of(cls, keys: Iterable[tuple[int, str]], f: int, log_window: int) -> Membership:
        return cls(tuple(sorted(keys)), f, log_window)

    @functools.cached_property
    def ids(self) -> tuple[int, ...]:
        return tuple(node for node, _ in self.keys)

    @functools.cached_property
    def key_of(self) -> dict[int, str]:
        return dict(self.keys)

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def quorum(self) -> int:
        """How many of the members make a certificate (`pbft.quorum.commit_quorum`)."""
        return commit_quorum(self.n, self.f)

    def __contains__(self, node: int) -> bool:
        return node in self.key_of

    def primary(self, view: int) -> int:
        return self.ids[view % self.n]

    def signature_problem(self, message, auth: Authenticator) -> str | None:
        """Why `message` is not signed by the member it names as its sender, or None."""
        key = self.key_of.get(message.sender)
        if key is None:
            return "unknown_sender"
        if key:
            signed_by_it = auth.verify_key(key, message.payload(), message.sig)
        else:
            signed_by_it = auth.verify_node(message.sender, message.payload(), message.sig)
        return None if signed_by_it else "bad_signature"

    def signed_by_member(self, message, auth: Authenticator) -> bool:
        return self.signature_problem(message, auth) is None
