"""The typed keys under which the client's app holds what its handlers share.

Each is set once: the access rules, the live configuration, the client's
name and its metrics by the app factory (client.app), the records and the
service by their cleanup contexts (client.contexts). The node proxies keep
theirs next to what they serve (client.transfers, client.buildlogs,
client.artifacts), as the dashboard does (client.dashboard).
"""

from __future__ import annotations

from aiohttp import web

from client.access import CurrentAccess
from client.metrics import ClientMetrics
from client.records import BuildRecords
from client.service import ClientService
from shared.reload import LiveConfig

ACCESS_KEY = web.AppKey("access", CurrentAccess)
LIVE_KEY = web.AppKey("live_config", LiveConfig)
METRICS_KEY = web.AppKey("metrics", ClientMetrics)
NAME_KEY = web.AppKey("client_name", str)
RECORDS_KEY = web.AppKey("records", BuildRecords)
SERVICE_KEY = web.AppKey("service", ClientService)
