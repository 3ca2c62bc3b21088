"""Signing in and out (client.signin): `GET /login` sends the browser to the team's OpenID
provider, `GET /auth/callback` takes it back and, for the browser that began the sign-in,
begins a session; `GET /session` says who is signed in (with the CSRF token the pages
send), `POST /logout` ends the session. And a person's own API tokens for scripts
(`/tokens`): made, listed and revoked only from a session, never with a token, so that a
token cannot beget another."""

from __future__ import annotations

import hmac
import logging
import re
import time

from aiohttp import web

from client.access import CSRF_HEADER, session_cookie
from client.intake import WebhookError, json_object
from client.keys import NAME_KEY, RECORDS_KEY
from client.routes.params import MAX_BUILD_ID, bounded_int, config_of, read_capped, webhook_settings
from client.signin import SIGNIN_KEY, SignIn
from client.signinpending import PENDING_S, cookie_name
from client.tables.sessions import SESSION_COOKIE, Session
from client.tables.tokens import DEFAULT_DAYS, MAX_TOKEN_DAYS, TokenMade
from pbft.build import ACTOR_NAME

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# Where a sign-in may return to: a path of this client, never another site (`//host`, `/\\host`).
_NEXT = re.compile(r"/(?![/\\])[!-~]{0,1999}")
MAX_PARAMETER_CHARS = 4096
MAX_TOKEN_REQUEST_BYTES = 1024


@routes.get("/login")
async def login(request: web.Request) -> web.Response:
    """To the provider, with the sign-in's state, nonce and verifier in a cookie of this browser's
    (client.signinpending): only the browser that began a sign-in can finish it."""
    next_path = request.query.get("next", "/dashboard")
    if not _NEXT.fullmatch(next_path):
        raise web.HTTPBadRequest(reason="next must be a path of this client, starting with one /")
    sign_in = _sign_in(request)
    url, pending = await sign_in.begin(next_path)
    response = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    # Lax, not Strict: the provider sends the browser back with a top-level GET from its own
    # site, which a Strict cookie would not go with. Only to the return route, and gone when
    # the sign-in may no longer be finished.
    response.set_cookie(cookie_name(pending.state), sign_in.sealed(pending), max_age=PENDING_S,
                        path=sign_in.return_path, httponly=True, samesite="Lax", secure=_secure(request))
    return response


@routes.get("/auth/callback")
async def callback(request: web.Request) -> web.Response:
    """The provider's answer: a session for the person it signed in, if this browser began the
    sign-in its state names. The sign-in's cookie is spent whatever the outcome."""
    sign_in, state = _sign_in(request), request.query.get("state", "")
    name = cookie_name(state)
    carried = bool(state) and name in request.cookies
    try:
        response = await _signed_in(request, sign_in, state)
    except WebhookError as error:
        if not carried:
            raise
        response = web.json_response({"error": error.reason}, status=error.status, headers=error.headers)
    if carried:
        response.del_cookie(name, path=sign_in.return_path, secure=_secure(request), httponly=True, samesite="Lax")
    return response


async def _signed_in(request: web.Request, sign_in: SignIn, state: str) -> web.Response:
    query = request.query
    if "error" in query:
        raise WebhookError(400, f"the provider did not sign you in: {_plain(query['error'])}")
    code = query.get("code", "")
    if not state or not code or max(len(state), len(code)) > MAX_PARAMETER_CHARS:
        raise WebhookError(400, "the provider's answer has no state and code")
    pending = sign_in.pending(request.cookies.get(cookie_name(state)), state)
    person, next_path = await sign_in.finish(pending, code)
    cookie, session = request.app[RECORDS_KEY].sessions.begin(person.name, person.groups, time.time(),
                                                                sign_in.settings.session_hours)
    log.info("user %s signed in (groups: %s)", person.name, ", ".join(person.groups) or "none")
    response = web.Response(status=303, headers={"Location": next_path})
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(session.expires_at - time.time()), path="/",
                        httponly=True, samesite="Lax", secure=_secure(request))
    return response


@routes.get("/session")
async def who(request: web.Request) -> web.Response:
    """Who is signed in, their groups, until when, and the CSRF token their pages send."""
    _, session = _session(request, "knowing who you are", csrf=False)
    return web.json_response({"user": session.user, "groups": list(session.groups), "csrf": session.csrf,
                              "expires_at": session.expires_at}, headers={"Cache-Control": "no-store"})


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    cookie, session = _session(request, "signing out")
    request.app[RECORDS_KEY].sessions.end(cookie)
    log.info("user %s signed out", session.user)
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.post("/tokens")
async def make_token(request: web.Request) -> web.Response:
    """A token for the person signed in, acting with what the grants give them and their
    groups; shown in this answer only. Body: `{"label": "laptop", "days": 90}`."""
    _, session = _session(request, "making a token")
    body = json_object(await read_capped(request, MAX_TOKEN_REQUEST_BYTES, webhook_settings(request).body_timeout_s))
    label, days = body.get("label", "api"), body.get("days", DEFAULT_DAYS)
    if not isinstance(label, str) or not ACTOR_NAME.fullmatch(label):
        raise WebhookError(400, "label must be a plain name: letters, digits and ._@+:/- (at most 128)")
    if type(days) is not int or not 1 <= days <= MAX_TOKEN_DAYS:
        raise WebhookError(400, f"days must be a whole number from 1 to {MAX_TOKEN_DAYS}")
    made = TokenMade(session.user, label, None, days, groups=session.groups)
    token_id, token = request.app[RECORDS_KEY].tokens.create(made, time.time())
    log.info("user %s made token %d (%s, %d days)", session.user, token_id, label, days)
    return web.json_response({"token_id": token_id, "token": token, "days": days}, status=201,
                             headers={"Cache-Control": "no-store"})


@routes.get("/tokens")
async def my_tokens(request: web.Request) -> web.Response:
    _, session = _session(request, "listing one's tokens", csrf=False)
    return web.json_response({"tokens": request.app[RECORDS_KEY].tokens.listed(session.user)})


@routes.post("/tokens/{token_id}/revoke")
async def revoke_token(request: web.Request) -> web.Response:
    _, session = _session(request, "revoking a token")
    token_id = bounded_int(request.match_info["token_id"], 1, MAX_BUILD_ID)
    if token_id is None or not request.app[RECORDS_KEY].tokens.revoke(token_id, time.time(), session.user):
        raise web.HTTPNotFound(reason=f"no token {request.match_info['token_id'][:20]} of yours to revoke")
    log.info("user %s revoked token %d", session.user, token_id)
    return web.json_response({"revoked": token_id})


def _session(request: web.Request, doing: str, *, csrf: bool = True) -> tuple[str, Session]:
    """The session of the person signed in, and its cookie; 401 if there is none, 403 if what
    `doing` changes something and the request lacks the session's CSRF token."""
    _sign_in(request)
    cookie = session_cookie(request.headers)
    session = None if cookie is None else request.app[RECORDS_KEY].sessions.get(cookie, time.time())
    if session is None:
        raise WebhookError(401, f"{doing} needs someone signed in: GET /login")
    given = request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogatepass")
    if csrf and not hmac.compare_digest(given, session.csrf.encode("ascii")):
        raise WebhookError(403, f"{doing} needs the {CSRF_HEADER} header that GET /session gives")
    return cookie, session


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
