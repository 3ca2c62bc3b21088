"""Deploys that wait for a person: an `after:` action that names an environment whose approval is
required (the network document's `environments:`) runs only after an approval was ordered.

The runner reports such an action `waiting` and keeps it in its ledger. Someone with the
environment's role approves it through the client (client/verbs/deploys.py), which orders an
approval like a cancel (pbft.build.Approval). The runner takes the approval's certificate from
the client and checks it as it checks a build's, against the network's keys alone, and that it
approves this very action of this very build, asked for by the build's own client: so whatever
the client says, only an approval f+1 nodes executed lets a deploy run, and every runner reads
the same one, with who approved. A deploy nobody approves within `APPROVAL_WINDOW_S` ends as an
`error` saying so; the runner keeps at most `MAX_WAITING`, the oldest giving way first.
"""

from __future__ import annotations

from builder import ActionSpec
from pbft.build import Approval
from pbft.messages import Request
from shared.config import NetworkConfig

APPROVAL_WINDOW_S = 7 * 86400.0
MAX_WAITING = 256
# Waiting deploys asked about per poll, the least recently asked first: a long queue of them
# costs a few requests a poll, and each is asked about in turn.
CHECKED_PER_POLL = 16
# The approvals of one deploy whose certificates a poll asks the client for, the oldest first.
APPROVALS_ASKED = 16


class NotApproved(Exception):
    """Why an approval does not let a deploy run."""


def environment_refusal(action: ActionSpec, network: NetworkConfig) -> str | None:
    """Why an action that names an environment cannot run at all: one the network does not have."""
    if action.environment is None or network.environment(action.environment) is not None:
        return None
    return f"environment {action.environment} is not in the network document"


def needs_approval(action: ActionSpec, network: NetworkConfig) -> bool:
    environment = None if action.environment is None else network.environment(action.environment)
    return environment is not None and environment.required


def approver(build_id: int, build_client: str, action: ActionSpec, approval: Request, status: str) -> str:
    """Who approved action `action` of build `build_id` (asked for by `build_client`), as the
    checked certificate of `approval`, whose agreed status is `status`, says; NotApproved why not."""
    approves = approval.operation.approves
    if approves is None:
        raise NotApproved("it approves nothing")
    if approves != Approval(build_id, action.name, action.environment or ""):
        raise NotApproved(f"it approves action {approves.action} of build {approves.build} for {approves.environment}")
    if approval.client != build_client:
        # The order answers it only as its own client's word on its own build (pbft.ci.answers).
        raise NotApproved(f"client {approval.client} asked for it, and client {build_client} for the build")
    if status != "success":
        raise NotApproved(f"the nodes did not order it ({status})")
    if approval.operation.actor is None:
        raise NotApproved("it names no one who approved")
    return approval.operation.actor.label()
