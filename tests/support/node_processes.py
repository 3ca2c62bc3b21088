"""Real node processes on loopback for tests: `node/index.py --instant-builds` with switches of
the test's own (`--byzantine`, `--crash-at`), clients that sign their requests with the keys
the test generated, and the nodes' HTTP routes read back.

`RealNodes.close` kills every process it started (its whole process group), so a fixture that
calls it in `finally` leaves nothing running whatever the test did; the configuration, keys,
data and logs are in the test's tmp_path, which pytest removes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import yaml

from harness.network import free_port, parse_metrics
from pbft.build import Operation
from pbft.messages import Reply, Request, decode, encode, signed
from pbft.quorum import reply_quorum, winner
from shared.config import NetworkConfig, client_key_file, load_config
from shared.crypto import Ed25519Authenticator, generate_private_key, load_private_key, parse_public_key
from shared.crypto import public_key_hex, save_private_key
from tests.support.handshake import say_hello

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_client(config_path: Path, name: str) -> None:
    """Give the network YAML at `config_path` (tests.network.write_network's) one more client, with a fresh key."""
    data = yaml.safe_load(config_path.read_text())
    private = generate_private_key()
    save_private_key(private, client_key_file(config_path.parent / data["keys_dir"], name))
    data["clients"].append({"name": name, "host": "127.0.0.1", "port": free_port(),
                            "public_key": public_key_hex(private), "plain_without_token": True})
    config_path.write_text(yaml.safe_dump(data))


class RealNodes:
    """The node processes of one network configuration, each started with `--instant-builds`."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: NetworkConfig = load_config(config_path)
        self.logs = config_path.parent / "log"
        self.logs.mkdir(exist_ok=True)
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, node_id: int, *switches: str, wait: bool = True, config_path: Path | None = None) -> subprocess.Popen:
        """Start node `node_id` with `switches` after --instant-builds; with `wait`, return once it answers /status.
        `config_path`: another file than the network's (another network document at the same addresses)."""
        with (self.logs / f"node-{node_id}.out").open("ab") as output:
            process = self.processes[node_id] = subprocess.Popen(
                [sys.executable, "node/index.py", "--config", str(config_path or self.config_path), "--id", str(node_id),
                 "--instant-builds", *switches, "--log-file", str(self.log_path(node_id))],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_until_up(node_id)
        return process

    def wait_until_up(self, node_id: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.status(node_id)
                return
            except OSError:
                assert self.processes[node_id].poll() is None, self.output(node_id)
                assert time.monotonic() < deadline, f"node {node_id} did not answer /status"
                time.sleep(0.1)

    def log_path(self, node_id: int) -> Path:
        return self.logs / f"node-{node_id}.log"

    def log(self, node_id: int) -> str:
        return self.log_path(node_id).read_text() if self.log_path(node_id).exists() else ""

    def output(self, node_id: int) -> str:
        """What the process wrote to stdout and stderr (argparse's errors, a traceback)."""
        return (self.logs / f"node-{node_id}.out").read_text()

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> int:
        """Signal the node's process group, wait for it and return its exit code."""
        process = self.processes.pop(node_id)
        if process.poll() is None:
            os.killpg(process.pid, sig)
        return process.wait(timeout=30)

    def stop_all(self) -> None:
        for node_id in list(self.processes):
            self.kill(node_id, signal.SIGTERM)

    def close(self) -> None:
        """Kill whatever is still running (a fixture's `finally`)."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        self.processes.clear()

    def get(self, node_id: int, path: str) -> tuple[int, dict | str]:
        """GET `path` on a node: HTTP status and the JSON body (text for /metrics)."""
        url = self.config.node(node_id).url(path)
        context = self.config.tls.client_context() if self.config.tls is not None else None
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:
                body = response.read().decode()
                return response.status, body if path == "/metrics" else json.loads(body)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def status(self, node_id: int) -> dict:
        return self.get(node_id, "/status")[1]

    def idle(self, timeout_s: float = 60) -> int:
        return idle_seq(self.status, list(self.processes), timeout_s)

    def metrics(self, node_id: int) -> dict[tuple[str, tuple], float]:
        return parse_metrics(self.get(node_id, "/metrics")[1])

    def build_at(self, node_id: int, seq: int) -> tuple[int, dict]:
        return self.get(node_id, f"/builds/{seq}")


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.1):
    """`condition()`'s first truthy value; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(interval_s)


class Client:
    """A client of the network with a /client socket to each of `nodes`: it signs requests with
    its key from the test's key folder and keeps every reply whose signature checks, with the
    event-loop time it arrived."""

    def __init__(self, config: NetworkConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.auth = Ed25519Authenticator(
            load_private_key(config.client_key_path(name)),
            {node.id: parse_public_key(node.public_key) for node in config.nodes},
            {},
        )
        self.sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self.replies: dict[int, dict[int, tuple[Reply, float]]] = {}  # timestamp -> sender -> (reply, arrival)
        self._readers: list[asyncio.Task] = []

    async def connect(self, session: aiohttp.ClientSession, nodes) -> None:
        for node_id in nodes:
            node = self.config.node(node_id)
            ws = await session.ws_connect(node.url("/client"), ssl=self.config.node_ssl())
            await say_hello(ws, self.name, node_id, self.auth.sign)
            self.sockets[node_id] = ws
            self._readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            reply = decode(json.loads(frame.data))
            if isinstance(reply, Reply) and reply.client == self.name and self.auth.verify_node(
                reply.sender, reply.payload(), reply.sig
            ):
                arrival = asyncio.get_running_loop().time()
                self.replies.setdefault(reply.timestamp, {}).setdefault(reply.sender, (reply, arrival))

    async def send(self, timestamp: int, nodes, branch: str = "master") -> None:
        request = signed(Request(self.name, timestamp, Operation("example", branch)), self.auth.sign)
        frame = json.dumps(encode(request))
        for node_id in nodes:
            await self.sockets[node_id].send_str(frame)

    def verdict(self, timestamp: int) -> tuple[dict, float] | None:
        """The result f+1 nodes' replies agree on, and when the last of those f+1 arrived; None before."""
        replies = self.replies.get(timestamp, {})
        agreed = {sender: tuple(sorted(reply.result.agreed().items())) for sender, (reply, _) in replies.items()}
        found = winner(agreed, reply_quorum(self.config.f))
        if found is None:
            return None
        result = found[0]
        arrivals = sorted(arrival for sender, (_, arrival) in replies.items() if agreed[sender] == result)
        return dict(result), arrivals[reply_quorum(self.config.f) - 1]

    async def wait_verdict(self, timestamp: int, timeout_s: float) -> tuple[dict, float]:
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_s
        while (found := self.verdict(timestamp)) is None:
            assert loop.time() < deadline_s, f"no verdict for {self.name} {timestamp}: {self.replies.get(timestamp)}"
            await asyncio.sleep(0.01)
        return found

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for ws in self.sockets.values():
            await ws.close()


def idle_seq(status, node_ids: list[int], timeout_s: float = 60) -> int:
    """The sequence number every node of `node_ids` executed once none executes more for two
    seconds (`status(node_id)` is its GET /status): past the batch that logs the last builds'
    verdicts (pbft/ci/verdictlog.py)."""
    deadline = time.monotonic() + timeout_s
    while True:
        first = {node_id: status(node_id)["last_executed"] for node_id in node_ids}
        time.sleep(2.0)
        then = {node_id: status(node_id)["last_executed"] for node_id in node_ids}
        if first == then and len(set(then.values())) == 1:
            return next(iter(then.values()))
        assert time.monotonic() < deadline, f"the nodes never went idle: {then}"
