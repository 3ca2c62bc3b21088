"""A node's resources, each in a cleanup context of its own (started in order, stopped in
reverse), as the client's are (client/contexts.py); the app factory is node/server.py's
`make_app`, which makes before them what they share: the node's keys, its client links, its
metrics and the live configuration.

1. statuses: the node's own commit statuses (node/statuses.py); a node asked for them does not
   start without its token, and nothing else has started then.
2. builds: the Docker executor (or a substitute: tests, `--instant-builds`); it sweeps what a
   killed earlier process left, tells each build's client when the build waits for a build
   slot and when it takes one, and kills the builds still running once the driver, the store
   and the links have closed.
3. peers: one outbound WebSocket per peer (node/peers.py), made for the nodes of the file;
   the driver's context starts them.
4. store: the node's SQLite ledger (node/storage.py).
5. driver: the replica, restored from the store, and the driver made whole around it
   (node/driver.py `DriverParts`, `Listeners`, `Conduct`); it carries out what the restore
   produced, starts the peer links and ticks. Stopping, it saves and sends what is unsaved
   and ends the builds under way, before the store closes.

Each context that follows a reload (SIGHUP) or a change through the order listens to the
live configuration itself: the statuses their repositories, the executor its bounds, the
driver its configuration and then the members it links to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from node.driver import Build, Builds, Conduct, Driver, DriverParts, Listeners
from node.keys import BUILDS, CLIENTS, DRIVER, FIRST_DOCUMENT, LIVE, METRICS, PEERS, STATUSES, STORE
from node.peers import PeerLink, PeerLinks
from node.statuses import node_status_token_files, posting_node_statuses
from node.storage import NodeStore
from pbft.ci.ordered import OrderedBuild
from pbft.effects import NetworkChanged
from pbft.messages import Request
from pbft.networkchange import document_digest
from pbft.replica import Replica
from shared.cli import next_keys
from shared.config import ConfigError, NetworkConfig
from shared.crypto import Ed25519Authenticator
from shared.networkdoc import agreed, document_problem
from shared.reload import LiveConfig

# The node's start lines keep the name they were always logged under.
logger = logging.getLogger("node.server")

# The environment variable that makes a node check its replica's invariants after every step.
CHECK_INVARIANTS = "PBFT_CI_CHECK_INVARIANTS"

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def statuses_ctx(config: NetworkConfig, node_id: int) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Before anything starts: a node asked for statuses of its own does not start without its token.
        token_files = node_status_token_files(config, node_id)
        async with posting_node_statuses(config, node_id, token_files) as statuses:
            app[STATUSES] = statuses
            app[LIVE].on_reload(statuses.reconfigure)
            yield

    return ctx


def builds_ctx(config: NetworkConfig, node_id: int, build: Build | None,
               extra_environment: dict[str, str]) -> CleanupContext:
    """`build` replaces the Docker executor (tests, `--instant-builds`): then nothing here can
    stop a build or say it waits for a slot."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if build is not None:
            app[BUILDS] = Builds(build)
            yield
            return
        executor = node_executor(config, node_id, extra_environment, on_state=app[CLIENTS].build_state)
        await asyncio.to_thread(executor.sweep_leftovers)
        app[LIVE].on_reload(lambda new: executor.set_bounds(_repository_bounds(new)))
        app[BUILDS] = Builds(executor.run, executor.cancel, executor)
        yield
        executor.close()

    return ctx


