"""Who may do what: every route asks for a role, and a caller has one.

The roles, each including the ones before it (`ROLES`):

- `read`: the build records, logs, artifacts, evidence, the audit, the dashboard's data;
- `trigger`: ask for builds with a plain call;
- `operate`: cancel and re-run builds, report an action runner's results;
- `approve`: build a fork's pull request that waits for an approval;
- `admin`: submit a change of the network document.

A caller is whoever its `Authorization: Bearer` token or its session cookie
(a person signed in, client.signin, with the roles the client's grants give
them) names: the client's own
machine token (`token_file`) acts as `admin` under the client's name, a
personal API token (client.tables.tokens) as its owner with the role it was
made with, on the repositories it was made for (all, unless it names some):
a build, its evidence and what acts on it ask for the role on the build's
repository, a listing shows only the caller's repositories, and what is the
whole network's (its state, metrics, a change of its document) asks for the
role on every repository. A forge delivery is authenticated by its repository's webhook
secret instead (client.forges) and only triggers builds. Without a machine
token or sign-in the client reads openly, and takes plain calls only where the
configuration opted out of the token, which only a client listening on a
loopback address may do (shared.config).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Callable, Iterable, Mapping, Protocol

from client.actors import machine
from client.intake import WebhookError
from client.tables.sessions import SESSION_COOKIE, Sessions
from client.tables.tokens import TOKEN_PREFIX, Holder, TokenRefused, Tokens
from pbft.build import Actor
from shared.config import NetworkConfig
from shared.config_principals import ROLES, GrantConfig
from shared.reload import LiveConfig

READ, TRIGGER, OPERATE, APPROVE, ADMIN = ROLES
# RFC 6750 3: a 401 names the scheme the caller should use.
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# The header a signed-in person's requests that change something carry their session's CSRF token in.
CSRF_HEADER = "X-CSRF-Token"
# What `require` is asked for when a route concerns the whole network, not one repository.
EVERY_REPOSITORY = "*"


def higher(*roles: str | None) -> str | None:
    """The highest of `roles` (None: no role)."""
    held = [role for role in roles if role is not None]
    return max(held, key=ROLES.index) if held else None


@dataclass(frozen=True)
class Caller:
    """Who calls, and its role on each repository: `everywhere` on every one, and `on` where
    it has a higher one."""

    actor: Actor
    everywhere: str | None
    on: Mapping[str, str] = field(default_factory=dict)
    csrf: str | None = field(default=None, repr=False)  # a person signed in: their session's CSRF token

    def role_on(self, repository: str) -> str | None:
        return higher(self.everywhere, self.on.get(repository))

    @property
    def repositories(self) -> frozenset[str] | None:
        """The repositories it may read (None: every one), which a listing keeps."""
        if _covers(self.everywhere, READ):
            return None
        return frozenset(repository for repository, role in self.on.items() if _covers(role, READ))

    def check(self, role: str, repository: str | None = None) -> None:
        """WebhookError 403, naming what is missing, unless the caller has `role` on
        `repository` (None: on some repository, as a listing asks; EVERY_REPOSITORY: on all)."""
        who = self.actor.label()
        if repository is None:
            highest = higher(self.everywhere, *self.on.values())
            if not _covers(highest, role):
                has = f"the role {highest}" if highest else "no role"
                raise WebhookError(403, f"this needs the role {role}: {who} has {has}")
        elif repository == EVERY_REPOSITORY:
            if not _covers(self.everywhere, role):
                raise WebhookError(403, f"this needs the role {role} on every repository: "
                                        f"{who} has {self.everywhere or 'no role'} on every repository")
        elif not _covers(self.role_on(repository), role):
            raise WebhookError(403, f"this needs the role {role} on repository {repository}: "
                                    f"{who} has {self.role_on(repository) or 'no role'} there")


def _covers(held: str | None, needed: str) -> bool:
    return held is not None and ROLES.index(held) >= ROLES.index(needed)


def granted(grants: Iterable[GrantConfig], user: str, groups: Iterable[str] = ()) -> tuple[str | None, dict[str, str]]:
    """The role `user` (in `groups`) has on every repository, and where it has a higher one,
    by the client's `grants`: the highest each grant that names them gives."""
    groups = set(groups)
    everywhere, on = None, {}
    for grant in grants:
        if user not in grant.users and not groups & set(grant.groups):
            continue
        if not grant.repositories:
            everywhere = higher(everywhere, grant.role)
        for repository in grant.repositories:
            on[repository] = higher(on.get(repository), grant.role)
    return everywhere, {repository: role for repository, role in on.items() if higher(role, everywhere) != everywhere}


def session_cookie(headers: Mapping[str, str]) -> str | None:
    """The value of the session cookie a request carries, if any."""
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("Cookie", ""))
    except CookieError:
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return None if morsel is None else morsel.value


