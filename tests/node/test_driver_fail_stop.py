"""A node whose replica trips an invariant, or whose store cannot write, stops whole: nothing
of that step is saved or sent. Steps taken in one turn of the event loop are saved together,
before any of them is sent."""

import asyncio
import json
import logging
import sqlite3
from dataclasses import replace

from node.driver import Driver, DriverParts
from node.storage import NodeStore
from pbft.effects import Execute, ResendReply, SendReply, ServeVotes, Store
from pbft.build import Result
from pbft.messages import Commit, Prepare, Relay, Reply, ResultVote, batch_digest, decode, encode, signed
from pbft.replica import Replica
from tests.support.cluster import Cluster


PASSED = Result("success", 0, "a" * 40)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def send(self, frame: str) -> None:
        self.frames.append(frame)


async def test_a_broken_invariant_stops_the_node_before_anything_leaves(tmp_path):
    cluster = Cluster()
    replica = cluster.replicas[0]
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    peers = {i: Recorder() for i in (1, 2, 3)}
    stops = []
    driver = Driver(replica, None, DriverParts(peers, store=store), fail_stop=lambda: stops.append(True))

    request = cluster.request()
    real_check = replica._check_invariants

    def broken() -> None:
        real_check()
        raise AssertionError("invariant")

    replica._check_invariants = broken
    driver.on_frame(json.dumps(encode(request)), connection=None)
    await asyncio.sleep(0)  # the turn's save would run now
    assert stops == [True] and driver.stopped
    assert all(peer.frames == [] for peer in peers.values())  # the pre-prepare never left
    assert store.load() is None  # and nothing of the step was saved
    replica._check_invariants = real_check
    driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    await asyncio.sleep(0)
    assert all(peer.frames == [] for peer in peers.values())  # a stopped node stays stopped


class FullStore(NodeStore):
    """A store on a disk that fills up: the first save whose effects `fills` picks, and every one after it, fails."""

    def __init__(self, path, fills=lambda effect: True) -> None:
        super().__init__(path, n=4, f=1)
        self.fills = fills
        self.full = False
        self.failed = 0

    def _write(self, state, effects, *, sync) -> None:
        if self.full or any(self.fills(effect) for effect in effects):
            self.full = True
            self.failed += 1
            raise sqlite3.OperationalError("database or disk is full")
        super()._write(state, effects, sync=sync)


def stop_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno == logging.CRITICAL]


async def test_a_store_that_cannot_write_stops_the_node_before_anything_of_that_turn_leaves(tmp_path, caplog):
    cluster = Cluster()
    replica = cluster.replicas[0]
    store = FullStore(tmp_path / "node-0" / "node.sqlite")
    peers = {i: Recorder() for i in (1, 2, 3)}
    stops = []
    driver = Driver(replica, None, DriverParts(peers, store=store), fail_stop=lambda: stops.append(True))

    driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    await asyncio.sleep(0)  # the turn's save runs now, and fails
    assert stops == [True] and driver.stopped and store.failed == 1
    assert all(peer.frames == [] for peer in peers.values())  # the pre-prepare never left
    assert store.load() is None
    # One line that says what to do, without a traceback: a full disk is not a bug.
    (line,) = stop_lines(caplog)
    assert not line.exc_info
    assert line.getMessage() == (
        f"node=0 store cannot write (OperationalError: database or disk is full): stopping; "
        f"free space in {tmp_path / 'node-0'} and restart the node"
    )

    stepped = []
    replica.receive = lambda message: stepped.append(message)
    for _ in range(3):
        driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
        await asyncio.sleep(0)
    await asyncio.sleep(0.15)
    driver.write_deferred()  # as the tick and a ledger read do
    assert stepped == [] and stops == [True] and store.failed == 1  # later frames are not stepped
    assert all(peer.frames == [] for peer in peers.values())
    store.close()


