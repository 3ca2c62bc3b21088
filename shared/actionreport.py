"""An action runner's report of one action after a build's verdict, signed with the runner's key.

The client records what a runner says of a build's `after:` actions and its
dashboard shows it as the runner's word. The client's bearer token is held by
forges, scripts and people; a signature by the runner's own Ed25519 key
(clients[].runners in the network's configuration) is what makes a report the
runner's. What is signed names everything the record shows and what makes it
unique, so a signature made for one of them holds for no other:

    b"pbft-ci action report v1\\0" + canonical JSON of
    {build_id, action, state, exit_code, reason, runner, stamp_us}

plus, for an action that names a deploy environment, `environment` and, once
a person approved the deploy, `approver` (a report of any other action has
neither key, so its bytes are those of the first reports). `waiting`: the
action waits for an approval (runner/approvals.py).

The prefix keeps these signatures apart from every other signature in
pbft-ci (protocol messages are canonical JSON, DSSE envelopes start "DSSEv1"),
should a key ever sign both. `build_id` binds a report to one build: a report
captured for build 5 does not hold for build 6. `stamp_us` is the runner's
clock in microseconds, never lower than a stamp it used before
(runner/ledger.py): the client keeps the newest report per (build, action) and
refuses an older or a replayed one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from pbft.build import STEP_NAME
from pbft.encoding import canonical
from shared.crypto import PrivateKey, PublicKey, sign_bytes, verify_bytes

CONTEXT = b"pbft-ci action report v1\0"
# What a runner may say of an action (runner/ledger.py).
ACTION_STATES = ("waiting", "running", "success", "failure", "error", "interrupted")
MAX_REASON_CHARS = 500
# Build ids and stamps are microseconds, which SQLite stores as 63-bit integers.
MAX_INTEGER = 2**63 - 1
_RUNNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a client or runner name (shared/config.py)
_SIGNATURE = re.compile(r"[0-9a-f]{128}")
SIGNED_FIELDS = ("build_id", "action", "state", "exit_code", "reason", "runner", "stamp_us")
# Signed only when set: a deploy's environment and who approved it.
OPTIONAL_FIELDS = ("environment", "approver")
_ENVIRONMENT = STEP_NAME  # shared/config_environments.py
_APPROVER = re.compile(r"[a-z]{1,16} [A-Za-z0-9][A-Za-z0-9._@+:/-]{0,127}")  # an actor's label (pbft.build.Actor)


class ReportError(ValueError):
    """A body that is not a well-formed report; the message says what is wrong."""


class UnsignedReport(ReportError):
    """A report without a runner's name and signature: the bearer token's word alone."""


@dataclass(frozen=True)
class ActionReport:
    build_id: int
    action: str  # the action's name in the spec's `after:` section
    state: str  # one of ACTION_STATES
    exit_code: int | None
    reason: str
    runner: str  # the runner's name, as the client's configuration lists it
    stamp_us: int  # the runner's clock, strictly increasing over its reports
    environment: str | None = None  # the deploy environment the action names
    approver: str | None = None  # who approved the deploy: the approval's actor, `user alice`

    def fields(self) -> dict[str, Any]:
        """The report as it is signed and sent: the optional fields only when set."""
        return {key: value for key, value in asdict(self).items() if key in SIGNED_FIELDS or value is not None}

    def signed_bytes(self) -> bytes:
        return CONTEXT + canonical(self.fields())

    def signed_body(self, key: PrivateKey) -> dict:
        """The JSON body of POST /builds/<id>/actions: the report and the runner's signature."""
        return {**self.fields(), "sig": sign_bytes(key, self.signed_bytes())}

    def verifies(self, key: PublicKey, sig: str) -> bool:
        return verify_bytes(key, self.signed_bytes(), sig)


def parse_report(data: Any) -> tuple[ActionReport, str]:
    """The report and its signature (hex) in a POST body's JSON, each field checked;
    UnsignedReport without `runner` and `sig`, ReportError for anything else malformed."""
    if not isinstance(data, dict):
        raise ReportError("body must be a JSON object")
    if "sig" not in data or "runner" not in data:
        raise UnsignedReport("a report of an action must be signed by an action runner the client's"
                             " configuration lists (clients[].runners): this one has no runner and sig")
    expected = {*SIGNED_FIELDS, "sig"}
    if not expected <= set(data) <= expected | set(OPTIONAL_FIELDS):
        raise ReportError(f"body must be an object with {', '.join(sorted(expected))}"
                          f" and, for a deploy, {' and '.join(OPTIONAL_FIELDS)}")
    environment, approver = data.get("environment"), data.get("approver")
    if environment is not None and not (isinstance(environment, str) and _ENVIRONMENT.fullmatch(environment)):
        raise ReportError("environment must be an environment's name (letters, digits, '.', '_', '-')")
    if approver is not None and not (isinstance(approver, str) and _APPROVER.fullmatch(approver)):
        raise ReportError("approver must name who approved, as `user alice`")
    if approver is not None and environment is None:
        raise ReportError("approver is for a deploy to an environment: this report names none")
    build_id, stamp_us, name, state = data["build_id"], data["stamp_us"], data["action"], data["state"]
    exit_code, reason, runner, sig = data["exit_code"], data["reason"], data["runner"], data["sig"]
    if type(build_id) is not int or not 0 <= build_id <= MAX_INTEGER:
        raise ReportError("build_id must be a build's id, as an integer")
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):  # an action's name is a step's
        raise ReportError("action must be an action's name (letters, digits, '.', '_', '-')")
    if state not in ACTION_STATES:
        raise ReportError(f"state must be one of {', '.join(ACTION_STATES)}")
    if exit_code is not None and (type(exit_code) is not int or not -(2**31) <= exit_code < 2**31):
        raise ReportError("exit_code must be an integer or null")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise ReportError(f"reason must be printable text of at most {MAX_REASON_CHARS} characters")
    if not isinstance(runner, str) or not _RUNNER_NAME.fullmatch(runner):
        raise ReportError("runner must be a runner's name (letters, digits, '.', '_', '-')")
    if type(stamp_us) is not int or not 0 < stamp_us <= MAX_INTEGER:
        raise ReportError("stamp_us must be a positive integer (the runner's clock in microseconds)")
    if not isinstance(sig, str) or not _SIGNATURE.fullmatch(sig):
        raise ReportError("sig must be an Ed25519 signature (128 lowercase hex digits)")
    return ActionReport(build_id, name, state, exit_code, reason, runner, stamp_us, environment, approver), sig
