"""The driver: feeds the pure replica and carries out the effects it asks for.

Frames from peers and clients are parsed and decoded here; anything malformed
is dropped and counted before it reaches the protocol core. Builds run
concurrently in the executor; their results go back into the replica, which
signs replies.

Steps, saves and sends go through `pbft.interpreter.Interpreter`, the same
code the simulator runs: this module is its edges (sockets, the event loop,
the SQLite store, metrics). The interpreter's doc says how a turn's steps are
saved in one transaction before anything of them leaves the node, which
turns wait unsynced, and why a failed save or a broken invariant stops the
node at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Protocol

import yaml

from builder import BuildOrder, BuildResult
from node.buildsettings import effective, start_line
from node.byzantine import HONEST, Behaviour
from node.clients import ClientLinks, Sender
from node.metrics import NodeMetrics
from node.storage import NodeStore
from shared.config import ConfigError, NetworkConfig
from shared.networkdoc import agreed, with_document
from shared.droplog import DropLogLimiter, suppressed_note
from pbft.ci.ordered import OrderedBuild
from pbft.effects import (Broadcast, BuildLearnt, Effect, Execute, KeepStableProof, NetworkChanged, RecordVerdict,
                          SendTo, StopBuild)
from pbft.interpreter import Interpreter
from pbft.build import Result
from pbft.handshake import Hello
from pbft.messages import CurrentView, Message, MessageError, PrePrepare, Reply, Request, decode, encode, signed
from pbft.networks import MAX_HISTORY
from pbft.reach import Reach
from pbft.replica import Replica
from pbft.durable import DurableState

logger = logging.getLogger(__name__)


def exit_at_once(code: int) -> None:
    """Flush the logs and end the process without unwinding, with `code`."""
    logging.shutdown()
    os._exit(code)


def exit_process() -> None:
    """End the process (fail-stop): see `exit_at_once`."""
    exit_at_once(70)


class Build(Protocol):
    """Runs one build; the executor in production, a fake in tests."""

    def __call__(self, order: BuildOrder) -> Awaitable[BuildResult]: ...


class Slots(Protocol):
    """What the executor says of its build slots (builder/queue.py)."""

    @property
    def queued(self) -> int: ...

    def has_slot(self, build_id: str) -> bool: ...


@dataclass(frozen=True)
class Builds:
    """What runs this node's builds: the executor's run, cancel and build slots, or a
    substitute's run alone (tests, `--instant-builds`)."""

    run: Build
    # Stops a build by its id (Executor.cancel), when the order cancelled it (StopBuild);
    # None: builds here cannot be stopped, and end as they end (their result is replaced).
    cancel: Callable[[str], Awaitable[bool]] | None = None
    slots: Slots | None = None  # which of the builds started wait for a build slot (the executor)


@dataclass(frozen=True)
class DriverParts:
    """The resources the driver carries the replica's effects out through, each made whole
    before the driver (node/contexts.py: one cleanup context each)."""

    peers: Mapping[int, Sender]  # a sender per peer, the very dict PeerLinks keeps following the members
    builds: Builds | None = None  # None: nothing builds here (tests of the driver's other edges)
    clients: ClientLinks | None = None  # None: the driver's own, which nobody else tells news
    store: NodeStore | None = None
    metrics: NodeMetrics | None = None  # GET /metrics; None: nothing counted
    reach: Reach | None = None  # what the peer links see (PeerLinks.reach); None: no hints, timers only


@dataclass(frozen=True)
class Listeners:
    """Whom the driver tells what it learns besides the effects it carries out; None: nobody."""

    # Each result this node signs for a request (node/statuses.py posts it to the forge).
    on_result: Callable[[Request, Result], None] | None = None
    # Each configuration a change through the order makes, with why (the node makes it its
    # own: `shared.reload.LiveConfig.adopt`); None: the driver runs it alone.
    on_config: Callable[[NetworkConfig, str], None] | None = None
    # The epochs the replica works in changed (`pbft.epochs`): the node links to their members.
    on_members: Callable[[], None] | None = None


