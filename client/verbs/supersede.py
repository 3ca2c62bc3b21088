"""A concurrency group's `cancel_in_progress`: a newer build of the group cancels the older one
it waits for, through the order.

Only nodes read the spec, so only they know two builds share a group: each node that holds a
newer build back behind an older one of its group, whose spec asks for it, names the older
one in its signed BUILD-STATE (builder/executor.py). Once f+1 nodes name the same one (so at
least one honest node read both specs), the client cancels it as any cancel (client.verbs.cancel):
ordered, so every node stops it at the same point of the order and its verdict is `cancelled`
on each, never a split between nodes that finished it and nodes that stopped it. A build that
has its verdict already, or that another client asked for, is left as it is.
"""

from __future__ import annotations

import logging

from client.events import Superseding
from client.tables.builds import Builds
from client.verbs.cancel import Cancel, CancelBook

log = logging.getLogger(__name__)


class Supersede:
    def __init__(self, builds: Builds, cancel: Cancel, cancels: CancelBook, client_name: str) -> None:
        self._builds = builds
        self._cancel = cancel
        self._cancels = cancels
        self._client_name = client_name

    def observe(self, event: object) -> int | None:
        """Cancel the older build f+1 nodes say `event`'s build supersedes; the cancel's id, if one started."""
        if not isinstance(event, Superseding):
            return None
        record = self._builds.get(event.older)
        if (record is None or record["state"] != "pending" or record["request"].get("client") != self._client_name
                or record["cancels"] is not None or self._cancels.expecting(event.older)):
            return None
        log.info("build %d of its concurrency group supersedes build %d (cancel_in_progress)", event.build_id,
                 event.older)
        return self._cancel.start(record, event.operation.actor)
