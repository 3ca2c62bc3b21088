"""Signing in and out (client.signin): `GET /login` sends the browser to the team's OpenID
provider, `GET /auth/callback` takes it back and begins a session, `GET /session` says who
is signed in (with the CSRF token the pages send), `POST /logout` ends the session."""

from __future__ import annotations

import logging
import re
import time

from aiohttp import web

from client.access import CSRF_HEADER, session_cookie
from client.intake import WebhookError
from client.keys import NAME_KEY, RECORDS_KEY
from client.routes.params import config_of
from client.signin import SIGNIN_KEY, SignIn
from client.tables.sessions import SESSION_COOKIE

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# Where a sign-in may return to: a path of this client, never another site (`//host`, `/\\host`).
_NEXT = re.compile(r"/(?![/\\])[!-~]{0,1999}")
MAX_PARAMETER_CHARS = 4096


@routes.get("/login")
async def login(request: web.Request) -> web.Response:
    next_path = request.query.get("next", "/dashboard")
    if not _NEXT.fullmatch(next_path):
        raise web.HTTPBadRequest(reason="next must be a path of this client, starting with one /")
    url = await _sign_in(request).begin(next_path)
    raise web.HTTPFound(url)


@routes.get("/auth/callback")
async def callback(request: web.Request) -> web.Response:
    sign_in, query = _sign_in(request), request.query
    if "error" in query:
        raise WebhookError(400, f"the provider did not sign you in: {_plain(query['error'])}")
    state, code = query.get("state", ""), query.get("code", "")
    if not state or not code or max(len(state), len(code)) > MAX_PARAMETER_CHARS:
        raise WebhookError(400, "the provider's answer has no state and code")
    person, next_path = await sign_in.finish(state, code)
    cookie, session = request.app[RECORDS_KEY].sessions.begin(person.name, person.groups, time.time(),
                                                                sign_in.settings.session_hours)
    log.info("user %s signed in (groups: %s)", person.name, ", ".join(person.groups) or "none")
    response = web.HTTPSeeOther(next_path)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(session.expires_at - time.time()), path="/",
                        httponly=True, samesite="Lax", secure=_secure(request))
    raise response


@routes.get("/session")
async def who(request: web.Request) -> web.Response:
    """Who is signed in, their groups, until when, and the CSRF token their pages send."""
    _sign_in(request)
    cookie = session_cookie(request.headers)
    session = None if cookie is None else request.app[RECORDS_KEY].sessions.get(cookie, time.time())
    if session is None:
        raise WebhookError(401, "not signed in: GET /login")
    return web.json_response({"user": session.user, "groups": list(session.groups), "csrf": session.csrf,
                              "expires_at": session.expires_at}, headers={"Cache-Control": "no-store"})


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    _sign_in(request)
    cookie = session_cookie(request.headers)
    sessions = request.app[RECORDS_KEY].sessions
    session = None if cookie is None else sessions.get(cookie, time.time())
    if session is None:
        raise WebhookError(401, "not signed in")
    if request.headers.get(CSRF_HEADER) != session.csrf:
        raise WebhookError(403, f"signing out needs the {CSRF_HEADER} header that GET /session gives")
    sessions.end(cookie)
    log.info("user %s signed out", session.user)
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _sign_in(request: web.Request) -> SignIn:
    sign_in = request.app.get(SIGNIN_KEY)
    if sign_in is None:
        raise web.HTTPNotFound(reason="sign-in is not configured for this client (clients[].sign_in)")
    return sign_in


def _secure(request: web.Request) -> bool:
    """Whether the browser reaches this client over https: then the cookie goes over https only."""
    return config_of(request).client(request.app[NAME_KEY]).base_url.startswith("https:")


def _plain(value: str) -> str:
    return "".join(character if character.isalnum() or character in "_-. " else "?" for character in value[:80])
