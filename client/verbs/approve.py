"""The verb approve: a fork's pull request waits, unsent, until someone approves it.

A pull request from a fork would run code anyone may have written on every
node, so unless its repository sets `build_forks` the client holds it
(client.deliveries) and builds it only once whoever may ask for builds
approves it. A newer push to the same pull request replaces the
older one's wait (client.tables.approvals).
"""

from __future__ import annotations

import logging
import time

from client.actors import acting
from client.events import EventStream, HeldForApproval
from client.tables.approvals import Approvals
from client.verbs.submit import Submit
from pbft.build import Actor, Operation

log = logging.getLogger(__name__)


class Approve:
    def __init__(self, approvals: Approvals, submit: Submit, events: EventStream) -> None:
        self._approvals = approvals
        self._submit = submit
        self._events = events

    def hold(self, operation: Operation, delivery_id: str | None) -> int:
        """Keep a fork's pull request, unsent, until `start`; return the approval's id."""
        approval_id = self._approvals.hold(operation, delivery_id, time.time())
        log.info(
            "pull request %s of %s from a fork waits for approval %d (commit %s)",
            operation.pull_request, operation.repository, approval_id, (operation.commit or "")[:12],
        )
        self._events.publish(HeldForApproval(str(approval_id), operation))
        return approval_id

    def start(self, approval_id: int, actor: Actor) -> int:
        """Start the build an approval held back, once, asked for by `actor` (who approved it),
        and return its build id (KeyError if there is no such approval). Approving one that
        already started returns that build."""
        approval = self._approvals.get(approval_id)
        if approval is None:
            raise KeyError(approval_id)
        if approval["build_id"] is not None:
            return int(approval["build_id"])
        # Nothing awaits between the lookup and the update: two approvals cannot both start it.
        build_id = self._submit.start(acting(approval["operation"], actor))
        self._approvals.approved(approval_id, build_id)
        log.info("approval %d started build %d", approval_id, build_id)
        return build_id
