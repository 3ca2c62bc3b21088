"""The node's aiohttp application: peer and client WebSockets, /status, build logs and artifacts.

`make_app` builds everything a node needs from its configuration; the
resources (peer links, executor, driver) live in `cleanup_ctx`, so tests and
the CLI start and stop a node the same way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import weakref
from pathlib import Path
from typing import AsyncIterator, Callable
import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from node.artifactroute import add_artifact_routes
from node.buildlogs import MAX_TIMESTAMP, add_build_log_route
from node.byzantine import HONEST, Behaviour
from node.driver import Build, CrashAt, Driver
from node.metrics import NodeMetrics
from node.storage import NodeStore
from node.peers import HEARTBEAT_S, PeerLink, PeerLinks
from node.statuses import node_status_token_files, posting_node_statuses
from shared.config import ConfigError, NetworkConfig, load_config
from shared.cli import next_keys
from shared.networkdoc import agreed, document_problem
from shared.reload import LiveConfig, reload_on_sighup
from pbft.attestation import Signed, envelope_of, signers
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key, verify_bytes
from pbft.encoding import canonical
from pbft.build import Operation
from pbft.effects import NetworkChanged
from pbft.messages import decode, encode
from pbft.networkchange import document_digest
from pbft.quorum import reply_quorum
from pbft.replica import Replica
from pbft.wire import decode_struct

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 8 * 1024 * 1024
# Far above what a peer sends in normal operation (a few frames per request),
# far below what would let one connection keep a node busy verifying junk.
PEER_FRAMES_PER_S = 5_000
PEER_FRAME_BURST = 10_000
# Sequence numbers `GET /ledger` answers at once: each holds a batch, each build its votes.
LEDGER_PAGE = 64
LEDGER_PAGE_BYTES = 4 * 1024 * 1024  # and about as many bytes, at most: a client reads four times as many
DRIVER = web.AppKey("driver", Driver)
LINKS = web.AppKey("links", dict)
FIRST_DOCUMENT = web.AppKey("first_document", dict)
HEARTBEAT = web.AppKey("heartbeat_s", float)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
LIVE = web.AppKey("live_config", LiveConfig)


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


def make_app(
    config: NetworkConfig,
    node_id: int,
    *,
    build: Build | None = None,
    behaviour: Behaviour = HONEST,
    heartbeat_s: float = HEARTBEAT_S,
    crash_at: CrashAt | None = None,
    config_path: str | Path | None = None,
) -> web.Application:
    """A node of `config`; `build` replaces the Docker executor (tests), `behaviour` makes it Byzantine (demos).

    `heartbeat_s` is the WebSocket ping period on every socket of the node, both ends; tests shorten it.
    `crash_at` ends the process at one of the driver's crash points (tests of restarts).
    SIGHUP re-reads `config_path` (the path the node was started with; default `config.path`)
    and applies what may change live (shared.reload): the repositories.
    """
    app = web.Application()
    # As node/index.py read it at the start: this node's files checked, none of the client's secrets read.
    load = functools.partial(load_config, config_path or config.path, node_id=node_id, read_secrets=False)
    live = app[LIVE] = LiveConfig(config, load, f"node={node_id}", lambda outcome: _count_reload(app, outcome),
                                  reads_secrets=False)
    app[HEARTBEAT] = heartbeat_s
    settings = config.protocol.replica_settings(node_id=node_id, n=config.n, f=config.f, builder_id=config.builder_id,
                                                network=config.digest)

    async def resources(app: web.Application):
        auth = authenticator_for(config, load_private_key(config.node_key_path(node_id)), next_keys(config, node_id))
        # Before anything starts: a node asked for statuses of its own does not start without its token.
        status_token_files = node_status_token_files(config, node_id)
        executor = None
        run_build = build
        if run_build is None:
            executor = _make_executor(config, node_id, behaviour.build_environment)
            await asyncio.to_thread(executor.sweep_leftovers)
            run_build = executor.run
        async with (posting_node_statuses(config, node_id, status_token_files) as node_statuses,
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=config.node_ssl())) as session):
            peer_links = PeerLinks(node_id, session, heartbeat_s=heartbeat_s, wrap=behaviour.peer)
            peer_links.follow(_peer_urls(config))
            links = app[LINKS] = peer_links.links
            store = NodeStore(config.data_dir / f"node-{node_id}" / "node.sqlite", n=config.n, f=config.f)
            loaded = store.load()
            # The ledger's changes replay from the document it started from: a file replaced by
            # a document the order made since would not be it.
            document = agreed(config)
            first = app[FIRST_DOCUMENT] = store.first_document(document, changed=bool(loaded and loaded.changes))
            if first != document:
                logger.warning("node=%d the ledger starts from network configuration %s, the file holds %s: the "
                               "ledger's changes replay from the first", node_id, document_digest(first)[:16],
                               config.digest[:16])
            now = asyncio.get_running_loop().time()
            rerun = []
            network, check_network = first, functools.partial(document_problem, folder=config.path.parent)
            if loaded is None:
                replica = Replica(settings, auth, network, check_network)
            else:
                replica = Replica.restore(
                    settings, auth, loaded.state, loaded.messages, loaded.executed, now, learnt=loaded.learnt,
                    cancels=loaded.cancels, deliveries=loaded.deliveries, network=network, check_network=check_network, changes=loaded.changes,
                    chosen=loaded.chosen, rebooted=store.rebooted,
                )
                rerun = replica.builds_to_rerun(loaded.unfinished)
                logger.warning(
                    "node=%d restored: view=%d last_executed=%d low_watermark=%d unfinished_builds=%d rebooted=%s",
                    node_id, replica.view, replica.last_executed, replica.low_watermark, len(rerun), store.rebooted,
                )
            driver = Driver(replica, config, run_build, peer_links.senders, behaviour=behaviour, store=store,
                            cancel=None if executor is None else executor.cancel, slots=executor,
                            on_result=node_statuses.finished)
            if executor is not None:
                executor.on_state = driver.on_build_state
            if crash_at is not None:
                crash_at.install(driver)
            driver.metrics = NodeMetrics(driver.status, lambda: link_statuses(links), lambda: auth.checks)
            app[DRIVER] = driver
            follow_members = functools.partial(_follow_members, peer_links, driver, auth)
            live.on_reload(functools.partial(_run_config, driver, executor, node_statuses, follow_members))
            driver.on_config = live.adopt
            driver.on_members = follow_members
            if replica.network.changed_at:
                # The order changed the document since the file was written: run the one it made.
                driver.network_changed(NetworkChanged(replica.network.changed_at, replica.network.document,
                                                      replica.network.digest))
            for seq, request in rerun:
                driver.start_build(seq, request)
            driver.resume()
            peer_links.start()
            ticker = asyncio.create_task(driver.tick_forever())
            yield
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            driver.close()
            await peer_links.close()
            for task in list(driver.builds):
                task.cancel()
            await asyncio.gather(*driver.builds, return_exceptions=True)
            store.close()
        if executor is not None:
            executor.close()

    app[SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(reload_on_sighup(live))
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
    add_artifact_routes(app, config, node_id)
    return app


def _make_executor(config: NetworkConfig, node_id: int, extra_environment: dict[str, str] | None = None):
    # Imported here so that nodes with a substitute build (tests) never touch Docker.
    from builder.engine.images import load_registry_auth
    from builder.executor import Executor
    from builder.settings import ExecutorSettings

    try:
        registry_auth = load_registry_auth(config.build.registry_auth_path(config.path.parent, node_id))
    except ValueError as exc:
        raise ConfigError(config.path, [f"build.registry_auth_file: {exc}"]) from None

    return Executor(ExecutorSettings(
        data_dir=config.data_dir / f"node-{node_id}",
        log_dir=config.log_dir,
        node_id=node_id,
        limits=config.build,
        max_concurrent=config.build.max_concurrent,
        engine=config.node(node_id).docker,
        # Every node and client of the network: networked builds must reach none of them.
        peer_hosts=tuple(node.host for node in config.nodes) + tuple(client.host for client in config.clients),
        repository_bounds=_repository_bounds(config),
        registry_auth=registry_auth,
        extra_environment=dict(extra_environment or {}),
    ))


def _repository_bounds(config: NetworkConfig) -> dict[str, int]:
    return {repo.name: repo.max_concurrent for repo in config.repositories if repo.max_concurrent}


def _peer_urls(config: NetworkConfig) -> dict[int, str]:
    return {node.id: node.url("/peer") for node in config.nodes}


def _follow_members(peer_links: PeerLinks, driver: Driver, auth) -> None:
    """Links to the nodes the document names, and to the members of the epochs the replica
    works in until the epoch without them begins (`node.peers.PeerLinks`); and the node's next
    key, if its host made one since the start, for the epoch whose members name it."""
    try:
        for key in next_keys(driver.config, driver.replica.id):
            auth.add_spare_key(key)
    except (OSError, ValueError) as error:
        logger.critical("node=%d cannot read its next key: %s", driver.replica.id, error)
    if driver.replica.member:
        driver.replica.sign_as_member()
    epochs = driver.replica.epochs
    pending = epochs.pending.members.ids if epochs.pending is not None else ()
    peer_links.follow(_peer_urls(driver.config), (*epochs.members.ids, *pending))


def _run_config(driver: Driver, executor, node_statuses, follow_members: Callable[[], None],
                config: NetworkConfig) -> None:
    """The node runs `config` from now on: a change through the order made it, or a reload
    (SIGHUP) did. The builds ordered from now on are made from it (the driver makes each
    build's order from its configuration); builds already ordered keep the URL and settings
    they were ordered with, and waiting ones get the new bounds. A reload of a network
    without owners, which the order never changed, may bring another network document: the
    node's checkpoints, STATUS and replies name it from now on (`shared.reload`)."""
    driver.config = config
    # Only a reload of a network the order never changed brings the replica a document: one
    # the order made, the replica runs already (or a later one, when several changes were
    # carried out in one turn or replayed at a restart).
    if not driver.replica.network.changed_at and config.digest != driver.replica.network.digest:
        driver.replica.run_network(agreed(config))
    if executor is not None:
        executor.set_bounds(_repository_bounds(config))
    node_statuses.reconfigure(config)
    follow_members()


def _count_reload(app: web.Application, outcome: str) -> None:
    if DRIVER in app and app[DRIVER].metrics is not None:
        app[DRIVER].metrics.reloads.labels(outcome).inc()


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
    body = request.app[DRIVER].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    # The process id lets ./startNetwork.sh tell the node it started from another process on the port.
    return web.json_response(
        {**request.app[DRIVER].status(), "pid": os.getpid(), "links": link_statuses(request.app[LINKS])}
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
    text = request.match_info["seq"]
    if not text.isdigit() or len(text) > 18:
        return web.json_response({"error": "a sequence number is a non-negative integer"}, status=400)
    driver = request.app[DRIVER]
    driver.write_deferred()  # votes and verdicts taken in since the last save are part of the record
    records = driver.store.build_records(int(text)) if driver.store is not None else []
    if not records:
        return web.json_response({"error": f"nothing executed at sequence number {text}"}, status=404)
    return web.json_response({"seq": int(text), "builds": records})


async def ledger_after(request: web.Request) -> web.Response:
    """`GET /ledger?after=SEQ`: the builds of the sequence numbers this node executed after SEQ,
    up to LEDGER_PAGE of them, as `GET /builds/{seq}` shows each: how every client of the
    network learns the builds another client asked for (client/ledgerimport.py)."""
    text = request.query.get("after", "0")
    if not text.isascii() or not text.isdecimal() or len(text) > 18:
        return web.json_response({"error": "after is a non-negative integer"}, status=400)
    driver = request.app[DRIVER]
    driver.write_deferred()
    after, last = int(text), driver.replica.last_executed
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
    client, text = request.match_info["client"], request.match_info["timestamp"]
    if not text.isascii() or not text.isdecimal() or len(text) > 19 or int(text) > MAX_TIMESTAMP:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "a timestamp is a non-negative 63-bit integer"}), content_type="application/json"
        )
    driver = request.app[DRIVER]
    driver.write_deferred()
    record = driver.store.build_record(client, int(text)) if driver.store is not None else None
    if record is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no executed request {text} of client {client!r}"}),
            content_type="application/json",
        )
    return {**record, "build": driver.build_state((client, int(text)))}


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
        elif not budget.take():
            driver.drops["peer_over_budget"] += 1
        else:
            driver.on_frame(frame.data)
        # Let the other connections take their turn: one peer cannot hog the loop.
        await asyncio.sleep(0)
    return ws


async def client_socket(request: web.Request) -> web.WebSocketResponse:
    ws = await open_socket(request)
    driver = request.app[DRIVER]
    connection = ClientConnection(ws)
    replies = driver.behaviour.client(connection)
    # The challenge is the connection's, not a protocol output: it goes out
    # unchanged even from a node that misbehaves with its replies.
    connection.send(json.dumps(encode(driver.issue_challenge(replies))))
    try:
        async for frame in frames(request, ws):
            if frame.type == aiohttp.WSMsgType.TEXT:
                driver.on_frame(frame.data, replies)
    finally:
        driver.client_gone(replies)
        await connection.close()
    return ws
