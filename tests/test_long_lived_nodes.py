"""Real node processes on loopback, with the test-only instant build executor: a node that
was down while 5,000 requests were ordered rejoins by chunked state transfer, and all four
SQLite ledgers agree afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from node.storage import NodeStore
from shared.config import load_config
from client.app import client_authenticator
from pbft.build import Operation
from pbft.messages import Request, decode, encode, signed
from tests.network import say_hello, write_network
from tests.node_processes import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

REQUESTS = 5_000
IN_FLIGHT = 400  # a client that keeps this many requests open, as a busy forge would
# Small checkpoints and windows: many stable checkpoints, so the rejoin takes many chunks.
PROTOCOL = {"checkpoint_interval": 16, "log_window": 32, "batch_max": 8}


class Nodes:
    def __init__(self, tmp_path: Path) -> None:
        self.config_path = write_network(tmp_path, allow_byzantine=True, protocol=PROTOCOL)
        self.config = load_config(self.config_path)
        self.processes: dict[int, subprocess.Popen] = {}
        self.logs = tmp_path / "log"
        self.logs.mkdir(exist_ok=True)

    def start(self, node_id: int) -> None:
        with (self.logs / f"node-{node_id}.out").open("ab") as output:
            self.processes[node_id] = subprocess.Popen(
                [sys.executable, "node/index.py", "--config", str(self.config_path), "--id", str(node_id),
                 "--instant-builds", "--log-file", str(self.logs / f"node-{node_id}.log")],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.status(node_id)
                return
            except OSError:
                assert self.processes[node_id].poll() is None, (self.logs / f"node-{node_id}.out").read_text()
                assert time.monotonic() < deadline, f"node {node_id} did not answer /status"
                time.sleep(0.1)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(node_id)
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for node_id in list(self.processes):
            self.kill(node_id, signal.SIGTERM)

    def kill_left_running(self) -> None:
        """A test's clean-up: whatever it left running, killed, it passed or not."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def status(self, node_id: int) -> dict:
        node = self.config.node(node_id)
        with urllib.request.urlopen(f"http://{node.host}:{node.port}/status", timeout=5) as response:
            return json.load(response)

    def store_path(self, node_id: int) -> Path:
        return self.config.data_dir / f"node-{node_id}" / "node.sqlite"


@pytest.fixture
def nodes(tmp_path):
    started = Nodes(tmp_path)
    try:
        yield started
    finally:
        started.kill_left_running()


async def order_requests(config, count: int, first_timestamp: int) -> None:
    """Send `count` signed requests to the primary, keeping IN_FLIGHT open, until it replied to all."""
    auth = client_authenticator(config, "client")
    primary = config.node(0)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://{primary.host}:{primary.port}/client") as ws:
            await say_hello(ws, "client", 0, auth.sign)
            timestamps = iter(range(first_timestamp, first_timestamp + count))
            answered: set[int] = set()
            sent = 0

            async def send(how_many: int) -> None:
                nonlocal sent
                for timestamp in list(zip(range(how_many), timestamps)):
                    request = signed(Request("client", timestamp[1], Operation("example", "master")), auth.sign)
                    await ws.send_str(json.dumps(encode(request)))
                    sent += 1

            await send(IN_FLIGHT)
            while len(answered) < count:
                frame = await asyncio.wait_for(ws.receive(), timeout=60)
                reply = decode(json.loads(frame.data))
                if reply.timestamp not in answered:
                    answered.add(reply.timestamp)
                    assert reply.result.status == "success"
                    await send(min(1, count - sent))


def test_a_node_down_for_5000_requests_rejoins_and_the_four_ledgers_agree(nodes):
    for node_id in range(4):
        nodes.start(node_id)
    asyncio.run(order_requests(nodes.config, 20, first_timestamp=1))
    nodes.kill(3)  # kill -9 while the network keeps ordering
    asyncio.run(order_requests(nodes.config, REQUESTS, first_timestamp=1_000))
    primary = nodes.status(0)
    assert primary["low_watermark"] > 10 * PROTOCOL["log_window"], primary  # far beyond node 3's window

    nodes.start(3)
    caught_up = wait_until(
        lambda: (status := nodes.status(3))["last_executed"] >= primary["last_executed"] and status,
        timeout_s=120, what="node 3 to catch up",
    )
    assert caught_up["view"] == primary["view"]
    nodes.stop_all()

    ledgers = [NodeStore(nodes.store_path(node_id), n=4, f=1).ledger() for node_id in range(4)]
    assert len(ledgers[0]) == primary["last_executed"]
    assert all(ledger == ledgers[0] for ledger in ledgers[1:])
    with sqlite3.connect(nodes.store_path(3)) as db:
        built = [seq for (seq,) in db.execute("SELECT seq FROM builds WHERE built = 1 AND timestamp >= 1000")]
        learnt = db.execute("SELECT count(*) FROM builds WHERE built = 0").fetchone()[0]
    # Nothing below the checkpoint it rejoined at was built again; all of it is on record as executed.
    assert all(seq > primary["low_watermark"] for seq in built), built[:10]
    assert learnt + len(built) >= REQUESTS
