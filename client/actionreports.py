"""What the client takes as an action runner's report (POST /builds/<id>/actions).

A report is recorded only when a runner the client's entry lists
(clients[].runners) signed it (shared/actionreport.py) for this very build,
and it is newer than the report the record keeps of that action. Everything
else gets a 4xx with the reason: 400 a body that is not a report, 403 a
report that is not a listed runner's word for this build (no signature, an
unknown runner, a signature that does not verify, another build's report),
409 one the build cannot take (no certified verdict, no spec with actions,
a replayed or older report).
"""

from __future__ import annotations

from client.intake import WebhookError, json_object
from shared.actionreport import ActionReport, ReportError, UnsignedReport, parse_report
from shared.config import ClientConfig
from shared.crypto import parse_public_key

# The only spec with an `after:` section (builder/plan/spec.py's SPEC_FILE; a Dockerfile has none).
ACTIONS_SPEC = ".pbft-ci.yml"


def check_build_takes_reports(record: dict) -> None:
    """409 unless the build has a certified verdict of a spec that may declare actions.

    The client cannot know cheaply which actions the spec declares: the agreed
    result names the spec by its path and sha256 only, and the client keeps no
    copy of the repository to read it from. The runner reads and checks the
    spec itself; here the build must at least have run a `.pbft-ci.yml`."""
    build_id = record["build_id"]
    if record["state"] != "accepted":
        raise WebhookError(409, f"build {build_id} has no certified verdict ({record['state']})")
    spec = (record["result"] or {}).get("spec")
    if not isinstance(spec, dict) or spec.get("path") != ACTIONS_SPEC:
        raise WebhookError(409, f"build {build_id} ran no {ACTIONS_SPEC}, so it has no after: actions to report")


def checked_report(body: bytes, build_id: int, client: ClientConfig) -> tuple[ActionReport, str]:
    """The report in `body` and its signature, once a runner `client` lists signed it for `build_id`."""
    data = json_object(body)  # a webhook's reasons: not UTF-8, not JSON (and where), nested too deeply
    try:
        report, sig = parse_report(data)
    except UnsignedReport as refusal:
        raise WebhookError(403, str(refusal)) from None
    except ReportError as refusal:
        raise WebhookError(400, str(refusal)) from None
    runner = client.runner(report.runner)
    if runner is None:
        listed = ", ".join(repr(runner.name) for runner in client.runners) or "none"
        raise WebhookError(403, f"runner {report.runner!r} is not one client {client.name!r} takes reports from"
                                f" (clients[].runners lists {listed})")
    if not report.verifies(parse_public_key(runner.public_key), sig):
        raise WebhookError(403, f"the signature is not runner {report.runner!r}'s (its public key in the"
                                " client's configuration)")
    if report.build_id != build_id:
        raise WebhookError(403, f"the report is signed for build {report.build_id}, not build {build_id}")
    return report, sig
