"""Signing people in through an OpenID Connect provider: authorization code with PKCE.

`begin` sends the browser to the provider with a fresh state, nonce and code
challenge, which the browser keeps for ten minutes in a sealed cookie
(client.signinpending), not the client; `finish` takes the provider's answer
back with that cookie, exchanges its code (with the verifier and the client's
secret) at the provider's token endpoint, and checks the ID token
(client.idtoken).
The person is its `username_claim`, their groups its `groups_claim`; the
client's grants give them roles (client.access), and a session keeps them
signed in (client.tables.sessions). The provider's endpoints and keys come
from its discovery document, fetched once and again when its keys change.
GitHub, which gives no ID token, signs in through its own OAuth flow
(`GitHubSignIn`, `provider: github`): the person and their groups are what
its API says of the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from client.idtoken import IdTokenError, UnknownKey, checked_claims
from client.intake import WebhookError
from client.noderequests import read_capped
from client.signinpending import Pending, Sealer
from pbft.build import ACTOR_NAME
from shared.config import NetworkConfig
from shared.config_principals import SignInConfig

MAX_GROUPS = 100
HTTP_TIMEOUT_S = 10.0
MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Person:
    name: str
    groups: tuple[str, ...]


class SignIn:
    def __init__(self, settings: SignInConfig, redirect_uri: str, http: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        # The path the provider sends the browser back to: the only one its sign-in cookie goes to.
        self.return_path = urlsplit(redirect_uri).path or "/"
        self.clock = clock
        self._http = http
        self._sealer = Sealer()
        self._metadata: dict | None = None
        self._keys: dict | None = None

    async def begin(self, next_path: str) -> tuple[str, Pending]:
        """Where to send the browser to sign in, and the sign-in it begins, which the browser
        keeps (`sealed`); it comes back to `next_path` once signed in."""
        metadata = await self._discovered()
        pending = Pending.new(next_path, self.clock())
        scopes = ("openid", *(scope for scope in self.settings.scopes if scope != "openid"))
        query = {
            "response_type": "code", "client_id": self.settings.client_id, "redirect_uri": self.redirect_uri,
            "scope": " ".join(scopes), "state": pending.state, "nonce": pending.nonce,
            "code_challenge": challenge_of(pending.verifier), "code_challenge_method": "S256",
        }
        return f"{metadata['authorization_endpoint']}?{urlencode(query)}", pending

    def sealed(self, pending: Pending) -> str:
        """A begun sign-in as the cookie the browser keeps it in."""
        return self._sealer.sealed(pending)

    def pending(self, sealed: str | None, state: str) -> Pending:
        """The sign-in `state` names, from the cookie the browser brought back (`sealed`); a 400
        if the browser brought none, another, a forged or one older than ten minutes."""
        return self._sealer.opened(sealed, state, self.clock())

    async def finish(self, pending: Pending, code: str) -> tuple[Person, str]:
        """The person the provider signed in for `pending`, and where they were going."""
        metadata = await self._discovered()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": pending.verifier, "client_id": self.settings.client_id}
        answer = await self._json("POST", metadata["token_endpoint"], data=form, headers=self._client_auth())
        if "error" in answer:
            raise WebhookError(400, f"the provider refused the sign-in: {_shown(answer.get('error'))}")
        claims = await self._claims(answer.get("id_token"), pending.nonce)
        return self._person(claims), pending.next_path

    async def _claims(self, token: object, nonce: str) -> dict:
        keys = await self._published_keys(refresh=False)
        check = {"issuer": self.settings.issuer, "client_id": self.settings.client_id, "nonce": nonce,
                 "now": self.clock()}
        try:
            return checked_claims(token, keys, **check)
        except UnknownKey:
            pass  # the provider may have rotated its keys since they were fetched: once more, fetched anew
        except IdTokenError as error:
            raise WebhookError(400, f"the provider's ID token does not check: {error.reason}") from None
        try:
            return checked_claims(token, await self._published_keys(refresh=True), **check)
        except IdTokenError as error:
            raise WebhookError(400, f"the provider's ID token does not check: {error.reason}") from None

    def _client_auth(self) -> dict[str, str]:
        """client_secret_basic (RFC 6749 2.3.1: id and secret form-encoded, then Basic); none
        for a public client, which PKCE alone binds."""
        if not self.settings.client_secret:
            return {}
        pair = f"{quote(self.settings.client_id, safe='')}:{quote(self.settings.client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")}

    def _person(self, claims: dict) -> Person:
        groups = claims.get(self.settings.groups_claim, []) if self.settings.groups_claim else []
        return person(claims.get(self.settings.username_claim), groups,
                      f"{self.settings.username_claim} claim is no plain name (letters, digits and ._@+:/-, at most "
                      "128): set username_claim to one that is")

    async def _discovered(self) -> dict:
        if self._metadata is None:
            issuer = self.settings.issuer.rstrip("/")
            metadata = await self._json("GET", f"{issuer}/.well-known/openid-configuration")
            if metadata.get("issuer") != self.settings.issuer:
                raise WebhookError(502, f"the provider at {issuer} names another issuer: set issuer to what "
                                        "its /.well-known/openid-configuration says")
            for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not str(metadata.get(endpoint, "")).startswith(("https:", "http:")):
                    raise WebhookError(502, f"the provider's discovery document has no {endpoint}")
            self._metadata = metadata
        return self._metadata

    async def _published_keys(self, *, refresh: bool) -> dict:
        if self._keys is None or refresh:
            self._keys = await self._json("GET", (await self._discovered())["jwks_uri"])
        return self._keys

    async def _json(self, method: str, url: str, kind: type = dict, **kwargs) -> Any:
        """A JSON object (or a `kind`) from the provider; a 502 if it cannot be had."""
        try:
            async with self._http.request(method, url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
                                          allow_redirects=False, **kwargs) as response:
                # Read whole: one read of the stream gives only what has arrived so far.
                body = await read_capped(response, MAX_DOCUMENT_BYTES)
                if body is None:
                    raise WebhookError(502, f"the provider's answer from {url} is too large")
                # Decoded whatever its content type says: some providers label JSON otherwise.
                data = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise WebhookError(502, f"the provider did not answer at {url}: {type(error).__name__}") from None
        if not isinstance(data, kind):
            raise WebhookError(502, f"the provider's answer from {url} is not a JSON {kind.__name__}")
        return data


def challenge_of(verifier: str) -> str:
    """PKCE's S256 challenge of `verifier` (RFC 7636 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def person(name: object, groups: object, refusal: str) -> Person:
    """Who signed in, by a plain name (else a 400 that says the provider's `refusal`), with the
    plain names among `groups`, the first MAX_GROUPS."""
    if not isinstance(name, str) or not ACTOR_NAME.fullmatch(name):
        raise WebhookError(400, f"the provider's {refusal}")
    plain = [group for group in groups if isinstance(group, str) and ACTOR_NAME.fullmatch(group)] \
        if isinstance(groups, list) else []
    return Person(name, tuple(dict.fromkeys(plain))[:MAX_GROUPS])


