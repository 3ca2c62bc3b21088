"""The verb matrix: a certified `matrix` verdict starts one build per combination.

Each is the same request with the verdict's commit pinned and the
combination named, ordered, built and certified on its own, its record
naming the build that expanded into it. The client reads no spec: f+1 nodes
vouch for the combinations, and each node builds only one its spec at the
commit declares (builder/plan/matrix.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from client.events import Origin
from client.outcome import Accepted, Verdict
from pbft.build import Operation, combination_label
from pbft.messages import Request

log = logging.getLogger(__name__)


def expand(request: Request, verdict: Verdict, start: Callable[[Operation, Origin], int]) -> Verdict:
    """Start the builds of the matrix `verdict` (of `request`) with `start`; the verdict then
    names them."""
    accepted, operation = verdict.outcome, request.operation
    assert isinstance(accepted, Accepted), "only a certified matrix verdict is expanded"
    result = accepted.result
    if operation.combination is not None or result.commit is None:
        # No honest node answers so: a combination is built, never expanded again.
        log.warning("build %d: a matrix verdict for %s; nothing started", request.timestamp,
                    "a combination" if operation.combination is not None else "no commit")
        return verdict
    started = []
    for combination in result.combinations:
        # Each combination is a build of its own: none is the delivery the matrix answered.
        build_id = start(dataclasses.replace(operation, commit=result.commit, combination=combination, delivery=None),
                         Origin(matrix_of=request.timestamp))
        started.append((str(build_id), combination))
    log.info("build %d: matrix of %d builds started: %s", request.timestamp, len(started),
             " ".join(f"{build_id}={combination_label(combination)}" for build_id, combination in started))
    return dataclasses.replace(verdict, outcome=dataclasses.replace(accepted, matrix=tuple(started)))
