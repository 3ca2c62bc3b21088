"""The client's aiohttp application: the app factory.

The resources live in cleanup contexts (client.contexts), the routes in
their own modules (client.routes), and what the handlers share under typed
keys (client.keys).
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from client.contexts import abandon_outstanding, records_ctx, resume_pending, schedules_ctx, service_ctx
from client.keys import LIVE_KEY, METRICS_KEY, NAME_KEY, SERVICE_KEY
from client.gatherers import GATHERERS
from client.metrics import ClientMetrics
from client.notifications import NotifySettings, notifications_ctx  # the settings as the notifier defines them
from client.signin import sign_in_ctx
from client.routes import add_routes
from client.routes.errors import errors_as_json
from client.statuses import commit_statuses_ctx
from shared.config import NetworkConfig, load_config
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key
from shared.reload import LiveConfig, reload_on_sighup


def client_authenticator(config: NetworkConfig, client_name: str) -> Ed25519Authenticator:
    """Signs as the client `client_name` with its private key; verifies the network's nodes."""
    return Ed25519Authenticator(
        load_private_key(config.client_key_path(client_name)),
        {node.id: parse_public_key(node.public_key) for node in config.nodes},
        {},
    )


def make_app(
    config: NetworkConfig, client_name: str, *, deadline_s: float | None = None,
    notify_settings: NotifySettings = NotifySettings(), config_path: str | Path | None = None,
) -> web.Application:
    """The client `client_name` of `config`. SIGHUP re-reads `config_path` (the path the
    client was started with; default `config.path`) and applies what may change live
    (shared.reload): handlers read `app[LIVE_KEY].current`, never a configuration of their own."""
    config.client(client_name)  # raises KeyError for a name the config does not know
    auth = client_authenticator(config, client_name)
    metrics = ClientMetrics(lambda: app[SERVICE_KEY].core.waiting if SERVICE_KEY in app else 0,
                            lambda: app[SERVICE_KEY].core.queued if SERVICE_KEY in app else 0)
    app = web.Application(middlewares=[metrics.count_webhooks(), errors_as_json])  # outermost: sees every answer
    # As client/index.py read it at the start: with the client's secrets.
    live = LiveConfig(config, functools.partial(load_config, config_path or config.path), f"client {client_name}",
                      metrics.count_reload)
    app[METRICS_KEY] = metrics
    app[LIVE_KEY] = live
    app[NAME_KEY] = client_name
    app.cleanup_ctx.extend([
        records_ctx(config, client_name),
        sign_in_ctx(config, client_name),
        service_ctx(config, client_name, auth, deadline_s),
        # After the service's context: they observe its events, and stop before it closes.
        commit_statuses_ctx(live, client_name, SERVICE_KEY),
        notifications_ctx(live, client_name, SERVICE_KEY, metrics.count_notification, notify_settings),
        schedules_ctx,
        *GATHERERS,  # other clients' builds, from the nodes' ledgers; the repositories' flaky tests
        reload_on_sighup(live),
    ])
    app.on_startup.append(resume_pending)  # runs after the cleanup contexts have started
    app.on_shutdown.append(abandon_outstanding)
    add_routes(app, config, client_name, auth)
    return app
