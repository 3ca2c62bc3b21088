"""The build records: `GET /builds` (a page of them), `GET /builds/{id}` (one), what action
runners report of a build (`POST /builds/{id}/actions`), and who did what (`GET /audit`,
client.tables.audit: each entry a request the client signed with its actor, so the same
actor is in every node's ledger, the build's certificate and its attestation).

A record without a verdict says where f+1 nodes say the build is (`progress`);
every record says which nodes dissented from its verdict, and, once the time
for replies is over, which never replied.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from client.access import OPERATE, READ
from client.actionreports import check_build_takes_reports, checked_report
from client.buildlogs import build_log_links
from client.intake import WebhookError, checked_branch
from client.keys import ACCESS_KEY, NAME_KEY, RECORDS_KEY, SERVICE_KEY
from client.requests import RequestCore
from client.routes.params import (
    MAX_BUILD_ID, bounded_int, caller_and_record, config_of, limit_of, listed_repositories, read_capped, record_of,
    webhook_settings,
)
from client.tables.audit import AUDIT_ACTIONS
from client.tables.summaries import VERDICTS
from client.tables.verdicts import replies_until
from pbft.build import ACTOR_KINDS, ACTOR_NAME

log = logging.getLogger(__name__)

# How long an action runner's report may be (shared/actionreport.py).
MAX_ACTION_REPORT_BYTES = 4096

routes = web.RouteTableDef()


@routes.get("/builds")
async def list_builds(request: web.Request) -> web.Response:
    """The newest builds, `limit` at a time: `next` is the `before` of the next page (null on the
    last), so pages never repeat or skip a build while new ones arrive. Filtered by a
    `repository`, a `branch`, a `verdict` (client.tables.summaries.VERDICTS) or a repository's `number`."""
    caller = request.app[ACCESS_KEY].require(request.headers, READ)
    query = request.query
    limit = limit_of(query)
    filters: dict = {}
    for name, low in (("before", 0), ("number", 1)):
        if name in query:
            filters[name] = bounded_int(query[name], low, MAX_BUILD_ID)
            if filters[name] is None:
                raise web.HTTPBadRequest(reason=f"{name} must be a decimal number from {low} to {MAX_BUILD_ID}")
    filters["repositories"] = listed_repositories(caller, query)
    if "branch" in query:
        filters["branch"] = checked_branch(query["branch"])
    if "verdict" in query:
        if query["verdict"] not in VERDICTS:
            raise web.HTTPBadRequest(reason=f"verdict must be one of {', '.join(VERDICTS)}")
        filters["verdict"] = query["verdict"]
    # One more than asked: is there a next page?
    builds = request.app[RECORDS_KEY].builds.recent(limit + 1, **filters)
    core = request.app[SERVICE_KEY].core
    return web.json_response({"builds": [with_progress(core, build) for build in builds[:limit]],
                              "next": builds[limit - 1]["build_id"] if len(builds) > limit else None})


@routes.get("/builds/{build_id}")
async def get_build(request: web.Request) -> web.Response:
    record = with_progress(request.app[SERVICE_KEY].core, record_of(request))
    return web.json_response({**record, "logs": build_log_links(request.app, record["build_id"])})


@routes.post("/builds/{build_id}/actions")
async def report_action(request: web.Request) -> web.Response:
    """The action runner (runner/) reports how an action after a build's verdict went, signed
    with its own key (client.actionreports): the record keeps its newest word per action and
    who said it. The bearer token is still asked for, before any signature is checked."""
    _, record = caller_and_record(request, OPERATE)
    check_build_takes_reports(record)
    build_id = int(record["build_id"])
    body = await read_capped(request, MAX_ACTION_REPORT_BYTES, webhook_settings(request).body_timeout_s)
    report, sig = checked_report(body, build_id, config_of(request).client(request.app[NAME_KEY]))
    actions = request.app[RECORDS_KEY].actions
    if not actions.keep(report, sig, time.time()):
        raise WebhookError(409, f"a replayed or older report: the record keeps a report of action {report.action}"
                                f" of build {build_id} stamped {actions.stamp(build_id, report.action)},"
                                f" and this one is stamped {report.stamp_us}")
    log.info("build %d: action %s %s exit_code=%s, reported by runner %s", build_id, report.action, report.state,
             report.exit_code, report.runner)
    return web.json_response({"build_id": record["build_id"], "action": report.action, "state": report.state,
                              "runner": report.runner})


def with_progress(core: RequestCore, build: dict) -> dict:
    """A build's record and, while it has no verdict, where f+1 nodes say it is: `queued` for
    a build slot, or `running` (None until f+1 say either). And its `dissent`: the nodes that
    replied otherwise than the verdict, and those that did not reply in time, once that time
    is over (`dissent_final`; until then the list is what is known so far)."""
    pending = build["state"] == "pending"
    silent = _silent_nodes(core, build)
    dissent = build["dissent"] + [{"node": node, "kind": "silent", "said": None} for node in silent or ()]
    return {**build, "progress": core.progress(int(build["build_id"])) if pending else None,
            "dissent": sorted(dissent, key=lambda entry: entry["node"]), "dissent_final": silent is not None}


def _silent_nodes(core: RequestCore, build: dict) -> list[int] | None:
    """The nodes that sent no reply to `build` (a record's summary): none of a build without
    a verdict, and None while one may still answer (client.tables.verdicts `replies_until`)."""
    if build["state"] == "pending":
        return None
    missing = core.frames.node_ids - set(build["replied_by"])
    settings = core.settings
    if missing and time.time() <= replies_until(
            int(build["build_id"]), build["elapsed_ms"], settings.deadline_s, settings.settle_s):
        return None
    return sorted(missing)


@routes.get("/audit")
async def list_audit(request: web.Request) -> web.Response:
    """The newest actions, `limit` at a time, `next` the `before` of the next page (null on the
    last). Filtered by an `actor`'s name, an `actor_kind`, an `action` and a `repository`."""
    caller = request.app[ACCESS_KEY].require(request.headers, READ)
    query, filters = request.query, {}
    limit = limit_of(query)
    if "before" in query:
        filters["before"] = bounded_int(query["before"], 0, MAX_BUILD_ID)
        if filters["before"] is None:
            raise web.HTTPBadRequest(reason=f"before must be a decimal number from 0 to {MAX_BUILD_ID}")
    if "actor" in query:
        if not ACTOR_NAME.fullmatch(query["actor"]):
            raise web.HTTPBadRequest(reason="actor must be an actor's name: letters, digits and ._@+:/- (at most 128)")
        filters["actor"] = query["actor"]
    for name, choices in (("actor_kind", ACTOR_KINDS), ("action", AUDIT_ACTIONS)):
        if name in query:
            if query[name] not in choices:
                raise web.HTTPBadRequest(reason=f"{name} must be one of {', '.join(choices)}")
            filters[name] = query[name]
    entries = request.app[RECORDS_KEY].audit.entries(limit + 1, repositories=listed_repositories(caller, query),
                                                     **filters)
    more = len(entries) > limit
    return web.json_response({"actions": entries[:limit], "next": entries[limit - 1]["build_id"] if more else None})
