"""The routes that start a verb on a build: re-run it (or a matrix's failed combinations), cancel
it, approve a fork's pull request held back or an action's deploy (client.verbs); and the
approvals waiting. Whoever may ask for builds may ask for these (a deploy's approval: whoever has
its environment's role); each is answered 202 at once, with the requests it started."""

from __future__ import annotations

from aiohttp import web

from client.access import APPROVE, OPERATE, READ, TRIGGER
from client.intake import WebhookError
from client.keys import ACCESS_KEY, NAME_KEY, RECORDS_KEY, SERVICE_KEY
from client.routes.answers import started
from client.routes.params import (
    MAX_BUILD_ID, bounded_int, caller_and_record, config_of, limit_of, webhook_settings,
)
from client.verbs.rerun import NothingToRerun, failed_of
from pbft.build import STEP_NAME, Actor

routes = web.RouteTableDef()


@routes.post("/builds/{build_id}/rerun")
async def rerun(request: web.Request) -> web.Response:
    """Build again what a build built (its repository, ref and commit), as a new build that
    names the old one."""
    record, actor = _build_to_act_on(request)
    build_id = await request.app[SERVICE_KEY].verbs.rerun.start(record, actor)
    return started(build_id, webhook_settings(request), rerun_of=record["build_id"])


@routes.post("/builds/{build_id}/rerun-failed")
async def rerun_failed(request: web.Request) -> web.Response:
    """Run again the combinations of a matrix build that did not pass, each as a new build that
    names the combination's (client.verbs.rerun.failed_of); 409 when there is none to run."""
    record, actor = _build_to_act_on(request)
    try:
        failed = failed_of(record, request.app[RECORDS_KEY].builds.get)
    except NothingToRerun as reason:
        raise WebhookError(409, str(reason)) from None
    rerun, base_url = request.app[SERVICE_KEY].verbs.rerun, webhook_settings(request).status_base_url
    started_again = []
    for failed_build in failed:
        new_id = await rerun.start(failed_build, actor)
        started_again.append({"build_id": str(new_id), "status_url": f"{base_url}/builds/{new_id}",
                              "rerun_of": failed_build["build_id"], "combination": failed_build["combination"]})
    return web.json_response({"build_id": record["build_id"], "reruns": started_again}, status=202)


@routes.post("/builds/{build_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    """Stop a build still without a verdict."""
    record, actor = _build_to_act_on(request)
    if record["state"] != "pending":
        raise WebhookError(409, f"build {record['build_id']} has its verdict already ({record['state']})")
    asked_through = record["request"].get("client")
    if asked_through != request.app[NAME_KEY]:
        # The order lets a client cancel only its own requests (pbft.cancels).
        raise WebhookError(409, f"build {record['build_id']} was asked for through the client {asked_through}: "
                                "cancel it there")
    cancel_id = request.app[SERVICE_KEY].verbs.cancel.start(record, actor)
    return started(record["build_id"], webhook_settings(request), cancel_id=str(cancel_id))


@routes.post("/builds/{build_id}/actions/{action}/approve")
async def approve_deploy(request: web.Request) -> web.Response:
    """Let an `after:` action that waits for an approval deploy to its environment: ordered
    like a cancel, for a caller with the environment's role on the build's repository."""
    # Trigger is the least role an environment may ask for (shared/config_environments.py).
    caller, record = caller_and_record(request, TRIGGER)
    action = request.match_info["action"]
    if not STEP_NAME.fullmatch(action):
        raise web.HTTPBadRequest(reason="action must be an action's name (letters, digits, '.', '_', '-')")
    if record["state"] != "accepted":
        raise WebhookError(409, f"build {record['build_id']} has no certified verdict ({record['state']})")
    approval_id, again = request.app[SERVICE_KEY].verbs.deploys.approve(record, action, caller, config_of(request))
    return started(record["build_id"], webhook_settings(request), approval_id=str(approval_id),
                   already_approved=again)


@routes.get("/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    """Pull requests from forks that wait for an approval, newest first."""
    caller = request.app[ACCESS_KEY].require(request.headers, READ)
    waiting = request.app[RECORDS_KEY].approvals.waiting(limit_of(request.query), caller.repositories)
    return web.json_response({"approvals": [_approval_json(approval) for approval in waiting]})


@routes.get("/approvals/{approval_id}")
async def get_approval(request: web.Request) -> web.Response:
    caller = request.app[ACCESS_KEY].require(request.headers, READ)
    approval = _approval(request)
    caller.check(READ, approval["repository"])
    return web.json_response(_approval_json(approval))


@routes.post("/approvals/{approval_id}/approve")
async def approve(request: web.Request) -> web.Response:
    """Build a fork's pull request that waited for an approval. Approving it again answers
    the build it started."""
    caller = request.app[ACCESS_KEY].require(request.headers, APPROVE)
    approval = _approval(request)
    caller.check(APPROVE, approval["repository"])
    build_id = request.app[SERVICE_KEY].verbs.approve.start(int(approval["approval_id"]), caller.actor)
    return started(build_id, webhook_settings(request), already_approved=approval["build_id"] is not None)


def _build_to_act_on(request: web.Request) -> tuple[dict, Actor]:
    """The build the URL names and who asks to act on it, a caller who may ask for builds; a
    cancel or an approval is not one (409)."""
    caller, record = caller_and_record(request, OPERATE)
    if record["cancels"] is not None or record["approves"] is not None:
        kind = "a cancel" if record["cancels"] is not None else "an approval"
        raise WebhookError(409, f"build {record['build_id']} is {kind}, not a build")
    return record, caller.actor


def _approval(request: web.Request) -> dict:
    """The approval the URL names, or the 400/404 that says why there is none."""
    approval_id = bounded_int(request.match_info["approval_id"], 1, MAX_BUILD_ID)
    if approval_id is None:
        raise web.HTTPBadRequest(reason="approval id must be a positive decimal number")
    approval = request.app[RECORDS_KEY].approvals.get(approval_id)
    if approval is None:
        raise web.HTTPNotFound(reason=f"no approval {approval_id}")
    return approval


def _approval_json(approval: dict) -> dict:
    return {key: value for key, value in approval.items() if key != "operation"}
