"""The driver: feeds the pure replica and carries out the effects it asks for.

Frames from peers and clients are parsed and decoded here; anything malformed
is dropped and counted before it reaches the protocol core. Effects are
carried out in the order the replica produced them, after they are saved.
Builds run concurrently in the executor; their results go back into the
replica, which signs replies.

Saving is a group commit: every step taken in one turn of the event loop
(a frame from each peer whose data arrived together, a run of client
requests, a tick) is saved in one transaction, flushed once, and only then
is anything of those steps sent. The fsync, which costs more than the steps
themselves, is paid per turn instead of per message, and nothing leaves the
node before its disk backs it, but relays of other nodes' votes, which commit
it to nothing (`pbft.effects.leaves_unsaved`).

A turn that only took messages in (`pbft.effects.must_sync` says it need not
be synced) is not written at once: its effects wait, in memory, for the next
turn that must be synced, which writes them first, in the same transaction.
A kill then loses them as a power cut loses unsynced steps, which the
protocol survives (other nodes' votes lost on the way). At n = 16 the primary
takes in some 45 votes per request, each in a turn of its own: they cost one
transaction instead of 45. The tick writes what waited longer, so that the
ledger's verdicts reach the disk within a tick even on an idle node, and
reads of the ledger write it first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import sqlite3
import time
from collections import Counter
from typing import Awaitable, Callable, Protocol

from node.byzantine import HONEST, Behaviour
from node.metrics import NodeMetrics
from node.storage import NodeStore
from pbft.config import NetworkConfig
from pbft.droplog import DropLogLimiter, suppressed_note
from pbft.effects import (
    Broadcast, Effect, Execute, KeepStableProof, RecordVerdict, ResendReply, SendReply, SendTo, ServeFetch, ServeVotes,
    leaves_unsaved, must_sync,
)
from pbft.ledger import MemoryLedger
from pbft.messages import (
    CHALLENGE_BYTES, Challenge, Hello, MessageError, PrePrepare, Reply, Request, Result, decode, encode,
)
from pbft.replica import Replica

logger = logging.getLogger(__name__)

# Effects of inward-only turns held for the next save at most; a node flooded with votes
# and sending nothing writes them this many at a time instead of holding them all.
MAX_DEFERRED_EFFECTS = 1000


def exit_process() -> None:
    """Flush the logs and end the process without unwinding (fail-stop)."""
    logging.shutdown()
    os._exit(70)


class Build(Protocol):
    """Runs one build; the executor in production, a fake in tests."""

    def __call__(self, *, build_id: str, repository_name: str, repository_url: str,
                 branch: str, commit: str | None) -> Awaitable[Result]: ...


class Sender(Protocol):
    def send(self, frame: str) -> None: ...


class Driver:
    def __init__(
        self,
        replica: Replica,
        config: NetworkConfig,
        build: Build,
        peers: dict[int, Sender],
        *,
        behaviour: Behaviour = HONEST,
        store: NodeStore | None = None,
        fail_stop: Callable[[], None] = exit_process,
    ) -> None:
        self.replica = replica
        self.config = config
        self.build = build
        self.peers = peers
        self.behaviour = behaviour
        self.store = store
        self.fail_stop = fail_stop
        self.stopped = False
        self.clients: dict[str, set[Sender]] = {}
        # The challenge issued on each client connection that has not said HELLO yet.
        self._challenges: dict[Sender, str] = {}
        self.builds: set[asyncio.Task] = set()
        # Effects of the steps taken since the last save, and whether a save is scheduled.
        self._unsaved: list[Effect] = []
        # Effects of turns that only took messages in, carried by the next save (see the module doc).
        self._deferred: list[Effect] = []
        self._save_scheduled = False
        self.drops: Counter[str] = Counter()
        self._drop_log = DropLogLimiter()
        self.metrics: NodeMetrics | None = None  # set by the server: GET /metrics
        self._view = replica.view

    @property
    def builds_running(self) -> int:
        return len(self.builds)

    def status(self) -> dict:
        replica = self.replica
        return {
            "id": replica.id,
            "view": replica.view,
            "primary": replica.primary(),
            "last_executed": replica.last_executed,
            "low_watermark": replica.low_watermark,
            "high_watermark": replica.high_watermark,
            "builds_running": self.builds_running,
            "dropped": dict(self.drops),
        }

    # --- input --------------------------------------------------------

    def on_frame(self, frame: str | bytes, connection: Sender | None = None) -> None:
        """Handle one frame from a peer or, with `connection`, from a client."""
        try:
            message = decode(json.loads(frame))
        except (ValueError, MessageError, RecursionError) as error:
            self._drop("malformed_frame", str(error)[:200])
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
        reason = self._step(self.replica.receive, message, now_s)
        if reason is not None:
            self.drops[reason] += 1
        self._carry_out(self.replica.take_effects())

    def issue_challenge(self, connection: Sender) -> Challenge:
        """A fresh challenge for a new client connection: the one HELLO it may carry must sign it."""
        challenge = Challenge(secrets.token_hex(CHALLENGE_BYTES))
        self._challenges[connection] = challenge.challenge
        return challenge

    def _register_client(self, hello: Hello, connection: Sender) -> None:
        """Route a client's replies over the connection it opened and proved it owns.

        Replies never go to an address taken from a message, and nobody but
        the key holder can subscribe to a client's replies: a HELLO must sign
        the challenge issued on this connection, so one captured on another
        connection, or said before, subscribes nobody. Each connection gets
        one attempt.
        """
        issued = self._challenges.pop(connection, None)
        if hello.node != self.replica.id:
            self._drop("hello_for_another_node", str(hello.node))
        elif issued is None:
            self._drop("hello_challenge_used", hello.client)
        elif hello.challenge != issued:
            self._drop("hello_wrong_challenge", hello.client)
        elif not self.replica.auth.verify_client(hello.client, hello.payload(), hello.sig):
            self._drop("hello_bad_signature", hello.client)
        else:
            self.clients.setdefault(hello.client, set()).add(connection)

    def resume(self) -> None:
        """Carry out what the replica produced before the driver existed (a restore)."""
        self._carry_out(self.replica.take_effects())

    async def tick_forever(self, interval_s: float = 0.1) -> None:
        """Give the replica the time, so its view-change timers can fire."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            self._step(self.replica.tick, loop.time())
            self._carry_out(self.replica.take_effects())
            self.write_deferred()

    def client_gone(self, connection: Sender) -> None:
        self._challenges.pop(connection, None)
        for connections in self.clients.values():
            connections.discard(connection)

    def _drop(self, reason: str, detail: str) -> None:
        """Count every drop; log a reason at most once per interval, however fast junk arrives."""
        self.drops[reason] += 1
        suppressed = self._drop_log.admit(reason)
        if suppressed is not None:
            logger.warning(
                "node=%d dropped frame: %s (%s)%s", self.replica.id, reason, detail, suppressed_note(suppressed)
            )

    def _step(self, step: Callable, *args: object) -> str | None:
        """Run one replica step. A tripped invariant is our own bug and the replica's memory
        can no longer be trusted: stop at once, before any effect of that step is saved or
        sent, so the node is either whole or down (a crash fault), never half-alive. A
        restart rebuilds it from what was saved before the step."""
        if self.stopped:
            return None
        try:
            return step(*args)
        except AssertionError:
            self._stop("node=%d replica invariant broken: stopping", self.replica.id, exc_info=True)
            return None

    def _stop(self, message: str, *args: object, exc_info: bool = False) -> None:
        """Log why, then stop at once (fail-stop): take no more steps and drop every effect not
        yet saved, so nothing that rested on them leaves the node. A restart rebuilds the node
        from what it saved, as after a crash."""
        logger.critical(message, *args, exc_info=exc_info)
        self.stopped = True
        self.replica.take_effects()
        self._unsaved, self._deferred = [], []
        self.fail_stop()

    # --- effects ------------------------------------------------------

    def _carry_out(self, effects: list[Effect]) -> None:
        """Carry out a step's effects at the end of this turn of the event loop (see the module doc)."""
        if not effects or self.stopped:
            return
        self._unsaved.extend(effects)
        if not self._save_scheduled:
            self._save_scheduled = True
            asyncio.get_running_loop().call_soon(self.save_and_send)

    def save_and_send(self) -> None:
        """Save the effects of every step since the last save in one transaction, then carry them out."""
        self._save_scheduled = False
        effects, self._unsaved = self._unsaved, []
        if not effects or self.stopped:
            # Stopped (a broken invariant, a store that cannot write): the state in memory is not
            # to be trusted, and nothing of these steps has left the node, as if it had crashed before them.
            return
        if self.metrics is not None:
            self._count(effects)
        # Persist before send: nothing leaves this node that its disk does not back, but
        # other nodes' votes passed on, which commit it to nothing. Turns that only took
        # messages in skip the fsync; the next turn that sends carries them.
        early = [leaves_unsaved(effect, effects, self.replica.id) for effect in effects]
        for effect in itertools.compress(effects, early):
            self._carry_out_one(effect)
        if self.store is not None:
            if must_sync(effects, self.replica.id):
                self._save(effects, sync=True)
            else:
                # Only taken in: nothing of it leaves the node or starts a build, so it can wait.
                self._deferred += effects
                if len(self._deferred) >= MAX_DEFERRED_EFFECTS:
                    self.write_deferred()
            if self.stopped:
                return  # the save failed: nothing that rests on it may leave the node
        for effect, sent in zip(effects, early):
            if not sent:
                self._carry_out_one(effect)

    def write_deferred(self) -> None:
        """Write, unsynced, what turns that only took messages in left waiting."""
        if self._deferred and not self.stopped and self.store is not None:
            self._save([], sync=False)

    def _save(self, effects: list[Effect], *, sync: bool) -> None:
        """Save `effects`, after whatever waited for a save, in one transaction.

        A save that fails (a full disk, an I/O error) stops the node: going on, it would
        act on steps its disk does not hold, and a restart would not know them (a batch
        it executed and certified would be missing from its ledger for good). Stopped,
        it restarts from what it saved and fetches the rest from its peers.
        """
        effects, self._deferred = self._deferred + effects, []
        started_s = time.perf_counter()
        try:
            self.store.save(self.replica.durable_state(), effects, sync=sync)
        except Exception as error:
            # A full disk needs one clear line; anything but a database or I/O error is a bug of ours.
            self._stop(
                "node=%d store cannot write (%s: %s): stopping; free space in %s and restart the node",
                self.replica.id, type(error).__name__, error, self.store.path.parent,
                exc_info=not isinstance(error, (sqlite3.Error, OSError)),
            )
            return
        if self.metrics is not None:
            self.metrics.save_seconds_by_sync[sync].observe(time.perf_counter() - started_s)

    def _carry_out_one(self, effect: Effect) -> None:
        if isinstance(effect, Broadcast):
            frame = json.dumps(encode(effect.message))
            for peer in self.peers.values():
                peer.send(frame)
        elif isinstance(effect, SendTo):
            peer = self.peers.get(effect.node)
            if peer is not None:
                peer.send(json.dumps(encode(effect.message)))
        elif isinstance(effect, SendReply):
            self._send_reply(effect.reply)
        elif isinstance(effect, ResendReply):
            reply = self.store.reply(effect.client, effect.timestamp) if self.store is not None else None
            if reply is not None:
                self._send_reply(reply)
        elif isinstance(effect, ServeVotes):
            peer = self.peers.get(effect.node)
            if peer is not None and self.store is not None:
                for vote in self.store.votes(effect.keys):
                    if vote.sender != effect.node:
                        peer.send(json.dumps(encode(vote)))
        elif isinstance(effect, Execute):
            for request in effect.requests:
                self.start_build(effect.seq, request)
        elif isinstance(effect, ServeFetch):
            self._step(self.replica.answer_fetch, effect.fetch, self.store if self.store is not None else MemoryLedger())
            self._carry_out(self.replica.take_effects())

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
            elif isinstance(effect, KeepStableProof):
                metrics.checkpoints.inc()
            elif isinstance(effect, RecordVerdict):
                metrics.verdicts.labels(effect.state).inc()

    def _send_reply(self, reply: Reply) -> None:
        frame = json.dumps(encode(reply))
        for connection in list(self.clients.get(reply.client, ())):
            connection.send(frame)

    def close(self) -> None:
        """Save and send what is still unsaved, then take no more steps (the node is shutting down)."""
        self.save_and_send()
        self.write_deferred()
        self.stopped = True

    def start_build(self, seq: int, request: Request) -> None:
        task = asyncio.create_task(self._run_build(seq, request))
        self.builds.add(task)
        task.add_done_callback(self.builds.discard)

    async def _run_build(self, seq: int, request: Request) -> None:
        operation = request.operation
        repository = self.config.repository(operation.repository)
        build_id = f"{request.client}-{request.timestamp}"
        if repository is None:
            result = Result("error", None, None, f"unknown repository: {operation.repository}")
        else:
            logger.info(
                "node=%d seq=%d build=%s start repository=%s branch=%s",
                self.replica.id, seq, build_id, repository.name, operation.branch,
            )
            started_s = asyncio.get_running_loop().time()
            result = await self.build(
                build_id=build_id,
                repository_name=repository.name,
                repository_url=repository.url,
                branch=operation.branch,
                commit=operation.commit,
            )
            if self.metrics is not None:
                self.metrics.build_seconds.observe(asyncio.get_running_loop().time() - started_s)
        result = self.behaviour.tamper(result)
        logger.info(
            "node=%d seq=%d build=%s end status=%s exit_code=%s commit=%s",
            self.replica.id, seq, build_id, result.status, result.exit_code, (result.commit or "")[:12],
        )
        if self.metrics is not None:
            self.metrics.builds.labels(result.status).inc()
        # The executor's BuildResult keeps the per-file digests the provenance names; a
        # fake build's plain Result has none. A tampered result keeps the files, but no
        # longer their manifest, and the replica then signs no provenance.
        artifact_digests = getattr(result, "artifact_digests", None)
        artifact_files = artifact_digests() if artifact_digests is not None else {}
        self._step(self.replica.execution_finished, request, result, seq, artifact_files)
        self._carry_out(self.replica.take_effects())
