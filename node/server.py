"""The node's aiohttp application: the app factory, and the routes: peer and client
WebSockets, /status, the ledger, build logs and artifacts.

`make_app` makes what the node's resources share (its keys, its client links, its metrics,
the live configuration) and puts each resource in a cleanup context of its own
(node/contexts.py), so tests and the CLI start and stop a node the same way; handlers reach
them under typed keys (node/keys.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable
import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from node.artifactroute import add_artifact_routes
from node.buildlogs import MAX_TIMESTAMP, add_build_log_route
from node.byzantine import HONEST, Behaviour
from node.clients import ClientLinks
from node.contexts import builds_ctx, driver_ctx, peers_ctx, statuses_ctx, store_ctx
from node.counts import count_of
from node.crashpoints import CrashAt
from node.driver import Build, Conduct
from node.logroutes import add_log_routes
from node.keys import CLIENTS, DRIVER, FIRST_DOCUMENT, HEARTBEAT, LIVE, METRICS, PEERS, SOCKETS
from node.metrics import NodeMetrics
from node.peers import HEARTBEAT_S, PeerLink
from shared.config import NetworkConfig, load_config
from shared.cli import next_keys
from shared.reload import LiveConfig, reload_on_sighup
from pbft.attestation import Signed, envelope_of, signers
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key, verify_bytes
from pbft.encoding import canonical
from pbft.build import Operation
from pbft.messages import MAX_FRAME_BYTES, decode, encode
from pbft.networkchange import document_digest
from pbft.quorum import reply_quorum
from pbft.wire import decode_struct

logger = logging.getLogger(__name__)

# Far above what a peer sends in normal operation (a few frames per request),
# far below what would let one connection keep a node busy verifying junk.
PEER_FRAMES_PER_S = 5_000
PEER_FRAME_BURST = 10_000
# Sequence numbers `GET /ledger` answers at once: each holds a batch, each build its votes.
LEDGER_PAGE = 64
LEDGER_PAGE_BYTES = 4 * 1024 * 1024  # and about as many bytes, at most: a client reads four times as many


class ClientConnection:
    """Replies toward one client WebSocket, written in order by one task."""

    def __init__(self, ws: web.WebSocketResponse, queue_limit: int = 1000) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_limit)
        self._task = asyncio.create_task(self._write())

    def send(self, frame: str) -> None:
        # A client that stops reading loses replies, not our memory; it can
        # always retransmit its request and get the stored reply again.
        if not self._queue.full():
            self._queue.put_nowait(frame)

    async def _write(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                await self._ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def authenticator_for(config: NetworkConfig, private_key, spare_keys=()) -> Ed25519Authenticator:
    return Ed25519Authenticator(
        private_key,
        {node.id: parse_public_key(node.public_key) for node in config.nodes},
        {client.name: parse_public_key(client.public_key) for client in config.clients},
        spare_keys,
    )


@dataclass(frozen=True)
class CommandLine:
    """What node/index.py's command line adds to the configuration it loaded: the path it read
    it from, which SIGHUP reads again (None: `config.path`), and a test's crash point (`--crash-at`)."""

    config_path: str | Path | None = None
    crash_at: CrashAt | None = None


def make_app(
    config: NetworkConfig,
    node_id: int,
    *,
    build: Build | None = None,
    behaviour: Behaviour = HONEST,
    heartbeat_s: float = HEARTBEAT_S,
    command_line: CommandLine = CommandLine(),
) -> web.Application:
    """A node of `config`; `build` replaces the Docker executor (tests), `behaviour` makes it Byzantine (demos).

    `heartbeat_s` is the WebSocket ping period on every socket of the node, both ends; tests shorten it.
    `command_line.crash_at` ends the process at one of the driver's crash points (tests of restarts).
    SIGHUP re-reads `command_line.config_path` (the path the node was started with; default
    `config.path`) and applies what may change live (shared.reload): the repositories.
    """
    app = web.Application()
    crash_point = None if command_line.crash_at is None else command_line.crash_at.install
    auth = authenticator_for(config, load_private_key(config.node_key_path(node_id)), next_keys(config, node_id))
    # Read at scrape time, once the driver's context has made the driver.
    node_metrics = app[METRICS] = NodeMetrics(lambda: app[DRIVER].status(),
                                              lambda: link_statuses(app[PEERS].links), lambda: auth.checks)
    # As node/index.py read it at the start: this node's files checked, none of the client's secrets read.
    load = functools.partial(load_config, command_line.config_path or config.path, node_id=node_id,
                             read_secrets=False)
    live = app[LIVE] = LiveConfig(config, load, f"node={node_id}", node_metrics.count_reload,
                                  reads_secrets=False)
    app[CLIENTS] = ClientLinks(node_id, auth.sign)
    app[HEARTBEAT] = heartbeat_s
    app[SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.extend([
        statuses_ctx(config, node_id),
        builds_ctx(config, node_id, build, behaviour.build_environment),
        peers_ctx(config, node_id, heartbeat_s, behaviour.peer),
        store_ctx(config, node_id),
        driver_ctx(config, node_id, auth, Conduct(behaviour, crash_point)),
        reload_on_sighup(live),
    ])
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/status", status)
    app.router.add_get("/network/document", network_document)
    app.router.add_get("/network/first", first_document)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/builds/{seq}", build_at)
    app.router.add_get("/ledger", ledger_after)
    app.router.add_get("/requests/{client}/{timestamp}", build_of_request)
    app.router.add_get("/requests/{client}/{timestamp}/attestation", attestation_of_request)
    app.router.add_get("/peer", peer_socket)
    app.router.add_get("/client", client_socket)
    add_build_log_route(app, config, node_id)
    add_artifact_routes(app, config, node_id, auth.sign_bytes)
    add_log_routes(app)
    return app


async def close_sockets(app: web.Application) -> None:
    """Close open WebSockets on shutdown instead of waiting for the peers to hang up."""
    for ws in list(app[SOCKETS]):
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"node shutting down")


