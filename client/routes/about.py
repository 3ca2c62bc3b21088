"""The client about itself, and for people: which client answers on this port (`GET /client`),
its metrics (`GET /metrics`), its routes as an OpenAPI document (`GET /openapi.json`), the
dashboard's pages (client.dashboard) and the branches' status badges (client.badge)."""

from __future__ import annotations

import functools
import json
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from client.access import EVERY_REPOSITORY, READ
from client.badge import add_badge
from client.dashboard import add_dashboard
from client.keys import ACCESS_KEY, METRICS_KEY, NAME_KEY

routes = web.RouteTableDef()


def add_pages(app: web.Application) -> None:
    add_dashboard(app)
    add_badge(app)


@routes.get("/client")
async def identity(request: web.Request) -> web.Response:
    """Which client answers on this port, and its process: scripts/startClient.sh is ready only
    when the process it started answers, not whatever else may hold the port. Public: a name
    from the configuration and a process id open nothing."""
    return web.json_response({"name": request.app[NAME_KEY], "pid": os.getpid()})


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format (client.metrics), behind the same token as the build records."""
    request.app[ACCESS_KEY].require(request.headers, READ, EVERY_REPOSITORY)
    return web.Response(body=request.app[METRICS_KEY].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    """This client's routes as an OpenAPI 3.1 document (client.openapi). Public: it describes
    the routes and holds nothing any of them serves, no address, name or secret."""
    return web.Response(body=_openapi_body(), content_type="application/json")


@functools.cache
def _openapi_body() -> bytes:
    # Imported at the first request, not at the top: client.openapi reads the route table
    # (client.apiroutes), which imports client.routes.params and so the package client.routes,
    # which imports this module; a program that imported client.openapi first would find it
    # half made here.
    from client.openapi import openapi_document

    return json.dumps(openapi_document()).encode()
