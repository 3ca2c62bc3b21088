"""A node killed at the driver's crash points restarts without holes in its ledger.

The interpreter saves each turn's steps in one transaction that the event loop
runs once the turn is over (`Driver.schedule`); turns that only took messages
in wait for the next write (`Driver.write_deferred`: each tick, and a read of
the ledger such as GET /builds/{seq}). Four real node processes on loopback
with the test-only instant builds; backup 3 runs `--crash-at POINT TURNS`, which
ends its process with exit code 3 at the first such point after TURNS saves:

- before-save: right before the save of a turn that executed a batch;
- after-ledger-read: right after a GET /builds/{seq} wrote what waited while a
  turn that executed a batch still waits for its save (a write that paired
  what waited with the replica's state of the moment would record that batch
  as executed with no ledger entry for it);
- after-cancel: right after the save of a turn that executed a cancel, before
  the build is stopped; stop-after-cancel: the same moment, a clean stop
  (tests/e2e/test_end_to_end_cancel_faults.py uses both; unit tests here).

Requests stream in until node 3 dies; restarted without the switch, it
catches up while a few more arrive, and GET /builds/{seq} for every sequence
number answers the same batch and verdict on all four nodes, with no 404.
Every process is killed whatever happens; instant builds start no container.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from harness.network import write_network
from node.crashpoints import CRASH_EXIT_CODE, CrashAt
from node.storage import NodeStore
from pbft.effects import Execute, StopBuild
from tests.support.node_processes import Client, RealNodes

ARMED = 3  # a backup: node 0 stays the primary, and the other three are a quorum
TURNS = 30
STREAM_INTERVAL_S = 0.02
READERS = 4  # concurrent GET /builds/{seq} loops on the armed node
MAX_WAIT_FOR_CRASH_S = 60
AFTER = 5  # requests once the armed node is back


class FakeDriver:
    """What CrashAt wraps: schedule, save, write_deferred; and the interpreter's unsaved effects."""

    def __init__(self) -> None:
        self.scheduled: list = []
        self.saved = 0
        self.deferred = False
        self.interpreter = self
        self.unsaved: list = []
        self.replica = type("Replica", (), {"id": 3})()

    def schedule(self, callback) -> None:
        self.scheduled.append(callback)

    def save(self, state, effects, *, sync: bool) -> None:
        self.saved += 1

    def write_deferred(self) -> None:
        if self.deferred:
            self.deferred = False
            self.save(None, [], sync=False)

    def run_turn(self, unsaved: list) -> None:
        self.unsaved = unsaved
        self.scheduled.pop(0)()
        self.unsaved = []


def execute(seq: int) -> Execute:
    return Execute(0, seq, "d" * 64, (), (), "s" * 64)


def test_before_save_exits_before_the_first_save_that_executes_a_batch_after_turns(caplog):
    exits: list[int] = []
    crash = CrashAt("before-save", 2, exit_process=exits.append)
    driver = FakeDriver()
    crash.install(driver)
    ran = []
    for turn, unsaved in enumerate([[execute(1)], [], [], [execute(2)]]):
        driver.schedule(lambda turn=turn: ran.append(turn))
        driver.run_turn(unsaved)
        assert exits == ([] if turn < 3 else [CRASH_EXIT_CODE]), turn
    assert ran == [0, 1, 2, 3]  # a fake exit returns; the real one never does
    assert "node=3 crash-at before-save: a turn's save was about to run (1 unsaved effects, executed seq 2) " \
           "after 3 turns: exiting with code 3" in caplog.text


def test_after_ledger_read_exits_only_when_the_read_wrote_while_an_execution_waits_for_its_save():
    exits: list[int] = []
    crash = CrashAt("after-ledger-read", 1, exit_process=exits.append)
    driver = FakeDriver()
    crash.install(driver)
    driver.schedule(lambda: None)
    driver.run_turn([execute(1)])
    driver.unsaved = [execute(2)]
    driver.write_deferred()  # nothing waited: nothing written
    driver.deferred, driver.unsaved = True, []
    driver.write_deferred()  # written, but no execution waits for its save
    assert exits == []
    driver.deferred, driver.unsaved = True, [execute(2)]
    driver.write_deferred()
    assert exits == [CRASH_EXIT_CODE]


