"""A node's client connections: where its replies and the news of its builds go.

A connection carries a client's replies once it has said HELLO with that client's signature
of the challenge issued on it (`node.driver.Driver` checks the HELLO against the replica's
keys): replies never go to an address taken from a message, and nobody but the key holder
subscribes to a client's replies. The executor tells each build's client here when the build
waits for a build slot and when it takes one (`build_state`), signed with the node's key.
"""

from __future__ import annotations

import json
import secrets
from typing import Callable, Protocol

from pbft.handshake import CHALLENGE_BYTES, Challenge
from pbft.messages import BuildState, encode, signed


class Sender(Protocol):
    def send(self, frame: str) -> None: ...


class ClientLinks:
    """The connections of the clients that proved their key on them, by client name."""

    def __init__(self, node_id: int, sign: Callable[[bytes], str]) -> None:
        self._node_id = node_id
        self._sign = sign
        self.connections: dict[str, set[Sender]] = {}
        # The challenge issued on each client connection that has not said HELLO yet.
        self._challenges: dict[Sender, str] = {}

    def issue_challenge(self, connection: Sender) -> Challenge:
        """A fresh challenge for a new client connection: the one HELLO it may carry must sign it."""
        challenge = Challenge(secrets.token_hex(CHALLENGE_BYTES))
        self._challenges[connection] = challenge.challenge
        return challenge

    def take_challenge(self, connection: Sender) -> str | None:
        """The challenge issued on `connection`, once: each connection gets one attempt."""
        return self._challenges.pop(connection, None)

    def add(self, client: str, connection: Sender) -> None:
        self.connections.setdefault(client, set()).add(connection)

    def gone(self, connection: Sender) -> None:
        self._challenges.pop(connection, None)
        for connections in self.connections.values():
            connections.discard(connection)

    def send(self, client: str, frame: str) -> None:
        for connection in list(self.connections.get(client, ())):
            connection.send(frame)

    def build_state(self, build_id: str, state: str, supersedes: str | None = None) -> None:
        """The executor's news of a build (queued, or running, and which older build of its
        concurrency group it asks to cancel): signed, to the build's client."""
        client, _, timestamp = build_id.rpartition("-")
        if not self.connections.get(client) or not timestamp.isdecimal():
            return
        older_client, _, older = (supersedes or "").rpartition("-")
        # A client cancels only its own builds (pbft.cancels): another's it is not told of.
        superseded = int(older) if older_client == client and older.isdecimal() else 0
        news = signed(BuildState(int(timestamp), client, state, self._node_id, supersedes=superseded), self._sign)
        self.send(client, json.dumps(encode(news)))