@dataclass(frozen=True)
class Conduct:
    """How a node started for demos and tests departs from an honest one (`node/index.py`'s
    `--byzantine` and `--crash-at`, refused unless the configuration sets allow_byzantine)."""

    behaviour: Behaviour = HONEST
    # A test's crash point, given the driver as it is made (node/crashpoints.py `CrashAt.install`).
    crash_point: Callable[[Driver], None] | None = None


class Driver:
    def __init__(
        self,
        replica: Replica,
        config: NetworkConfig,
        parts: DriverParts,
        *,
        listeners: Listeners = Listeners(),
        conduct: Conduct = Conduct(),
        fail_stop: Callable[[], None] = exit_process,
    ) -> None:
        self.replica = replica
        self.config = config
        builds = parts.builds
        self.build = None if builds is None else builds.run
        self.cancel = None if builds is None else builds.cancel
        self.slots = None if builds is None else builds.slots
        self.on_result = listeners.on_result
        self.on_config = listeners.on_config
        self.on_members = listeners.on_members
        self._building: set[str] = set()  # build ids whose build task runs
        # The configurations builds were made from, by network digest, besides `config`: the
        # documents of the last few changes with this node's own settings (`config_for`).
        self._configs: dict[str, NetworkConfig] = {}
        self._stopping: set[asyncio.Task] = set()  # Executor.cancel calls under way
        self.peers = parts.peers
        self.reach = parts.reach if parts.reach is not None else Reach()  # never fed: nobody unreachable
        self.behaviour = conduct.behaviour
        self.store = parts.store
        self.fail_stop = fail_stop
        self.clients = parts.clients if parts.clients is not None else ClientLinks(replica.id, replica.auth.sign)
        self.builds: set[asyncio.Task] = set()
        self.interpreter = Interpreter(replica, parts.store, self)
        self.drops: Counter[str] = Counter()
        self._drop_log = DropLogLimiter()
        self.metrics = parts.metrics
        self._epochs_seen = self._epochs_mark()
        self._view = replica.view
        self._view_told: int | None = None  # the confirmed view clients were last told of
        if conduct.crash_point is not None:
            conduct.crash_point(self)

    @property
    def stopped(self) -> bool:
        return self.interpreter.stopped

    @property
    def builds_queued(self) -> int:
        return 0 if self.slots is None else self.slots.queued

    def build_state(self, key: tuple[str, int]) -> str | None:
        """`queued` or `running` while this node's build of request `key` has no result, else None."""
        build_id = _build_id(*key)
        if build_id not in self._building:
            return None
        # Running once it holds a slot: a build the executor has not taken up yet (its task
        # not scheduled, on a busy node) waits as one in the queue does.
        return "running" if self.slots is None or self.slots.has_slot(build_id) else "queued"

    @property
    def builds_running(self) -> int:
        return len(self.builds) - self.builds_queued

    def status(self) -> dict:
        replica = self.replica
        return {
            "id": replica.id,
            "view": replica.view,
            # The members whose votes count now, and f (`pbft.epochs`): the epoch is the sequence
            # number of the change that made them (0: the network's first).
            "epoch": replica.epoch,
            "members": list(replica.members.ids),
            "f": replica.f,
            # False after a restart until f+1 peers show this view is the network's (or a
            # NEW-VIEW is entered): until then the view shown may be one the others left.
            "view_confirmed": replica.view_confirmed,
            "primary": replica.primary(),
            "last_executed": replica.last_executed,
            # The hash chain over every batch executed: nodes with the same ledger show the same.
            "state_digest": replica.state_digest,
            "low_watermark": replica.low_watermark,
            "high_watermark": replica.high_watermark,
            "builds_running": self.builds_running,
            "builds_queued": self.builds_queued,
            # Peers whose link was up once and has been down a while: a primary among them is
            # suspected at once (`pbft.reach`).
            "unreachable": sorted(self.reach.unreachable(time.monotonic())),
            "dropped": dict(self.drops),
            # The network document this node runs, and the peers that signed that they run another.
            "network": {"digest": replica.network.digest,
                        "foreign": {str(node): digest for node, digest in replica.networks.foreign().items()}},
            # What a build ordered now is made with, as its start line in the log says: a node
            # whose settings differ from its peers' is seen here.
            "build": effective(self.config_for(*(replica.network.document_at(replica.last_executed) or ("", None)))),
        }

    # --- input --------------------------------------------------------

    def on_frame(self, frame: str | bytes, connection: Sender | None = None) -> None:
        """Handle one frame from a peer or, with `connection`, from a client."""
        try:
            message = decode(json.loads(frame))
        except (ValueError, MessageError, RecursionError) as error:
            self._drop("malformed_frame", str(error)[:200])
            return
        if not self.behaviour.admits(message):  # a Byzantine node keeps it from its replica (it logs that)
            self.drops[f"byzantine_{self.behaviour.name}_{message.TYPE}"] += 1
            return
        if connection is not None:
            if isinstance(message, Hello):
                self._register_client(message, connection)
                return
            if not isinstance(message, Request):
                self._drop("client_sent_non_request", message.TYPE)
                return
        now_s = asyncio.get_running_loop().time()
        if self.metrics is not None:
            if isinstance(message, Request):
                self.metrics.requests_received.inc()
                self.metrics.seen((message.key,), now_s)
            elif isinstance(message, PrePrepare):
                self.metrics.seen((request.key for request in message.batch), now_s)
        reason = self.interpreter.step(self.replica.receive, message, now_s)
        if reason is not None:
            self.drops[reason] += 1
            if reason == "ignore_request_no_reply_yet" and connection is not None:
                # A client asks again for a build this node still builds (a retransmission, or a
                # client restarted meanwhile): tell it where the build is, so that it waits on.
                state = self.build_state(message.key)
                if state is not None:
                    self.clients.build_state(_build_id(*message.key), state)

    def _register_client(self, hello: Hello, connection: Sender) -> None:
        """Route a client's replies over the connection it opened and proved it owns.

        Replies never go to an address taken from a message, and nobody but
        the key holder can subscribe to a client's replies: a HELLO must sign
        the challenge issued on this connection, so one captured on another
        connection, or said before, subscribes nobody. Each connection gets
        one attempt.
        """
        issued = self.clients.take_challenge(connection)
        if hello.node != self.replica.id:
            self._drop("hello_for_another_node", str(hello.node))
        elif issued is None:
            self._drop("hello_challenge_used", hello.client)
        elif hello.challenge != issued:
            self._drop("hello_wrong_challenge", hello.client)
        elif not self.replica.auth.verify_client(hello.client, hello.payload(), hello.sig):
            self._drop("hello_bad_signature", hello.client)
        else:
            self.clients.add(hello.client, connection)
            if self.replica.view_confirmed:
                connection.send(self._current_view(hello.client))

    def _current_view(self, client: str) -> str:
        news = signed(CurrentView(self.replica.view, client, self.replica.id, network=self.replica.network.digest),
                      self.replica.auth.sign)
        return json.dumps(encode(news))

    def tell_view(self) -> None:
        """Tell every client connected here the view, once it is confirmed and new to them."""
        replica = self.replica
        if not replica.view_confirmed or replica.view == self._view_told:
            return
        self._view_told = replica.view
        for client, connections in self.clients.connections.items():
            if connections:
                frame = self._current_view(client)
                for connection in list(connections):
                    connection.send(frame)

    def resume(self) -> None:
        """Carry out what the replica produced before the driver existed (a restore)."""
        self.interpreter.take()

    async def tick_forever(self, interval_s: float = 0.1) -> None:
        """Give the replica the time, so its view-change timers can fire, and write what
        turns that only took messages in left waiting, so verdicts reach the disk within
        a tick even on an idle node."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            now_s = loop.time()
            self.interpreter.step(self.replica.tick, now_s, self.reach.unreachable(now_s))
            self.interpreter.write_deferred()
            self.tell_view()
            self._follow_epochs()

    def _epochs_mark(self) -> tuple[int, int | None]:
        epochs = self.replica.epochs
        return epochs.current.start, None if epochs.pending is None else epochs.pending.start

    def _follow_epochs(self) -> None:
        mark = self._epochs_mark()
        if mark != self._epochs_seen:
            self._epochs_seen = mark
            if self.on_members is not None:
                self.on_members()

    def write_deferred(self) -> None:
        """Write what waited for a save: a read of the ledger shows what the node took in."""
        self.interpreter.write_deferred()

    def _drop(self, reason: str, detail: str) -> None:
        """Count every drop; log a reason at most once per interval, however fast junk arrives."""
        self.drops[reason] += 1
        suppressed = self._drop_log.admit(reason)
        if suppressed is not None:
            logger.warning(
                "node=%d dropped frame: %s (%s)%s", self.replica.id, reason, detail, suppressed_note(suppressed)
            )

    # --- the interpreter's edges (`pbft.interpreter.Edges`) ----------------

    def send(self, node: int, message: Message) -> None:
        peer = self.peers.get(node)
        if peer is not None:
            peer.send(json.dumps(encode(message)))

    def broadcast(self, message: Message) -> None:
        frame = json.dumps(encode(message))
        for peer in self.peers.values():
            peer.send(frame)

    def send_reply(self, reply: Reply) -> None:
        self.clients.send(reply.client, json.dumps(encode(reply)))

    def execute(self, effect: Execute) -> None:
        for build in effect.ordered():
            self.start_build(build)

    def build_learnt(self, effect: BuildLearnt) -> None:
        self.start_build(effect.order)

    def network_changed(self, effect: NetworkChanged) -> None:
        """The order replaced the network document at `effect.seq`: the builds ordered after it
        are made from the new one, with this node's own settings (shared/networkdoc.py)."""
        try:
            config = with_document(self.config, effect.document, read_secrets=False)
        except (ConfigError, OSError, yaml.YAMLError) as error:
            # The document passed every node's check; what failed is this host's file.
            logger.critical("node=%d seq=%d cannot run network configuration %s with its own settings (%s): "
                            "its builds keep the settings they had", self.replica.id, effect.seq,
                            effect.digest[:16], " ".join(str(error).split())[:500])
            return
        if self.on_config is None:
            self.config = config
        else:
            self.on_config(config, f"the change executed at sequence number {effect.seq}")

    def run_config(self, config: NetworkConfig) -> None:
        """Run `config` from now on, which a change through the order made (`network_changed`,
        through `on_config`) or a reload (SIGHUP) brought: the builds ordered from now on are made
        from it, those ordered before keep their settings. A reload of a network the order never
        changed may bring the replica another document (`shared.reload`); one the order made, the
        replica runs already (or a later one: several changes carried out in one turn, or replayed)."""
        self.config = config
        if not self.replica.network.changed_at and config.digest != self.replica.network.digest:
            self.replica.run_network(agreed(config))

    def stop_build(self, effect: StopBuild) -> None:
        build_id = _build_id(effect.client, effect.timestamp)
        logger.info("node=%d seq=%d cancels build=%s: %s", self.replica.id, effect.seq, build_id,
                    "stopping it" if build_id in self._building else "not running here")
        if self.cancel is not None:
            task = asyncio.create_task(self.cancel(build_id))
            self._stopping.add(task)  # held until done; not a build, so not in `builds`
            task.add_done_callback(self._stopping.discard)

    def schedule(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        started_s = time.perf_counter()
        self.store.save(state, effects, sync=sync)
        if self.metrics is not None:
            self.metrics.save_seconds_by_sync[sync].observe(time.perf_counter() - started_s)

    def saving(self, effects: list[Effect]) -> None:
        if self.metrics is not None:
            self._count(effects)

    def stop(self) -> None:
        self.fail_stop()

    def _count(self, effects: list[Effect]) -> None:
        metrics = self.metrics
        now_s = asyncio.get_running_loop().time()
        if self.replica.view > self._view:
            metrics.view_changes.inc(self.replica.view - self._view)
            self._view = self.replica.view
        for effect in effects:
            if isinstance(effect, Execute):
                metrics.requests_ordered.inc(len(effect.batch))
                if effect.learnt:
                    metrics.state_transfers.inc()
                metrics.executed((request.key for request in effect.batch), now_s)
            elif isinstance(effect, (Broadcast, SendTo)):
                metrics.sent[effect.message.TYPE] += len(self.peers) if isinstance(effect, Broadcast) else 1
            elif isinstance(effect, KeepStableProof):
                metrics.checkpoints.inc()
            elif isinstance(effect, RecordVerdict):
                metrics.verdicts.labels(effect.state).inc()

    def close(self) -> None:
        """Save and send what is still unsaved, then take no more steps (the node is shutting down)."""
        self.interpreter.close()

    def config_for(self, digest: str, document: Mapping | None) -> NetworkConfig | str:
        """The configuration a build is made from: the network document the order had in force
        at its sequence number, which travels with it (`OrderedBuild.network` and `.document`),
        with this node's own settings; or why this node has none. Never the configuration the
        node runs by the time the build starts, which a change carried out in the same turn, or
        replayed before a restart's reruns, may have replaced."""
        if not digest:
            return (f"the network configuration it was ordered under is no longer kept here ({MAX_HISTORY} or more "
                    "changes of it since)")
        if digest == self.config.digest or document is None:
            return self.config
        if digest not in self._configs:
            try:
                config = with_document(self.config, document, read_secrets=False)
            except (ConfigError, OSError, yaml.YAMLError) as error:
                return (f"this node cannot run network configuration {digest[:16]} with its own settings: "
                        + " ".join(str(error).split())[:300])
            self._configs[digest] = config
            while len(self._configs) > MAX_HISTORY:
                self._configs.pop(next(iter(self._configs)))
        return self._configs[digest]

    def start_build(self, build: OrderedBuild) -> None:
        seq, request = build.seq, build.request
        task = asyncio.create_task(self._run_build(seq, request, self.config_for(build.network, build.document)))
        self.builds.add(task)
        build_id = _build_id(request.client, request.timestamp)
        self._building.add(build_id)
        task.add_done_callback(lambda done: (self.builds.discard(done), self._building.discard(build_id)))

    async def _run_build(self, seq: int, request: Request, config: NetworkConfig | str) -> None:
        operation = request.operation
        build_id = _build_id(request.client, request.timestamp)
        if isinstance(config, str):
            logger.critical("node=%d seq=%d build=%s cannot start: %s", self.replica.id, seq, build_id, config)
            result = BuildResult("error", None, None, config)
        elif (repository := config.repository(operation.repository)) is None:
            # The same reason on every node that lacks it: a repository added to the file is
            # built once every node has re-read it (SIGHUP, shared.reload).
            result = BuildResult("error", None, None, f"unknown repository: {operation.repository} (not in this "
                                                 "node's configuration; a repository just added to the file needs "
                                                 "a reload of every node: SIGHUP, ./scripts/reload.sh)")
        else:
            logger.info("node=%d seq=%d build=%s start repository=%s branch=%s %s", self.replica.id, seq, build_id,
                        repository.name, operation.branch, start_line(config))
            started_s = asyncio.get_running_loop().time()
            result = await self.build(BuildOrder.of(build_id, operation, repository, config.build, config.peer_hosts, seq))
            if self.metrics is not None:
                self.metrics.build_seconds.observe(asyncio.get_running_loop().time() - started_s)
        result = self.behaviour.tamper(result)
        logger.info("node=%d seq=%d build=%s end status=%s exit_code=%s commit=%s", self.replica.id, seq, build_id,
                    result.status, result.exit_code, (result.commit or "")[:12])
        if self.metrics is not None:
            self.metrics.builds.labels(result.status).inc()
        # The per-file digests the provenance names stay on this node. A tampered result keeps
        # the files, but no longer their manifest, and the replica then signs no provenance.
        self.interpreter.step(self.replica.execution_finished, request, result, seq, result.artifact_digests())
        if self.on_result is not None:
            self.on_result(request, result)


def _build_id(client: str, timestamp: int) -> str:
    """The executor's name of client `client`'s request `timestamp`: its log, its workspace."""
    return f"{client}-{timestamp}"