def test_after_cancel_exits_once_a_turn_that_stops_a_build_is_saved_and_before_the_stop_is_carried_out(caplog):
    exits: list[int] = []
    crash = CrashAt("after-cancel", 1, exit_process=exits.append)
    driver = FakeDriver()
    crash.install(driver)
    driver.schedule(lambda: None)
    driver.run_turn([])
    driver.save(None, [execute(1)], sync=True)  # no cancel in it
    assert exits == [] and driver.saved == 1
    driver.save(None, [execute(2), StopBuild(2, "client", 7)], sync=True)
    assert exits == [CRASH_EXIT_CODE] and driver.saved == 2  # saved first: the cancel is on disk
    assert "crash-at after-cancel: a turn that cancels build client-7 is saved" in caplog.text


def test_stop_after_cancel_stops_the_node_cleanly_and_its_executor_is_told_to_stop_nothing(caplog):
    stops: list[bool] = []
    crash = CrashAt("stop-after-cancel", 1, exit_process=lambda code: stops.append(False),
                    stop_process=lambda: stops.append(True))
    driver = FakeDriver()
    driver.stop_build = lambda effect: stops.append(effect)
    crash.install(driver)
    driver.schedule(lambda: None)
    driver.run_turn([])
    driver.save(None, [execute(2), StopBuild(2, "client", 7)], sync=True)
    assert stops == [True]  # a clean stop asked for, no exit
    driver.stop_build(StopBuild(2, "client", 7))  # the turn's stop, carried out after the save
    assert stops == [True]
    assert "crash-at stop-after-cancel: a turn that cancels build client-7 is saved: stopping cleanly" in caplog.text


def test_the_node_refuses_crash_at_unless_the_configuration_allows_byzantine(tmp_path, monkeypatch, capsys):
    import builder.engine.host
    from node.index import main

    monkeypatch.setattr(builder.engine.host, "missing_support", lambda engine: None)  # no build engine needed to refuse
    config = write_network(tmp_path)
    assert main(["--config", str(config), "--id", "1", "--crash-at", "before-save", "5"]) == 2
    assert f"--crash-at is refused: {config} does not set allow_byzantine: true" in capsys.readouterr().err
    for words, complaint in (
        (["nowhere", "5"], "unknown point 'nowhere'"),
        (["before-save", "0"], "TURNS must be a positive integer"),
    ):
        with pytest.raises(SystemExit):
            main(["--config", str(config), "--id", "1", "--crash-at", *words])
        assert f"--crash-at: {complaint}" in capsys.readouterr().err


@pytest.fixture
def nodes(tmp_path):
    started = RealNodes(write_network(tmp_path, allow_byzantine=True))
    try:
        yield started
    finally:
        started.close()


async def stream_until_dead(nodes: RealNodes, client: Client, *, read_ledger: bool) -> list[int]:
    """Send requests to the primary one every STREAM_INTERVAL_S (with `read_ledger`, GET /builds/{seq} on the
    armed node as fast as READERS loops go) until the armed node's process ends; the timestamps sent."""
    armed = nodes.processes[ARMED]
    loop = asyncio.get_running_loop()
    sent: list[int] = []
    node = nodes.config.node(ARMED)

    async def read(session: aiohttp.ClientSession) -> None:
        seq = 1
        while True:
            try:
                async with session.get(f"http://{node.host}:{node.port}/builds/{seq}") as response:
                    await response.read()
                    seq = seq + 1 if response.status == 200 else max(1, seq - 1)
            except aiohttp.ClientError:
                await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        readers = [asyncio.create_task(read(session)) for _ in range(READERS if read_ledger else 0)]
        try:
            deadline_s = loop.time() + MAX_WAIT_FOR_CRASH_S
            while armed.poll() is None:
                assert loop.time() < deadline_s, f"node {ARMED} never reached its crash point"
                sent.append(len(sent) + 1)
                await client.send(sent[-1], [0])
                await asyncio.sleep(STREAM_INTERVAL_S)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    return sent