def _shown(value: object) -> str:
    """A provider's error code, as plain text of a bounded length."""
    text = str(value)[:80]
    return "".join(character if character.isalnum() or character in "_-. " else "?" for character in text)


# Only when people sign in (clients[].sign_in): kept here, beside what it holds.
SIGNIN_KEY = web.AppKey("sign_in", SignIn)


def sign_in_ctx(config: NetworkConfig, client_name: str):
    """People signing in through the client's OpenID provider, if it has one; with an HTTP
    session of its own, which checks the provider's certificate. Its settings are the ones the
    client started with: a change needs a restart."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = config.client(client_name)
        if client.sign_in is None:
            yield
            return
        kind = GitHubSignIn if client.sign_in.provider == "github" else SignIn
        async with aiohttp.ClientSession() as session:
            app[SIGNIN_KEY] = kind(client.sign_in, f"{client.base_url}/auth/callback", session)
            yield

    return ctx


class GitHubSignIn(SignIn):
    """GitHub's OAuth web flow, with PKCE: GitHub gives an access token, not an ID token, so the
    person is whom its API says the token is for (`GET /user`: their login), and their groups
    their organizations and teams (`<org>`, `<org>/<team>`; the scope read:org)."""

    async def begin(self, next_path: str) -> tuple[str, Pending]:
        pending = Pending.new(next_path, self.clock())
        query = {"client_id": self.settings.client_id, "redirect_uri": self.redirect_uri, "scope": "read:org",
                 "state": pending.state, "code_challenge": challenge_of(pending.verifier),
                 "code_challenge_method": "S256", "allow_signup": "false"}
        return f"{self.settings.issuer.rstrip('/')}/login/oauth/authorize?{urlencode(query)}", pending

    async def finish(self, pending: Pending, code: str) -> tuple[Person, str]:
        form = {"client_id": self.settings.client_id, "client_secret": self.settings.client_secret, "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier}
        answer = await self._json("POST", f"{self.settings.issuer.rstrip('/')}/login/oauth/access_token", data=form,
                                  headers={"Accept": "application/json"})
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise WebhookError(400, f"GitHub refused the sign-in: {_shown(answer.get('error', 'no access token'))}")
        api = self.settings.api_url or ("https://api.github.com" if self.settings.issuer.rstrip("/") == GITHUB
                                        else f"{self.settings.issuer.rstrip('/')}/api/v3")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        user = await self._json("GET", f"{api}/user", headers=headers)
        orgs = await self._json("GET", f"{api}/user/orgs?per_page=100", list, headers=headers)
        teams = await self._json("GET", f"{api}/user/teams?per_page=100", list, headers=headers)
        groups = [org.get("login") for org in orgs if isinstance(org, dict)] + [
            f"{team['organization'].get('login')}/{team.get('slug')}" for team in teams
            if isinstance(team, dict) and isinstance(team.get("organization"), dict)]
        return person(user.get("login"), groups, "login is no plain name"), pending.next_path


GITHUB = "https://github.com"