async def open_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=request.app[HEARTBEAT])
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    return ws


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (node.metrics)."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    # The process id lets ./startNetwork.sh tell the node it started from another process on the port.
    return web.json_response(
        {**request.app[DRIVER].status(), "pid": os.getpid(), "links": link_statuses(request.app[PEERS].links)}
    )


async def network_document(request: web.Request) -> web.Response:
    """The network document this node runs (shared/networkdoc.py), its digest, the sequence
    number of the change that made it (0: the node's file) and the owners whose signatures
    carried that change: what scripts/network.py proposes a change against."""
    network = request.app[DRIVER].replica.network
    return web.json_response({"digest": network.digest, "changed_at": network.changed_at,
                              "signed_by": list(network.signed_by), "document": network.document})


async def first_document(request: web.Request) -> web.Response:
    """The network document this node's ledger starts from, which a restart replays the ledger's
    changes from: the one a node that joins starts with (scripts/network.py join --first-from)."""
    document = request.app[FIRST_DOCUMENT]
    return web.json_response({"digest": document_digest(document), "document": document})


def link_statuses(links: dict[int, PeerLink]) -> dict[int, dict]:
    """Each peer link's state, for GET /status and GET /metrics."""
    return {peer_id: link.status() for peer_id, link in links.items()}


async def build_at(request: web.Request) -> web.Response:
    """The builds ordered at one sequence number: this node's result, the certified verdict, the votes it kept."""
    seq = count_of(request.match_info["seq"])
    if seq is None:
        return web.json_response({"error": "a sequence number is a non-negative integer"}, status=400)
    driver = request.app[DRIVER]
    driver.write_deferred()  # votes and verdicts taken in since the last save are part of the record
    store = driver.store
    records = store.build_records(seq) if store is not None else []
    # A batch of no builds (verdicts for the log alone, or a new view's null request) executed all the same.
    if not records and (store is None or not store.executed_at(seq)):
        return web.json_response({"error": f"nothing executed at sequence number {seq}"}, status=404)
    return web.json_response({"seq": seq, "builds": records})


async def ledger_after(request: web.Request) -> web.Response:
    """`GET /ledger?after=SEQ`: the builds of the sequence numbers this node executed after SEQ,
    up to LEDGER_PAGE of them, as `GET /builds/{seq}` shows each: how every client of the
    network learns the builds another client asked for (client/ledgerimport.py)."""
    after = count_of(request.query.get("after", "0"))
    if after is None:
        return web.json_response({"error": "after is a non-negative integer"}, status=400)
    driver = request.app[DRIVER]
    driver.write_deferred()
    last = driver.replica.last_executed
    builds: list[dict] = []
    through, size = after, 0
    for seq in range(after + 1, min(after + LEDGER_PAGE, last) + 1):
        records = driver.store.build_records(seq) if driver.store is not None else []
        grown = len(json.dumps(records))
        # A page ends before it grows past its bound, so that batches of many builds never make
        # it one no client reads (client/ledgerimport.py MAX_ANSWER_BYTES); it holds one
        # sequence number's builds whole, whatever their size.
        if builds and size + grown > LEDGER_PAGE_BYTES:
            break
        builds += records
        through, size = seq, size + grown
    return web.json_response({"after": after, "through": through, "last_executed": last, "builds": builds})


