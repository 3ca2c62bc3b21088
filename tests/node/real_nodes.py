"""Real node processes on loopback with the test-only instant build executor, and a client that
orders many requests through them: the network of the long-lived and disk-full tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

from client.app import client_authenticator
from harness.network import write_network
from pbft.build import Operation
from pbft.messages import Reply, Request, decode, encode, signed
from shared.config import load_config
from tests.support.handshake import say_hello
from tests.support.node_processes import idle_seq

REPO_ROOT = Path(__file__).resolve().parents[2]


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

    def idle(self, timeout_s: float = 60) -> int:
        return idle_seq(self.status, list(self.processes), timeout_s)

    def store_path(self, node_id: int) -> Path:
        return self.config.data_dir / f"node-{node_id}" / "node.sqlite"


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
                if isinstance(reply, Reply) and reply.timestamp not in answered:
                    answered.add(reply.timestamp)
                    assert reply.result.status == "success"
                    await send(min(1, count - sent))


IN_FLIGHT = 400  # a client that keeps this many requests open, as a busy forge would
# Small checkpoints and windows: many stable checkpoints, so the rejoin takes many chunks.
PROTOCOL = {"checkpoint_interval": 16, "log_window": 32, "batch_max": 8}