class Credentials(Protocol):
    """Where callers' tokens and sessions are looked up: the client's records."""

    tokens: Tokens
    sessions: Sessions


@dataclass(frozen=True)
class AccessRules:
    token: str = field(repr=False)  # "" when none is configured
    plain_without_token: bool
    client_name: str = "client"
    grants: tuple[GrantConfig, ...] = ()
    sign_in: bool = False  # people sign in (client.signin)

    @classmethod
    def from_config(cls, config: NetworkConfig, client_name: str) -> AccessRules:
        client = config.client(client_name)
        return cls(client.token, client.plain_without_token, client_name, client.grants, client.sign_in is not None)

    def require(self, headers: Mapping[str, str], role: str, credentials: Credentials | None, now: float,
                repository: str | None = None) -> Caller:
        """Who the caller is, or WebhookError: 401 for a caller who is nobody, 403 for one
        without `role` on `repository` (see `Caller.check`), naming what it lacks, or for a
        person signed in who asks to change something without the session's CSRF token."""
        caller = self._bearer(headers, credentials, now) or self._signed_in(headers, credentials, now)
        if caller is None:
            if self.token or self.sign_in:
                how = "sign in (GET /login) or give " if self.sign_in else ""
                raise WebhookError(401, f"{how}Authorization: Bearer <token> is required", headers=_CHALLENGE)
            if role != READ and not self.plain_without_token:
                raise WebhookError(
                    403,
                    "plain webhook calls are refused: set token_file for this client "
                    "(or plain_without_token: true if it listens on a loopback address)",
                )
            return Caller(machine(self.client_name), ADMIN)
        caller.check(role, repository)
        if caller.csrf is not None and role != READ:
            # A cookie goes with every request a browser makes to this client, whichever page
            # asked for it; the CSRF token only with what this client's own pages send.
            given = headers.get(CSRF_HEADER, "").encode("utf-8", "surrogatepass")
            if not hmac.compare_digest(given, caller.csrf.encode("ascii")):
                raise WebhookError(403, f"a signed-in request that changes something needs the {CSRF_HEADER} "
                                        "header that GET /session gives")
        return caller

    def _bearer(self, headers: Mapping[str, str], credentials: Credentials | None, now: float) -> Caller | None:
        scheme, _, given = headers.get("Authorization", "").strip().partition(" ")
        if not scheme and not given:
            return None
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise WebhookError(401, "Authorization: Bearer <token> is required", headers=_CHALLENGE)
        # Compared as bytes: compare_digest refuses non-ASCII str, and header
        # values may carry surrogate escapes of undecodable bytes.
        if self.token and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token.encode("ascii")):
            return Caller(machine(self.client_name), ADMIN)
        if not self.token and not self.sign_in and not given.startswith(TOKEN_PREFIX):
            return None  # no machine token to be: the caller is whoever calls without one
        if given.startswith(TOKEN_PREFIX) and credentials is not None:
            try:
                holder = credentials.tokens.holder(given, now)
            except TokenRefused as refused:
                raise WebhookError(401, refused.reason, headers=_CHALLENGE) from None
            if holder is not None:
                return self._holding(holder)
        raise WebhookError(401, "wrong bearer token", headers=_CHALLENGE)

    def _signed_in(self, headers: Mapping[str, str], credentials: Credentials | None, now: float) -> Caller | None:
        """The person whose session cookie came, if it is live; None for no cookie or a stale one."""
        cookie = session_cookie(headers)
        if not self.sign_in or credentials is None or cookie is None:
            return None
        session = credentials.sessions.get(cookie, now)
        if session is None:
            return None
        return Caller(Actor("user", session.user), *granted(self.grants, session.user, session.groups),
                      csrf=session.csrf)

    def _holding(self, holder: Holder) -> Caller:
        """A personal token's caller: the role it was made with, on the repositories it was
        made for; or, made without one, whatever its owner is granted now."""
        actor = Actor("token", holder.owner)
        if holder.role is None:
            return Caller(actor, *granted(self.grants, holder.owner, holder.groups))
        if holder.repositories is None:
            return Caller(actor, holder.role)
        return Caller(actor, None, {repository: holder.role for repository in holder.repositories})


class CurrentAccess:
    """The access rules of the configuration the client runs with now (a reload may set,
    change or remove the client's token), and the tokens and sessions its records hold."""

    def __init__(self, live: LiveConfig, client_name: str, credentials: Callable[[], Credentials | None],
                 clock: Callable[[], float]) -> None:
        self._live = live
        self._client_name = client_name
        self._credentials = credentials
        self._clock = clock

    def rules(self) -> AccessRules:
        return AccessRules.from_config(self._live.current, self._client_name)

    def require(self, headers: Mapping[str, str], role: str, repository: str | None = None) -> Caller:
        return self.rules().require(headers, role, self._credentials(), self._clock(), repository)