def peers_ctx(config: NetworkConfig, node_id: int, heartbeat_s: float,
              wrap: Callable[[int, PeerLink], object]) -> CleanupContext:
    """The links, made and not yet started: the driver's context starts them once it has
    carried out what the restore produced."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=config.node_ssl())) as session:
            peers = PeerLinks(node_id, session, heartbeat_s=heartbeat_s, wrap=wrap)
            peers.follow(_peer_urls(config))
            app[PEERS] = peers
            yield
            await peers.close()

    return ctx


def store_ctx(config: NetworkConfig, node_id: int) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE] = NodeStore(config.data_dir / f"node-{node_id}" / "node.sqlite", n=config.n, f=config.f)
        yield
        store.close()

    return ctx


def driver_ctx(config: NetworkConfig, node_id: int, auth: Ed25519Authenticator, conduct: Conduct) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        live, peers = app[LIVE], app[PEERS]
        replica, rerun = _restored_replica(app, config, node_id, auth)
        follow_members = functools.partial(_follow_members, peers, replica, auth, live)
        driver = app[DRIVER] = Driver(
            replica, config, DriverParts(peers.senders, app[BUILDS], app[CLIENTS], app[STORE], app[METRICS],
                                     peers.reach),
            listeners=Listeners(on_result=app[STATUSES].finished, on_config=live.adopt, on_members=follow_members),
            conduct=conduct,
        )
        live.on_reload(driver.run_config)
        live.on_reload(lambda new: follow_members())  # after the driver's: the replica may run another document
        if replica.network.changed_at:
            # The order changed the document since the file was written: run the one it made.
            driver.network_changed(NetworkChanged(replica.network.changed_at, replica.network.document,
                                                  replica.network.digest))
        for build in rerun:
            driver.start_build(build)
        driver.resume()
        peers.start()
        ticker = asyncio.create_task(driver.tick_forever())
        yield
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        driver.close()
        for task in list(driver.builds):
            task.cancel()
        await asyncio.gather(*driver.builds, return_exceptions=True)

    return ctx


def _restored_replica(app: web.Application, config: NetworkConfig, node_id: int,
                      auth: Ed25519Authenticator) -> tuple[Replica, list[OrderedBuild]]:
    """The replica as the store left it (a new one on a new store), and the builds it had
    under way, to run again; the document its ledger starts from goes to FIRST_DOCUMENT."""
    store = app[STORE]
    settings = config.protocol.replica_settings(node_id=node_id, n=config.n, f=config.f, builder_id=config.builder_id,
                                                network=config.digest)
    # The replica's invariants after every step cost CPU a node needs for requests; the test
    # suite's nodes check them (tests/conftest.py), and so does a node whose operator asks.
    settings = dataclasses.replace(settings, check_invariants=os.environ.get(CHECK_INVARIANTS) == "1")
    loaded = store.load()
    # The ledger's changes replay from the document it started from: a file replaced by
    # a document the order made since would not be it.
    document = agreed(config)
    first = app[FIRST_DOCUMENT] = store.first_document(document, changed=bool(loaded and loaded.changes))
    if first != document:
        logger.warning("node=%d the ledger starts from network configuration %s, the file holds %s: the "
                       "ledger's changes replay from the first", node_id, document_digest(first)[:16],
                       config.digest[:16])
    check_network = functools.partial(document_problem, folder=config.path.parent)
    if loaded is None:
        return Replica(settings, auth, first, check_network), []
    replica = Replica(settings, auth, first, check_network).restore(
        loaded, asyncio.get_running_loop().time(), rebooted=store.rebooted
    )
    rerun = replica.builds_to_rerun(loaded.unfinished)
    logger.warning(
        "node=%d restored: view=%d last_executed=%d low_watermark=%d unfinished_builds=%d rebooted=%s",
        node_id, replica.view, replica.last_executed, replica.low_watermark, len(rerun), store.rebooted,
    )
    return replica, rerun


def node_executor(config: NetworkConfig, node_id: int, extra_environment: dict[str, str] | None = None,
                   on_state: Callable[[str, str, str | None], None] | None = None):
    """Node `node_id`'s executor, made from its configuration; `on_state` is told (build id,
    "queued" or "running", the older build of its concurrency group it supersedes or None) as a
    build waits for a slot, as it takes one and as it waits for its group."""
    # Imported here so that nodes with a substitute build (tests) never touch Docker.
    from builder.engine.images import load_registry_auth
    from builder.executor import Executor
    from builder.settings import ExecutorSettings

    try:
        registry_auth = load_registry_auth(config.build.registry_auth_path(config.path.parent, node_id))
    except ValueError as exc:
        raise ConfigError(config.path, [f"build.registry_auth_file: {exc}"]) from None

    executor = Executor(ExecutorSettings(
        data_dir=config.data_dir / f"node-{node_id}",
        log_dir=config.log_dir,
        node_id=node_id,
        limits=config.build,
        max_concurrent=config.build.max_concurrent,
        engine=config.node(node_id).docker,
        # Every node and client of the network: networked builds must reach none of them.
        peer_hosts=config.peer_hosts,
        repository_bounds=_repository_bounds(config),
        registry_auth=registry_auth,
        extra_environment=dict(extra_environment or {}),
    ))
    executor.on_state = on_state  # the executor takes its listener as an attribute (builder/executor.py)
    return executor


def _repository_bounds(config: NetworkConfig) -> dict[str, int]:
    return {repo.name: repo.max_concurrent for repo in config.repositories if repo.max_concurrent}


def _peer_urls(config: NetworkConfig) -> dict[int, str]:
    return {node.id: node.url("/peer") for node in config.nodes}


def _follow_members(peers: PeerLinks, replica: Replica, auth: Ed25519Authenticator, live: LiveConfig) -> None:
    """Links to the nodes the document names, and to the members of the epochs the replica
    works in until the epoch without them begins (`node.peers.PeerLinks`); and the node's next
    key, if its host made one since the start, for the epoch whose members name it."""
    config = live.current
    try:
        for key in next_keys(config, replica.id):
            auth.add_spare_key(key)
    except (OSError, ValueError) as error:
        logger.critical("node=%d cannot read its next key: %s", replica.id, error)
    if replica.member:
        replica.sign_as_member()
    epochs = replica.epochs
    pending = epochs.pending.members.ids if epochs.pending is not None else ()
    peers.follow(_peer_urls(config), (*epochs.members.ids, *pending))
