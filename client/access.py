"""Who may make the client build, and who may read its build records.

A forge delivery is authenticated by its repository's webhook secret
(client.forges). The plain call (`{"branch": ...}`) has no such secret, so it
needs the client's bearer token when one is configured; without a token it is
refused unless the configuration opted out, which only a client listening on
a loopback address may do (shared.config). Build records name branches,
commits and build output summaries, so they need the token too once an
operator has set one.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Mapping

from client.actors import machine
from client.intake import WebhookError
from pbft.build import Actor
from shared.config import NetworkConfig
from shared.reload import LiveConfig

# RFC 6750 3: a 401 names the scheme the caller should use.
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class AccessRules:
    token: str = field(repr=False)  # "" when none is configured
    plain_without_token: bool
    client_name: str = "client"

    @classmethod
    def from_config(cls, config: NetworkConfig, client_name: str) -> AccessRules:
        client = config.client(client_name)
        return cls(client.token, client.plain_without_token, client_name)

    def check_plain_call(self, headers: Mapping[str, str]) -> Actor:
        """Who this caller is (the actor its requests name), or WebhookError (401 or 403) unless
        it may ask for a build with a plain call."""
        if self.token:
            self._require_token(headers)
        elif not self.plain_without_token:
            raise WebhookError(
                403,
                "plain webhook calls are refused: set token_file for this client "
                "(or plain_without_token: true if it listens on a loopback address)",
            )
        return machine(self.client_name)

    def check_reader(self, headers: Mapping[str, str]) -> None:
        """Raise WebhookError 401 unless this caller may read build records; open when no token is set."""
        if self.token:
            self._require_token(headers)

    def _require_token(self, headers: Mapping[str, str]) -> None:
        scheme, _, credentials = headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise WebhookError(401, "Authorization: Bearer <token> is required", headers=_CHALLENGE)
        # Compared as bytes: compare_digest refuses non-ASCII str, and header
        # values may carry surrogate escapes of undecodable bytes.
        given = credentials.strip().encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, self.token.encode("ascii")):
            raise WebhookError(401, "wrong bearer token", headers=_CHALLENGE)


class CurrentAccess:
    """The access rules of the configuration the client runs with now: a reload may set,
    change or remove the client's token."""

    def __init__(self, live: LiveConfig, client_name: str) -> None:
        self._live = live
        self._client_name = client_name

    def rules(self) -> AccessRules:
        return AccessRules.from_config(self._live.current, self._client_name)

    def check_plain_call(self, headers: Mapping[str, str]) -> Actor:
        return self.rules().check_plain_call(headers)

    def check_reader(self, headers: Mapping[str, str]) -> None:
        self.rules().check_reader(headers)
