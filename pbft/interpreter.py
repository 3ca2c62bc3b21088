"""Carrying out a replica's effects: the one piece of code the node's driver and the
simulator both run, with only the I/O at its edges swapped (`Edges`).

A turn is everything that happens before the event loop runs the save it
scheduled: the steps of a frame from each peer whose data arrived together,
a run of client requests, a tick. Saving is a group commit: every step taken
in one turn is saved in one transaction, flushed once, and only then is
anything of those steps sent. The fsync, which costs more than the steps
themselves, is paid per turn instead of per message, and nothing leaves the
node before its disk backs it, but relays of other nodes' votes, which commit
it to nothing (`pbft.effects.leaves_unsaved`).

A turn whose votes a synced vote horizon covers, or that starts a build
(`pbft.effects.must_write`), is written unsynced before it is carried out: a
killed process keeps it, and what a power cut takes is what `pbft.horizon`
makes safe to lose. A turn that only took messages in (`pbft.effects.must_sync`
says it need not be synced) is not written at once: its effects wait, in memory, for the next
turn that must be synced, which writes them first, in the same transaction,
or for `write_deferred` (each tick, and a read of the ledger), which writes
them unsynced. A kill loses them as a power cut loses unsynced steps, which
the protocol survives (other nodes' votes lost on the way). At n = 16 the
primary takes in some 45 votes per request, each in a turn of its own: they
cost one transaction instead of 45.

Whatever is written pairs effects with the durable state the replica had
right after the last step that produced them (`Replica.durable_state`),
never with its state of the moment: a write made while a later step's
effects wait for their own save would otherwise record the replica as having
executed a batch whose ledger entry is in none of the store's rows, and a
kill before that save would leave a hole in the ledger.

A step that trips a replica invariant, or a save that fails (a full disk),
stops the interpreter at once: nothing of that turn is saved or sent, and
nothing is stepped any more (fail-stop); a restart rebuilds the replica from
what was saved. So does an effect that raises as it is carried out: none of
the turn's effects after it is carried out.
"""

from __future__ import annotations

import itertools
import logging
from typing import Callable, Protocol, TypeVar

from pbft.effects import (
    Broadcast, BuildLearnt, Effect, Execute, NetworkChanged, ResendReply, SendReply, SendTo, ServeFetch, ServeVotes,
    StopBuild, durability, leaves_unsaved,
)
from pbft.ledger import MemoryLedger
from pbft.messages import Message, Reply
from pbft.replica import Replica
from pbft.durable import DurableState
from pbft.storage import ReplicaStore, StoreError

logger = logging.getLogger(__name__)

# Effects of inward-only turns held for the next save at most; a node flooded with votes
# and sending nothing writes them this many at a time instead of holding them all.
MAX_DEFERRED_EFFECTS = 1000

T = TypeVar("T")


