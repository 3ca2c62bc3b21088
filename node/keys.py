"""The typed keys under which a node's app holds what its handlers and cleanup contexts share.

Each is set once: the live configuration, the client links, the metrics, the WebSocket
heartbeat and the open sockets by the app factory (node/server.py `make_app`); the statuses,
the builds, the peer links, the store, the driver and the first network document by their
cleanup contexts (node/contexts.py).
"""

from __future__ import annotations

import weakref

from aiohttp import web

from node.clients import ClientLinks
from node.driver import Builds, Driver
from node.metrics import NodeMetrics
from node.peers import PeerLinks
from node.statuses import NodeStatuses
from node.storage import NodeStore
from shared.reload import LiveConfig

LIVE = web.AppKey("live_config", LiveConfig)
CLIENTS = web.AppKey("clients", ClientLinks)
METRICS = web.AppKey("metrics", NodeMetrics)
HEARTBEAT = web.AppKey("heartbeat_s", float)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
STATUSES = web.AppKey("node_statuses", NodeStatuses)
BUILDS = web.AppKey("builds", Builds)
PEERS = web.AppKey("peers", PeerLinks)
STORE = web.AppKey("store", NodeStore)
DRIVER = web.AppKey("driver", Driver)
FIRST_DOCUMENT = web.AppKey("first_document", dict)
