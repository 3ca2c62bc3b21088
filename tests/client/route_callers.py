"""Callers of the client's routes (client.apiroutes), as the route tests make them: the values
that fill a route's path, the person granted admin on a client that lets people sign in, and
a bearer token of any role."""

from __future__ import annotations

import dataclasses
import time

from client.apiroutes import Route
from client.keys import RECORDS_KEY
from client.tables.tokens import TokenMade
from shared.config_principals import GrantConfig, SignInConfig
from tests.client.client_token import TOKEN, with_client_settings
from tests.client.fake_nodes import start_client

# What fills a path's parameters: a build, approval and token that do not exist, real names otherwise.
PLAUSIBLE = {"build_id": "1", "approval_id": "1", "token_id": "1", "path": "a.txt", "name": "dashboard.js",
             "repository": "hello", "branch": "main", "action": "deploy"}
PERSON = "alice"


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def bearer(app, role: str, repositories: frozenset[str] | None = None) -> dict:
    made = TokenMade(f"{role}-person", "api", role, 1, repositories)
    return {"Authorization": f"Bearer {app[RECORDS_KEY].tokens.create(made, time.time())[1]}"}


async def guarded_client(cluster, aiohttp_client):
    """A client with its machine token, people signing in (through a provider no test reaches:
    `GET /login` only names it) and `PERSON` granted admin."""
    with_client_settings(cluster, token=TOKEN)
    client_config = dataclasses.replace(
        cluster.config.clients[0], grants=(GrantConfig("admin", users=(PERSON,)),),
        sign_in=SignInConfig("http://127.0.0.1:9", "pbft-ci", "secret", provider="github"))
    cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
    return await start_client(aiohttp_client, cluster)
