"""`GET /audit`: who triggered, cancelled, re-ran and approved what (client.tables.audit).

Each entry is a request the client signed with its actor, so the same actor
is in every node's ledger, the build's certificate and its attestation.
"""

from __future__ import annotations

from aiohttp import web

from client.access import READ
from client.keys import ACCESS_KEY, RECORDS_KEY
from client.routes.params import MAX_BUILD_ID, bounded_int, limit_of
from client.tables.audit import AUDIT_ACTIONS
from pbft.build import ACTOR_KINDS, ACTOR_NAME
from pbft.wire import NAME, MessageError

routes = web.RouteTableDef()


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
    if "repository" in query:
        try:
            filters["repository"] = NAME.read(query["repository"], "repository")
        except MessageError as error:
            raise web.HTTPBadRequest(reason=str(error)) from None
    entries = request.app[RECORDS_KEY].audit.entries(limit + 1, repositories=caller.repositories, **filters)
    more = len(entries) > limit
    return web.json_response({"actions": entries[:limit], "next": entries[limit - 1]["build_id"] if more else None})
