"""The client's HTTP interface: thin handlers, one module per group of routes.

Handlers check who asks (client.access) and what (client.intake,
client.forges, client.routes.params), hand the work to the service's verbs
or read the records, and answer JSON. Bad input is answered with a 4xx and a
reason; a 500 means a bug in this program and is logged with its traceback
(client.routes.errors).

- `webhook`: `POST /webHook`, a plain call or a forge's delivery;
- `builds`: the build records, what action runners report of a build, and who did what (the audit);
- `verbs`: re-run or cancel a build, approve a fork's pull request;
- `changes`: a change of the network document, which its owners signed;
- `signin`: people signing in and out through the team's OpenID provider;
- `nodes`: what the nodes serve through the client (logs, artifacts, their records and status);
- `evidence`: a verdict's certificate, attestation, in-toto bundle and provenance;
- `about`: the client's identity and metrics, the dashboard and the badges.
"""

from __future__ import annotations

import time

from aiohttp import web

from client.access import CurrentAccess
from client.keys import ACCESS_KEY, LIVE_KEY, RECORDS_KEY
from client.routes import about, builds, changes, evidence, nodes, signin, verbs, webhook
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig


def add_routes(app: web.Application, config: NetworkConfig, client_name: str, auth: Authenticator) -> None:
    """Every route of the client, the access rules they check (from `app[LIVE_KEY]`, which a
    reload may change), and what the routes to the nodes need."""
    # The records open with the app (client.contexts); a request finds them open.
    app[ACCESS_KEY] = CurrentAccess(app[LIVE_KEY], client_name, lambda: app[RECORDS_KEY], time.time)
    nodes.add_node_proxies(app, config, client_name, auth)
    for module in (webhook, builds, verbs, changes, signin, nodes, evidence, about):
        app.add_routes(module.routes)
    about.add_pages(app)
