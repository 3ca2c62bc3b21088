"""GitHub's side of its OAuth web flow, as its documentation gives it, for the sign-in tests:
GitHub itself cannot run here. `/login/oauth/authorize` approves at once for the one account it
signs in and sends the browser back with a code; `/login/oauth/access_token` trades the code for
a token only with the client's secret and the PKCE verifier of that code (answering 200 with an
`error`, as GitHub does); `/api/v3/user`, `/user/orgs` and `/user/teams` answer for that token.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import web

CLIENT_ID = "Iv1.8a61f9b3a7aba766"
CLIENT_SECRET = "1d5f3e8a0c2b4f6e8a0c2b4f6e8a0c2b4f6e8a0c"


@dataclass
class GitHub:
    login: str
    orgs: list[str]
    teams: list[tuple[str, str]]  # (org, team slug)
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, redirect_uri)
    tokens: set[str] = field(default_factory=set)
    exchanged: list[dict] = field(default_factory=list)  # every form the token endpoint took

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_get("/api/v3/user", self.user)
        app.router.add_get("/api/v3/user/orgs", self.user_orgs)
        app.router.add_get("/api/v3/user/teams", self.user_teams)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return web.Response(status=404)
        code = secrets.token_hex(10)
        self.codes[code] = (query["code_challenge"], query["redirect_uri"])
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}")

    async def access_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.exchanged.append(form)
        challenge, redirect_uri = self.codes.pop(form.get("code", ""), (None, None))
        verifier = form.get("code_verifier", "")
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (challenge is None or computed != challenge or form.get("redirect_uri") != redirect_uri
                or (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET)):
            return web.json_response({"error": "bad_verification_code"})
        token = "gho_" + secrets.token_hex(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": "read:org"})

    def _check(self, request: web.Request) -> None:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}', content_type="application/json")

    async def user(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response({"login": self.login, "id": 583231, "type": "User"})

    async def user_orgs(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response([{"login": org, "id": index} for index, org in enumerate(self.orgs)])

    async def user_teams(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response([{"slug": slug, "name": slug.title(), "organization": {"login": org}}
                                  for org, slug in self.teams])
