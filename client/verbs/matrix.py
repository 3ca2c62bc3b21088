"""The verb matrix: a certified `matrix` verdict starts one build per combination.

Each is the same request with the verdict's commit pinned and the
combination named, ordered, built and certified on its own, its record
naming the build that expanded into it. The client reads no spec: f+1 nodes
vouch for the combinations, and each node builds only one its spec at the
commit declares (builder/plan/matrix.py).

The verdict also says how to run them (the spec's `fail_fast` and
`max_parallel`, agreed with the combinations). Without either, every
combination starts with the expansion. With them, `MatrixRuns` goes on as
each combination ends: the next waiting ones start while fewer than
`max_parallel` run; with `fail_fast`, the first that does not pass cancels the
others still running (cancels through the order, so every node stops them at
one point of it) and no more start. What it decides it reads from the records
(the parent's verdict, its combinations' builds), never from memory, so a
restarted client goes on where the records say it was (`Resume`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from client.events import Finished, OrderCancelled, Origin
from client.outcome import Accepted, Verdict
from client.tables.builds import Builds
from client.verbs.cancel import Cancel, CancelBook
from pbft.build import Operation, combination_label
from pbft.messages import Request
from pbft.wire import decode_struct

log = logging.getLogger(__name__)

Start = Callable[[Operation, Origin], int]
# What a combination's build may end as and still let a fail_fast matrix go on.
PASSING = ("success", "skipped")


def expand(request: Request, verdict: Verdict, start: Start) -> Verdict:
    """Start the builds of the matrix `verdict` (of `request`) with `start`, as many as its
    `max_parallel` allows; the verdict then names them."""
    accepted, operation = verdict.outcome, request.operation
    assert isinstance(accepted, Accepted), "only a certified matrix verdict is expanded"
    result = accepted.result
    if operation.combination is not None or result.commit is None:
        # No honest node answers so: a combination is built, never expanded again.
        log.warning("build %d: a matrix verdict for %s; nothing started", request.timestamp,
                    "a combination" if operation.combination is not None else "no commit")
        return verdict
    started = []
    for combination in result.combinations[:result.max_parallel]:
        build_id = start(_combination_of(operation, result.commit, combination), Origin(matrix_of=request.timestamp))
        started.append((str(build_id), combination))
    log.info("build %d: matrix of %d builds, %d started: %s", request.timestamp, len(result.combinations), len(started),
             " ".join(f"{build_id}={combination_label(combination)}" for build_id, combination in started))
    return dataclasses.replace(verdict, outcome=dataclasses.replace(accepted, matrix=tuple(started)))


def _combination_of(operation: Operation, commit: str, combination) -> Operation:
    # Each combination is a build of its own: none is the delivery the matrix answered.
    return dataclasses.replace(operation, commit=commit, combination=combination, delivery=None)


class MatrixRuns:
    """Goes on with the matrices whose verdict limits how their combinations run, as each
    combination's build ends (an observer of the client's events)."""

    def __init__(self, builds: Builds, start: Start, cancel: Cancel, cancels: CancelBook,
                 closing: Callable[[], bool]) -> None:
        self._builds, self._start, self._cancel, self._cancels, self._closing = builds, start, cancel, cancels, closing

    def observe(self, event: object) -> None:
        if not isinstance(event, (Finished, OrderCancelled)):
            return
        if event.operation.combination is None:
            # The expansion's own verdict, now in the records: a combination that ended before
            # it was recorded found nothing to go on with.
            if isinstance(event.verdict.outcome, Accepted) and event.verdict.outcome.result.status == "matrix":
                self.go_on(int(event.verdict.build_id))
            return
        record = self._builds.get(int(event.verdict.build_id))
        if record is not None and record["matrix_of"] is not None:
            self.go_on(int(record["matrix_of"]))

    def go_on(self, matrix_id: int) -> list[int]:
        """Start or cancel what matrix build `matrix_id`'s strategy asks for now; the ids of the
        builds started (combinations, or cancels)."""
        matrix = self._builds.get(matrix_id)
        result = (matrix or {}).get("result") or {}
        if result.get("status") != "matrix" or not (result.get("fail_fast") or result.get("max_parallel")):
            return []
        if self._closing() or matrix["state"] != "accepted" or result.get("commit") is None:
            return []
        built = matrix["matrix_builds"]
        running = [int(build["build_id"]) for build in built if build["state"] == "pending"]
        if result.get("fail_fast") and any(build["state"] != "pending" and build["status"] not in PASSING
                                           for build in built):
            return self._cancel_all(matrix_id, running)
        started = {build["combination"] for build in built}
        waiting = [tuple(map(tuple, combination)) for combination in result["combinations"]
                   if combination_label(tuple(map(tuple, combination))) not in started]
        room = (result.get("max_parallel") or len(waiting)) - len(running)
        operation = decode_struct(Operation, matrix["request"]["operation"])
        new = [self._start(_combination_of(operation, result["commit"], combination), Origin(matrix_of=matrix_id))
               for combination in waiting[:max(0, room)]]
        if new:
            log.info("build %d: matrix goes on with builds %s, %d waiting", matrix_id, " ".join(map(str, new)),
                     len(waiting) - len(new))
        return new

    def _cancel_all(self, matrix_id: int, running: list[int]) -> list[int]:
        """fail_fast: a combination did not pass; the others still running are cancelled once."""
        cancels = []
        for build_id in running:
            record = self._builds.get(build_id)
            if record is None or self._cancels.expecting(build_id):
                continue
            actor = decode_struct(Operation, record["request"]["operation"]).actor
            cancels.append(self._cancel.start(record, actor))
        if cancels:
            log.info("build %d: a combination did not pass; fail_fast cancels builds %s", matrix_id,
                     " ".join(map(str, running)))
        return cancels
