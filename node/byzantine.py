"""Byzantine behaviours for demos and tests (`node/index.py --byzantine MODE`).

A behaviour sits between an honest node and the world: it may wrap each peer
link and each client connection, and rewrite build results before the node
signs them. The protocol core stays honest; every misbehaviour is something a
real faulty node could do on the wire. Nodes refuse these modes unless the
configuration sets `allow_byzantine: true`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from pbft.messages import Result

logger = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, frame: str) -> None: ...


class Behaviour:
    """Honest: passes everything through unchanged. Subclasses each misbehave in one way."""

    name = "honest"

    def peer(self, peer_id: int, link: Sender) -> Sender:
        return link

    def client(self, connection: Sender) -> Sender:
        return connection

    def tamper(self, result: Result) -> Result:
        return result


class Lie(Behaviour):
    """Report the opposite of what each build did: a flipped status and exit code."""

    name = "lie"

    def tamper(self, result: Result) -> Result:
        if result.status == "success":
            lied = replace(result, status="failure", exit_code=1)
        elif result.status == "failure":
            lied = replace(result, status="success", exit_code=0)
        else:
            return result
        logger.warning("byzantine lie: reporting %s instead of %s", lied.agreed(), result.agreed())
        return lied


HONEST = Behaviour()
MODES = {"lie": Lie}