def ledger_view(nodes: RealNodes, node_id: int, last: int) -> dict[int, tuple]:
    """seq -> (status, [(client, timestamp, operation, verdict)]) for 1..last, as GET /builds/{seq} says."""
    view = {}
    for seq in range(1, last + 1):
        status, body = nodes.build_at(node_id, seq)
        view[seq] = (status, [(b["client"], b["timestamp"], b["operation"], b["verdict"])
                              for b in body.get("builds", ())])
    return view


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before-save", "after-ledger-read"])
def test_a_node_killed_at_a_crash_point_restarts_without_ledger_holes(nodes, point):
    started_s = time.monotonic()
    for node_id in range(4):
        if node_id != ARMED:
            nodes.start(node_id, wait=False)
    nodes.start(ARMED, "--crash-at", point, str(TURNS), wait=False)
    for node_id in range(4):
        nodes.wait_until_up(node_id)
    armed = nodes.processes[ARMED]

    async def run(timestamps: range | None) -> tuple[list[int], dict[int, dict]]:
        async with aiohttp.ClientSession() as session:
            client = Client(nodes.config, "client")
            try:
                await client.connect(session, [0, 1, 2])
                if timestamps is None:
                    sent = await stream_until_dead(nodes, client, read_ledger=point == "after-ledger-read")
                else:
                    sent = list(timestamps)
                    for timestamp in sent:
                        await client.send(timestamp, [0])
                verdicts = {t: (await client.wait_verdict(t, timeout_s=30))[0] for t in sent}
            finally:
                await client.close()
        return sent, verdicts

    sent, verdicts = asyncio.run(run(None))
    returncode = armed.wait(timeout=10)
    nodes.processes.pop(ARMED)
    crashed_s = time.monotonic()
    log = nodes.log(ARMED)
    lines = [line for line in log.splitlines() if f"node={ARMED} crash-at {point}:" in line]
    assert returncode == CRASH_EXIT_CODE, (returncode, log[-3000:], nodes.output(ARMED))
    assert len(lines) == 1 and "CRITICAL" in lines[0], lines
    assert "executed seq" in lines[0] and "Traceback" not in log, log[-3000:]
    assert all(verdict["status"] == "success" for verdict in verdicts.values())

    nodes.start(ARMED)  # without the switch
    more, _ = asyncio.run(run(range(100_000, 100_000 + AFTER)))
    # Once every node is idle: past the batch that logs the last verdicts, which comes a second later.
    last = nodes.idle()

    # Every seq holds the same batch on all four, and the same verdict once node 3 has the votes.
    deadline_s = time.monotonic() + 30
    while True:
        views = [ledger_view(nodes, node_id, last) for node_id in range(4)]
        if all(view == views[0] for view in views[1:]) or time.monotonic() > deadline_s:
            break
        time.sleep(0.2)
    holes = {node_id: [seq for seq, (status, _) in view.items() if status != 200] for node_id, view in enumerate(views)}
    assert holes == {node_id: [] for node_id in range(4)}, f"GET /builds/{{seq}} is not 200 at {holes}"
    differ = [seq for seq in range(1, last + 1) if any(view[seq] != views[0][seq] for view in views[1:])]
    assert differ == [], {seq: [view[seq] for view in views] for seq in differ[:3]}
    ordered = sorted(timestamp for _status, builds in views[0].values() for _c, timestamp, _o, _v in builds)
    assert ordered == sorted(sent + more)
    assert all(build[3]["state"] == "certified" for _status, builds in views[0].values() for build in builds)

    nodes.stop_all()
    ledgers = []
    for node_id in range(4):
        store = NodeStore(nodes.config.data_dir / f"node-{node_id}" / "node.sqlite", n=4, f=1)
        ledgers.append(store.ledger())
        store.close()
    assert len(ledgers[0]) == last and all(ledger == ledgers[0] for ledger in ledgers[1:])
    print(f"{point}: {lines[0].split('crash-at ', 1)[1]}; {len(sent)} requests before the crash "
          f"({crashed_s - started_s:.1f} s), {last} batches in all")