class Edges(Protocol):
    """The I/O an interpreter needs: the node's sockets and event loop, or the simulator's queue."""

    def send(self, node: int, message: Message) -> None:
        """Send `message` to one node, at the address the configuration gives it."""

    def broadcast(self, message: Message) -> None:
        """Send `message` to every other node."""

    def send_reply(self, reply: Reply) -> None:
        """Send a signed reply to the client it names."""

    def execute(self, effect: Execute) -> None:
        """A batch joined the ledger: start the builds in `effect.requests`."""

    def build_learnt(self, effect: BuildLearnt) -> None:
        """Start the build of a request learnt by state transfer (`effect.request`, at `effect.seq`)."""

    def stop_build(self, effect: StopBuild) -> None:
        """Stop the build of request (`effect.client`, `effect.timestamp`) if it runs or waits here."""

    def network_changed(self, effect: NetworkChanged) -> None:
        """The order replaced the network document: builds ordered after `effect.seq` run with it."""

    def schedule(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the current turn is over (`loop.call_soon`)."""

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        """`ReplicaStore.save`, where the node also times it. May raise: the interpreter stops."""

    def saving(self, effects: list[Effect]) -> None:
        """A turn's effects are about to be saved and carried out (metrics, checkers)."""

    def stop(self) -> None:
        """The interpreter stopped (see the module doc): end the process."""


class Interpreter:
    def __init__(self, replica: Replica, store: ReplicaStore | None, edges: Edges) -> None:
        self.replica = replica
        self.store = store  # read for FETCH, ResendReply and ServeVotes; written through edges.save
        self.edges = edges
        self.stopped = False
        # Effects of the steps since the last save, and the durable state after the last of them.
        self._unsaved: list[Effect] = []
        self._unsaved_state: DurableState | None = None
        # Effects of turns that only took messages in, and the state after them (see the module doc).
        self._deferred: list[Effect] = []
        self._deferred_state: DurableState | None = None
        self._save_scheduled = False

    @property
    def unsaved(self) -> list[Effect]:
        """Effects of steps whose save is scheduled but has not run."""
        return list(self._unsaved)

    def step(self, step: Callable[..., T], *args: object) -> T | None:
        """Run one replica step and queue its effects for the end of the turn. A tripped
        invariant is our own bug and the replica's memory can no longer be trusted: stop
        at once, before any effect of that step is saved or sent."""
        if self.stopped:
            return None
        try:
            outcome = step(*args)
        except AssertionError:
            self._stop("node=%d replica invariant broken: stopping", self.replica.id, exc_info=True)
            return None
        self.take()
        return outcome

    def take(self) -> None:
        """Queue what the replica produced outside `step` (a restore) for the end of the turn."""
        effects = self.replica.take_effects()
        if not effects or self.stopped:
            return
        self._unsaved += effects
        self._unsaved_state = self.replica.durable_state()
        if not self._save_scheduled:
            self._save_scheduled = True
            self.edges.schedule(self.save_and_send)

    def save_and_send(self) -> None:
        """Save the effects of every step since the last save in one transaction, then carry them out."""
        self._save_scheduled = False
        effects, self._unsaved = self._unsaved, []
        state, self._unsaved_state = self._unsaved_state, None
        if not effects or self.stopped:
            return
        self.edges.saving(effects)
        # Persist before send: nothing leaves this node that its disk does not back, but
        # other nodes' votes passed on, which commit it to nothing.
        early = [leaves_unsaved(effect, effects, self.replica.id) for effect in effects]
        for effect in itertools.compress(effects, early):
            if not self._carried_out(effect):
                return
        if self.store is not None:
            needs = durability(effects, self.replica.id)
            if needs != "defer":
                self._save(state, effects, sync=needs == "sync")
            else:
                # Only taken in: nothing of it leaves the node or starts a build, so it can wait.
                self._deferred += effects
                self._deferred_state = state
                if len(self._deferred) >= MAX_DEFERRED_EFFECTS:
                    self.write_deferred()
            if self.stopped:
                return  # the save failed: nothing that rests on it may leave the node
        for effect, sent in zip(effects, early):
            if not sent and not self._carried_out(effect):
                return

    def _carried_out(self, effect: Effect) -> bool:
        """Carry out `effect`; False if it raised, which stops the node (fail-stop, as a failed
        save does). The effects after it rest on it: a build started with what the order did
        not say, a vote sent for a state the node does not hold. Restarted, the node replays
        its ledger and carries them out again, or stops again and says why."""
        try:
            self.carry_out(effect)
        except Exception as error:  # noqa: BLE001 - whatever it was, the turn cannot go on
            self._stop("node=%d cannot carry out %s (%s: %s): stopping", self.replica.id, type(effect).__name__,
                       type(error).__name__, " ".join(str(error).split())[:300], exc_info=True)
            return False
        return not self.stopped

    def write_deferred(self) -> None:
        """Write, unsynced, what turns that only took messages in left waiting, with the
        state that followed them: not a later step's, whose effects are not saved yet."""
        if self._deferred and not self.stopped and self.store is not None:
            self._save(self._deferred_state, [], sync=False)

    def close(self) -> None:
        """Save and send what is still unsaved, then take no more steps (shutting down)."""
        self.save_and_send()
        self.write_deferred()
        self.stopped = True

    def _save(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        """Save `effects`, after whatever waited for a save, in one transaction. `state` is the
        replica's after the last of them (it is after every deferred one, which came first).

        A save that fails stops the node: going on, it would act on steps its disk does not
        hold, and a restart would not know them. Stopped, it restarts from what it saved and
        fetches the rest from its peers."""
        assert state is not None
        effects, self._deferred, self._deferred_state = self._deferred + effects, [], None
        try:
            self.edges.save(state, effects, sync=sync)
        except StoreError as error:  # a full disk or a failing one: one clear line
            self._stop("node=%d store cannot write (%s): stopping; free space in %s and restart the node",
                       self.replica.id, error, error.directory)
        except Exception as error:  # anything else is a bug of ours: with its traceback
            self._stop("node=%d store cannot write (%s: %s): stopping", self.replica.id, type(error).__name__, error,
                       exc_info=True)

    def _stop(self, message: str, *args: object, exc_info: bool = False) -> None:
        """Log why, then stop at once: take no more steps and drop every effect not yet saved,
        so nothing that rested on them leaves the node."""
        logger.critical(message, *args, exc_info=exc_info)
        self.stopped = True
        self.replica.take_effects()
        self._unsaved, self._deferred = [], []
        self._unsaved_state = self._deferred_state = None
        self.edges.stop()

    def carry_out(self, effect: Effect) -> None:
        edges = self.edges
        if isinstance(effect, Broadcast):
            edges.broadcast(effect.message)
        elif isinstance(effect, SendTo):
            edges.send(effect.node, effect.message)
        elif isinstance(effect, SendReply):
            edges.send_reply(effect.reply)
        elif isinstance(effect, ResendReply):
            reply = self.store.reply(effect.client, effect.timestamp) if self.store is not None else None
            if reply is not None:
                edges.send_reply(reply)
        elif isinstance(effect, ServeVotes):
            if self.store is not None:
                for vote in self.store.votes(effect.keys):
                    if vote.sender != effect.node:
                        edges.send(effect.node, vote)
        elif isinstance(effect, Execute):
            edges.execute(effect)
        elif isinstance(effect, BuildLearnt):
            edges.build_learnt(effect)
        elif isinstance(effect, StopBuild):
            edges.stop_build(effect)
        elif isinstance(effect, NetworkChanged):
            edges.network_changed(effect)
        elif isinstance(effect, ServeFetch):
            ledger = self.store if self.store is not None else MemoryLedger()
            self.step(self.replica.answer_fetch, effect.fetch, ledger)