async def test_a_batch_whose_execution_cannot_be_written_is_neither_built_nor_remembered(tmp_path, caplog):
    """The failure seen on a real network: a node executed a batch it could not write and went on;
    restarted, its ledger had a hole there for good. Stopped instead, it restarts from a state that
    has not executed the batch, and executes it again."""
    cluster = Cluster()
    to_backup = []
    cluster.deliver_to(0, cluster.request())
    cluster.run(keep=lambda node, message: node != 1 or to_backup.append(message))  # the others order it
    assert cluster.executed_seqs(0) == [1]
    store = FullStore(tmp_path / "node-1" / "node.sqlite", fills=lambda effect: isinstance(effect, Execute))
    peers = {i: Recorder() for i in (0, 2, 3)}
    stops, started = [], []
    driver = Driver(cluster.replicas[1], None, DriverParts(peers, store=store), fail_stop=lambda: stops.append(True))
    driver.start_build = lambda build: started.append(build.seq)

    sent_before_stop = None
    for message in to_backup:
        driver.on_frame(json.dumps(encode(message)))
        if not stops:
            sent_before_stop = [decode(json.loads(frame)).TYPE for frame in peers[0].frames]
        await asyncio.sleep(0)
    assert stops == [True] and store.failed == 1
    assert sent_before_stop == ["prepare", "commit"]  # what earlier turns saved and sent
    assert [decode(json.loads(frame)).TYPE for frame in peers[0].frames] == sent_before_stop
    assert started == []  # the build never started
    assert [line.getMessage().split(" (")[0] for line in stop_lines(caplog)] == ["node=1 store cannot write"]
    store.full = False  # space freed
    loaded = store.load()
    restarted = Replica(cluster.replicas[1].settings, cluster.replicas[1].auth).restore(loaded, 0.0)
    assert restarted.last_executed == 0 and store.ledger() == []  # no hole: seq 1 is still to execute
    store.close()


async def test_a_tick_that_cannot_write_what_waited_stops_the_node(tmp_path, caplog):
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    preprepare = next(message for node, message in cluster.network if node == 1)
    commit = signed(Commit(0, preprepare.seq, preprepare.digest, 2), cluster.replicas[2].auth.sign)
    store = FullStore(tmp_path / "node.sqlite")
    stops = []
    driver = Driver(cluster.replicas[1], None, DriverParts({}, store=store), fail_stop=lambda: stops.append(True))
    driver.on_frame(json.dumps(encode(commit)))  # only taken in: it waits for the tick
    await asyncio.sleep(0)
    assert stops == [] and store.failed == 0
    driver.write_deferred()
    assert stops == [True] and driver.stopped and len(stop_lines(caplog)) == 1
    driver.write_deferred()
    driver.close()  # a node shutting down after the stop writes nothing either
    assert stops == [True] and store.failed == 1
    store.close()


async def test_a_healthy_step_is_saved_and_sent(tmp_path):
    cluster = Cluster()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    peers = {i: Recorder() for i in (1, 2, 3)}
    driver = Driver(cluster.replicas[0], None, DriverParts(peers, store=store), fail_stop=lambda: None)
    driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    await asyncio.sleep(0)
    assert all(len(peer.frames) == 1 for peer in peers.values()) and store.load() is not None


class CountingStore(NodeStore):
    """A store that says, at each save, how many frames the peers had been sent before it."""

    def __init__(self, path, peers) -> None:
        super().__init__(path, n=4, f=1)
        self.peers = peers
        self.saves: list[tuple[int, int]] = []  # (effects saved, frames already sent)
        self.syncs: list[bool] = []

    def save(self, state, effects, *, sync=True) -> None:
        self.saves.append((len(effects), sum(len(peer.frames) for peer in self.peers.values())))
        self.syncs.append(sync)
        super().save(state, effects, sync=sync)


async def test_steps_of_one_turn_are_saved_in_one_transaction_before_any_is_sent(tmp_path):
    cluster = Cluster()
    peers = {i: Recorder() for i in (1, 2, 3)}
    store = CountingStore(tmp_path / "node.sqlite", peers)
    driver = Driver(cluster.replicas[0], None, DriverParts(peers, store=store), fail_stop=lambda: None)
    for _ in range(3):
        driver.on_frame(json.dumps(encode(cluster.request())), connection=None)
    assert store.saves == [] and all(peer.frames == [] for peer in peers.values())
    await asyncio.sleep(0)
    # One save for the three requests' pre-prepares, taken before the first frame left.
    ((saved, sent_before),) = store.saves
    assert saved >= 3 and sent_before == 0
    assert all(len(peer.frames) == 3 for peer in peers.values())
    driver.close()
    store.close()


async def test_only_a_turn_that_sends_is_synced_and_one_that_only_took_in_waits_for_the_next_save(tmp_path):
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    preprepare = next(message for node, message in cluster.network if node == 1)
    for node in (2, 3):
        cluster.deliver_to(node, preprepare)
    prepare = next(message for node, message in cluster.network if node == 1 and isinstance(message, Prepare))
    commit = signed(Commit(0, preprepare.seq, preprepare.digest, 2), cluster.replicas[2].auth.sign)
    peers = {i: Recorder() for i in (0, 2, 3)}
    store = CountingStore(tmp_path / "node.sqlite", peers)
    driver = Driver(cluster.replicas[1], None, DriverParts(peers, store=store), fail_stop=lambda: None)
    for message in (preprepare, prepare, commit):
        driver.on_frame(json.dumps(encode(message)))
        await asyncio.sleep(0)
    # Its own PREPARE goes out: synced. With another's it holds 2f and its COMMIT goes
    # out: synced. Node 2's COMMIT, one short of 2f+1, is only taken in: not saved yet.
    assert store.syncs == [True, True]
    assert [decode(json.loads(frame)).TYPE for frame in peers[0].frames] == ["prepare", "commit"]
    assert commit not in store.load().messages
    driver.write_deferred()  # as the next tick does: unsynced
    assert store.syncs == [True, True, False] and commit in store.load().messages
    driver.close()
    store.close()


