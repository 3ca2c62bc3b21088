"""What the nodes serve, through the client: a build's log from one node, its agreed artifacts,
why its nodes' artifacts differ (diffoscope), each node's ledger record of it, and each node's
status with the view this client follows.

The client signs each request to a node with its own key (client.noderequests)
and checks what comes back against what f+1 nodes agreed (client.artifacts);
the streams are bounded (client.transfers).
"""

from __future__ import annotations

from aiohttp import web

from client.access import EVERY_REPOSITORY, READ
from client.artifacts import add_artifact_proxy, serve_file, serve_manifest
from client.buildlogs import LOG_PROXY, add_build_log_proxy, serve_build_log
from client.divergence import DIVERGENCES, Divergences, serve_divergence
from client.testtables import serve_tests
from client.keys import ACCESS_KEY, RECORDS_KEY, SERVICE_KEY
from client.nodeviews import build_view, network_view
from client.routes.params import config_of, record_of
from client.transfers import NODE_SESSIONS, add_transfers
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig

routes = web.RouteTableDef()


def add_node_proxies(app: web.Application, config: NetworkConfig, client_name: str, auth: Authenticator) -> None:
    """The sessions to the nodes, their bounds, and what signing and checking their answers needs."""
    add_transfers(app, config, client_name)
    add_build_log_proxy(app, config, client_name, auth)
    add_artifact_proxy(app, config, client_name)
    app[DIVERGENCES] = Divergences()


@routes.get("/builds/{build_id}/log")
async def get_build_log(request: web.Request) -> web.StreamResponse:
    return await serve_build_log(request, record_of(request))


@routes.get("/builds/{build_id}/artifacts")
async def get_artifacts(request: web.Request) -> web.Response:
    """The build's agreed artifact manifest, from the first node that serves one with the agreed digest."""
    return await serve_manifest(request, record_of(request))


@routes.get("/builds/{build_id}/artifacts/{path:.+}")
async def get_artifact(request: web.Request) -> web.Response:
    """One artifact's bytes, from the first node whose bytes have the agreed digest."""
    return await serve_file(request, record_of(request))


@routes.get("/builds/{build_id}/divergence")
async def get_divergence(request: web.Request) -> web.Response:
    """Why the nodes' artifacts differ: each side's nodes and diffoscope's report of each file
    that differs between the two largest (client.divergence)."""
    record = record_of(request)
    varied = any(repository.name == record["repository"] and repository.vary
                 for repository in config_of(request).repositories)
    return await serve_divergence(request, record, varied)


@routes.get("/builds/{build_id}/tests")
async def get_tests(request: web.Request) -> web.Response:
    """The build's tests, a column per node, those whose outcome differs between nodes first
    (client.testtables)."""
    return await serve_tests(request, record_of(request))


@routes.get("/repositories/{repository}/flaky")
async def get_flaky_tests(request: web.Request) -> web.Response:
    """The repository's tests proven flaky in its branch builds, most often first: in how many
    builds, the last, and how often each node was on the failing side (client.tables.flaky)."""
    caller = request.app[ACCESS_KEY].require(request.headers, READ)
    repository = request.match_info["repository"]
    if repository not in {each.name for each in config_of(request).repositories}:
        raise web.HTTPNotFound(reason="no such repository in this network")
    caller.check(READ, repository)
    return web.json_response({"repository": repository, "tests": request.app[RECORDS_KEY].flaky.of(repository)})


@routes.get("/builds/{build_id}/nodes")
async def get_build_nodes(request: web.Request) -> web.Response:
    """Each node's ledger record of the build, fetched from the nodes, and every vote that verifies."""
    record = record_of(request)
    proxy = request.app[LOG_PROXY]
    # Under the client that signed it: with several clients, another may have (client.ledgerimport).
    view = await build_view(
        request.app[NODE_SESSIONS].short, proxy.nodes.values(), proxy.auth, record["client"], int(record["build_id"])
    )
    return web.json_response(view)


@routes.get("/network")
async def get_network(request: web.Request) -> web.Response:
    """Each node's GET /status, or "unreachable" with the reason, and the view and the network
    document this client follows."""
    request.app[ACCESS_KEY].require(request.headers, READ, EVERY_REPOSITORY)
    core = request.app[SERVICE_KEY].core
    nodes = await network_view(request.app[NODE_SESSIONS].short, request.app[LOG_PROXY].nodes.values())
    client = {"view": core.view, "primary": core.primary,
              # The network document this client runs, and the nodes that signed that they run another.
              "network": {"digest": core.frames.network,
                          "foreign": {str(node): digest for node, digest in core.frames.networks.foreign().items()}}}
    return web.json_response({"client": client, "nodes": nodes})
