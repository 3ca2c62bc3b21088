"""The verb resume: a restarted client follows again the builds its records hold without a verdict.

A client stopped, or killed, while it waited for builds leaves them pending
in its records. Each is the same signed request, sent again to every node:
a node that executed it answers from its store, one that did not orders it,
so none is built twice. Its deadline counts from the restart; its verdict
and status land as a webhook's do.
"""

from __future__ import annotations

import logging
import time

from client.events import EventStream, GivenUp, Resumed
from client.tables.builds import Builds
from client.verbs.cancel import CancelBook
from client.verbs.matrix import MatrixRuns
from client.verbs.submit import Submit
from pbft.messages import MessageError, Request, decode

log = logging.getLogger(__name__)

# Builds without a verdict that a restarted client follows again, at most: as many as a node
# keeps open for one client (pbft.slot.ReplicaSettings.max_open_per_client). Older ones end
# `timeout` at the restart.
MAX_RESUMED = 1024
# Matrices with a strategy a restarted client goes on with, at most: the newest.
MAX_MATRICES_GONE_ON = 64


class Resume:
    def __init__(self, builds: Builds, submit: Submit, cancels: CancelBook, events: EventStream,
                 client_name: str, matrices: MatrixRuns) -> None:
        self._builds = builds
        self._matrices = matrices
        self._submit = submit
        self._cancels = cancels
        self._events = events
        self._client_name = client_name

    def start(self) -> list[int]:
        """Follow again every build without a verdict, the newest MAX_RESUMED, and go on with the
        matrices whose combinations a stop interrupted; return the ids followed again."""
        resumed = self._follow_again()
        for matrix_id in self._builds.limited_matrices(MAX_MATRICES_GONE_ON):
            self._matrices.go_on(matrix_id)
        return resumed

    def _follow_again(self) -> list[int]:
        pending = self._builds.pending(MAX_RESUMED)
        if pending:
            self._events.publish(GivenUp(before=pending[0]["build_id"], followed=MAX_RESUMED))
        resumed = []
        for record in pending:
            try:
                request = decode(record["request"])
            except MessageError as error:
                log.error("build %d: its stored request does not decode (%s): not resumed", record["build_id"], error)
                continue
            if not isinstance(request, Request):
                log.error("build %d: its stored request is not a request: not resumed", record["build_id"])
                continue
            if request.client != self._client_name:
                continue  # another client's, imported: its verdict is imported too (client.ledgerimport)
            if request.operation.cancels is not None:
                self._cancels.expect(request.operation.cancels)
            self._submit.follow_again(request, waited_s=max(0.0, time.time() - record["submitted_at"]))
            resumed.append(request.timestamp)
        if resumed:
            log.info("resumed %d builds without a verdict: %s", len(resumed), " ".join(map(str, resumed)))
            parents = sorted({record["matrix_of"] for record in pending if record["matrix_of"] is not None})
            self._events.publish(Resumed(resumed, [self._builds.get(parent) for parent in parents]))
        return resumed