def _record_of_request(request: web.Request) -> dict:
    """This node's ledger record of the build named by the route's client and timestamp;
    raises a 400 or 404 JSON answer when the timestamp is malformed or the build unknown."""
    client, timestamp = request.match_info["client"], count_of(request.match_info["timestamp"], digits=19)
    if timestamp is None or timestamp > MAX_TIMESTAMP:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "a timestamp is a non-negative 63-bit integer"}), content_type="application/json"
        )
    driver = request.app[DRIVER]
    driver.write_deferred()
    record = driver.store.build_record(client, timestamp) if driver.store is not None else None
    if record is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no executed request {timestamp} of client {client!r}"}),
            content_type="application/json",
        )
    return {**record, "build": driver.build_state((client, timestamp))}


async def build_of_request(request: web.Request) -> web.Response:
    """What `GET /builds/{seq}` shows for the one build a client knows by its request's timestamp."""
    return web.json_response(_record_of_request(request))


async def attestation_of_request(request: web.Request) -> web.Response:
    """The certified verdict of one build as a DSSE envelope, from the votes in this node's ledger:
    the agreeing voters' signatures of its in-toto statement, each checked here."""
    record = _record_of_request(request)
    # The members that ordered it, whose keys signed its votes (`pbft.epochs`).
    members = request.app[DRIVER].replica.epochs.members_at(record["seq"])
    envelope, problem = ledger_envelope(record, members.key_of, reply_quorum(members.f))
    if envelope is None:
        return web.json_response({"error": problem}, status=409)
    return web.Response(body=canonical(envelope), content_type="application/json")


def ledger_envelope(record: dict, node_keys: dict[int, str], needed: int) -> tuple[dict | None, str]:
    """The envelope of a ledger record's certified verdict, or None and why there is none."""
    verdict = record["verdict"]
    if verdict["state"] != "certified":
        return None, f"the verdict is {verdict['state']}, not certified"
    votes = [decode(item["vote"]) for item in record["votes"]]
    agreed = [vote for vote in votes if vote.result.agreed() == verdict["result"]]
    operation = decode_struct(Operation, record["operation"])
    attestation = Signed(operation, agreed[0].result)
    if not attestation.exists:
        return None, "the verdict names no commit: there is nothing to attest"
    found = signers(attestation, agreed, node_keys, _verify)
    if len(found) < needed:
        return None, f"{len(found)} voters signed the verdict's attestation, {needed} needed"
    return envelope_of(attestation, found), ""


def _verify(public_key_hex: str, data: bytes, sig: str) -> bool:
    return verify_bytes(parse_public_key(public_key_hex), data, sig)


class FrameBudget:
    """A token bucket per connection: a flooding peer loses its excess frames, not our time."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated_s = clock()

    def take(self) -> bool:
        now_s = self.clock()
        self.tokens = min(self.burst, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


async def frames(request: web.Request, ws: web.WebSocketResponse) -> AsyncIterator[aiohttp.WSMessage]:
    """The socket's frames until it closes. A far end that hung up while aiohttp answered
    its PING (a peer resumed after SIGSTOP, whose own end gave up on the connection) ends
    the stream here with one INFO line: a vanished peer is routine, not a server error."""
    try:
        async for frame in ws:
            yield frame
    except ConnectionError as error:
        logger.info("socket %s from %s gone: %s", request.path, request.remote, error)


async def peer_socket(request: web.Request) -> web.WebSocketResponse:
    """Frames from another node's outbound link; signatures, not the socket, say who sent them."""
    ws = await open_socket(request)
    driver = request.app[DRIVER]
    budget = FrameBudget(PEER_FRAMES_PER_S, PEER_FRAME_BURST, asyncio.get_running_loop().time)
    async for frame in frames(request, ws):
        if frame.type == aiohttp.WSMsgType.ERROR:
            too_big = getattr(ws.exception(), "code", None) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            driver.drops["peer_frame_too_big" if too_big else "peer_frame_error"] += 1
        elif frame.type != aiohttp.WSMsgType.TEXT:
            driver.drops[f"peer_frame_{frame.type.name.lower()}"] += 1
        else:
            # One frame per line: what the peer's link queued for us together (`node.peers`),
            # each charged to the budget and stepped as if it had come alone, in this one turn.
            for part in frame.data.split("\n"):
                if budget.take():
                    driver.on_frame(part)
                else:
                    driver.drops["peer_over_budget"] += 1
        # Let the other connections take their turn: one peer cannot hog the loop.
        await asyncio.sleep(0)
    return ws


async def client_socket(request: web.Request) -> web.WebSocketResponse:
    ws = await open_socket(request)
    driver, clients = request.app[DRIVER], request.app[CLIENTS]
    connection = ClientConnection(ws)
    replies = driver.behaviour.client(connection)
    # The challenge is the connection's, not a protocol output: it goes out
    # unchanged even from a node that misbehaves with its replies.
    connection.send(json.dumps(encode(clients.issue_challenge(replies))))
    try:
        async for frame in frames(request, ws):
            if frame.type == aiohttp.WSMsgType.TEXT:
                driver.on_frame(frame.data, replies)
    finally:
        clients.gone(replies)
        await connection.close()
    return ws