async def test_effects_waiting_for_a_save_are_bounded(tmp_path, monkeypatch):
    """A node that only takes votes in, sending nothing, writes them once enough wait."""
    monkeypatch.setattr("pbft.interpreter.MAX_DEFERRED_EFFECTS", 2)
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    preprepare = next(message for node, message in cluster.network if node == 1)
    commits = [signed(Commit(0, preprepare.seq, preprepare.digest, node), cluster.replicas[node].auth.sign)
               for node in (2, 3)]
    peers = {i: Recorder() for i in (0, 2, 3)}
    store = CountingStore(tmp_path / "node.sqlite", peers)
    driver = Driver(cluster.replicas[1], None, DriverParts(peers, store=store), fail_stop=lambda: None)
    for commit in commits:  # early commits: taken in, one Store each
        driver.on_frame(json.dumps(encode(commit)))
        await asyncio.sleep(0)
    assert store.syncs == [False] and all(commit in store.load().messages for commit in commits)
    driver.close()
    store.close()


async def test_a_relay_of_other_nodes_votes_leaves_before_the_save_it_does_not_need(tmp_path):
    cluster = Cluster(settings={"relay_votes": True})
    cluster.deliver_to(0, cluster.request())
    preprepare = next(message for node, message in cluster.network if node == 1)
    cluster.network.clear()
    for node in (1, 2):
        cluster.deliver_to(node, preprepare)
    prepares = [message for node, message in cluster.network if isinstance(message, Prepare)]
    assert [message.sender for message in prepares] == [1, 2]
    peers = {i: Recorder() for i in (1, 2, 3)}
    store = CountingStore(tmp_path / "node.sqlite", peers)
    driver = Driver(cluster.replicas[0], None, DriverParts(peers, store=store), fail_stop=lambda: None)
    for prepare in prepares:
        driver.on_frame(json.dumps(encode(prepare)))
        await asyncio.sleep(0)
    # Node 1's prepare is only taken in: it waits. Node 2's prepares the primary: the relay
    # of both goes to the three backups before the save, which the primary's new COMMIT
    # must sync, and which writes node 1's prepare first.
    assert store.syncs == [True] and store.saves[0][1] == 3
    assert prepares[0] in store.load().messages
    relays = [decode(json.loads(frame)) for peer in peers.values() for frame in peer.frames]
    assert all(isinstance(relay, Relay) and relay.votes == tuple(prepares) for relay in relays)
    assert Commit(0, 1, preprepare.digest, 0) in [replace(vote, sig="") for vote in store.load().messages
                                                  if isinstance(vote, Commit)]
    driver.close()
    store.close()


async def test_resent_replies_and_served_votes_come_from_the_store(tmp_path):
    cluster = Cluster()
    request = cluster.request()
    node = cluster.replicas[1]
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    execute = Execute(0, 1, batch_digest((request,)), (request,), (request,), "0" * 64)
    reply = signed(Reply(0, request.timestamp, request.client, 1, PASSED), node.auth.sign)
    votes = [
        signed(ResultVote(1, request.client, request.timestamp, PASSED, sender), cluster.replicas[sender].auth.sign)
        for sender in (0, 1, 3)
    ]
    store.save(node.durable_state(), [execute, SendReply(reply), *map(Store, votes)])
    peers = {i: Recorder() for i in (0, 2, 3)}
    client = Recorder()
    driver = Driver(node, None, DriverParts(peers, store=store), fail_stop=lambda: None)
    driver.clients.add(request.client, client)

    for effect in (ResendReply(request.client, request.timestamp), ServeVotes(3, (request.key,))):
        driver.interpreter.carry_out(effect)

    assert [decode(json.loads(frame)) for frame in client.frames] == [reply]
    # Node 3 asked: it gets the votes of nodes 0 and 1, not its own back.
    assert [decode(json.loads(frame)).sender for frame in peers[3].frames] == [0, 1]
    assert peers[0].frames == [] and peers[2].frames == []
    driver.close()
    store.close()
