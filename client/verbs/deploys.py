"""The verb approve-a-deploy: a person lets an `after:` action deploy to an environment.

An action that names an environment whose approval is required (the network
document's `environments:`) waits on its runner, which reports it `waiting`
(runner/approvals.py). Someone with the environment's role on the build's
repository approves it here, and the approval is a request ordered like a
cancel (pbft.build.Approval): every node answers it where it executes, so
every runner reads the same decision, and who took it, from its certificate,
and the audit lists it with its actor. What is checked here (the report says
the action waits, the caller's role) decides only whether the client asks;
the runner checks the certificate itself.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from client.access import Caller
from client.intake import WebhookError
from client.tables.actions import Actions
from pbft.build import Approval, Operation
from pbft.wire import decode_struct
from shared.config import NetworkConfig

log = logging.getLogger(__name__)


class Deploys:
    def __init__(self, actions: Actions, start: Callable[[Operation], int], client_name: str) -> None:
        self._actions = actions
        self._start = start  # starts a request and returns its id at once (client.verbs.submit)
        self._client_name = client_name

    def approve(self, record: dict, action: str, caller: Caller, network: NetworkConfig) -> tuple[int, bool]:
        """Ask the network, for `caller`, to order the approval of action `action` of the build
        `record`; its id, and whether it is one asked for before that did not fail (a second
        click answers the first). 409 or 403 (naming the role) when it may not be asked for."""
        build_id = int(record["build_id"])
        reported = self._actions.reported(build_id, action)
        if reported is None or reported["environment"] is None:
            raise WebhookError(409, f"action {action} of build {build_id} deploys to no environment that its runner"
                                    " reported")
        environment = network.environment(reported["environment"])
        if environment is None:
            raise WebhookError(409, f"environment {reported['environment']} is not in the network document")
        try:
            caller.check(environment.approvers, record["repository"])
        except WebhookError as refusal:
            raise WebhookError(403, f"approving a deploy to {environment.name}: {refusal.reason}") from None
        for earlier in self._actions.approvals(build_id, action):
            if earlier["state"] == "pending" or earlier["verdict"] == "success":
                return int(earlier["approval_id"]), True
        if reported["state"] != "waiting":
            raise WebhookError(409, f"action {action} of build {build_id} waits for no approval: its runner"
                                    f" reported it {reported['state']}")
        if record["request"].get("client") != self._client_name:
            # As a cancel: the order lets a client speak only of its own builds.
            raise WebhookError(409, f"build {build_id} was asked for through the client"
                                    f" {record['request'].get('client')}: approve its deploy there")
        operation = decode_struct(Operation, record["request"]["operation"])
        approval = Operation(operation.repository, operation.branch,
                             approves=Approval(build_id, action, environment.name), actor=caller.actor)
        approval_id = self._start(approval)
        self._actions.approval_ordered(approval_id, build_id, action, environment.name, time.time())
        log.info("build %d: %s approves action %s deploying to %s (approval %d)", build_id, caller.actor.label(),
                 action, environment.name, approval_id)
        return approval_id, False
