"""`POST /network/changes`: submit a change of the network document, which its owners signed.

The change (pbft/networkchange.py, made and signed with scripts/network.py) is ordered like
a build and answered with what f+1 nodes agree on: applied from a sequence number, or refused
with the reason every node gave (too few owners' signatures, a change already applied or made
before another, a document the nodes cannot run); an applied change's answer names the owners
whose signatures carried it. The owners' signatures are what make a change; the client's token
only lets a caller hand one in. Once applied, this client runs the new document too, with its
own local settings.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from client.access import ADMIN, EVERY_REPOSITORY
from client.intake import WebhookError
from client.keys import ACCESS_KEY, LIVE_KEY, SERVICE_KEY
from client.outcome import Accepted, Disputed, Divergent
from client.routes.params import read_capped, webhook_settings
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation
from pbft.networkchange import MAX_DOCUMENT_CHARS, NetworkChange
from pbft.networks import agreed_signers
from pbft.wire import MessageError, decode_struct
from shared.config import ConfigError
from shared.networkdoc import with_document

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
MAX_CHANGE_BYTES = 2 * MAX_DOCUMENT_CHARS  # the document, and a few signatures around it


@routes.post("/network/changes")
async def submit_change(request: web.Request) -> web.Response:
    actor = request.app[ACCESS_KEY].require(request.headers, ADMIN, EVERY_REPOSITORY).actor
    body = await read_capped(request, MAX_CHANGE_BYTES, webhook_settings(request).body_timeout_s)
    change = parse_change(body)
    verdict = await request.app[SERVICE_KEY].verbs.submit.wait(
        Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=change, actor=actor))
    match verdict.outcome:
        case Accepted(result=result, agreed_by=agreed_by):
            answer = {"build_id": verdict.build_id, "status": result.status, "reason": result.reason,
                      "agreed_by": agreed_by}
            if result.status != "success":
                return web.json_response(answer, status=409)
            # Named alike by every node that agreed (the reason above is one node's words).
            signers = agreed_signers(reply.result.reason for reply in verdict.replies if reply.sender in agreed_by)
            answer["signed_by"] = None if signers is None else list(signers)
            _adopt(request, change)
            return web.json_response(answer)
        case Divergent() | Disputed():
            error, status = "the nodes do not agree on the change: see the build's replies", 502
        case _:
            error, status = "no f+1 nodes answered the change before the deadline", 504
    return web.json_response({"error": error, "build_id": verdict.build_id}, status=status)


def parse_change(body: bytes) -> NetworkChange:
    """The change in a request's body, or a 400 that says what is wrong with it."""
    try:
        change = decode_struct(NetworkChange, json.loads(body))
    except (ValueError, RecursionError, MessageError) as error:
        raise WebhookError(400, f"not a network change (scripts/network.py makes one): {str(error)[:200]}") from None
    if change.parsed() is None:
        raise WebhookError(400, "the change's document is not a JSON object of finite numbers, nested within bounds")
    if not change.signatures:
        raise WebhookError(400, "the change carries no owner's signature (scripts/network.py sign)")
    return change


def _adopt(request: web.Request, change: NetworkChange) -> None:
    """The nodes run the change's document: so does this client, with its own settings."""
    live = request.app[LIVE_KEY]
    try:
        config = with_document(live.current, change.parsed(), read_secrets=live.reads_secrets)
    except (ConfigError, OSError) as error:
        log.critical("client cannot run network configuration %s with its own settings (%s): it keeps %s",
                     change.target()[:16], " ".join(str(error).split())[:500], live.current.digest[:16])
        return
    live.adopt(config, "a change through the order")
