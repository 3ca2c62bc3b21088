"""A throw-away network for benchmarks: real node processes on loopback and an in-process client.

Each node is `node/index.py` in a process of its own, as ./startNetwork.sh
starts it, but with keys, ports, data and logs under a temporary folder, so
a benchmark never touches the example network or its run/network.pids.
The client is the client's own `ClientService` (signing, retransmission,
f+1 acceptance, its SQLite build records) without the HTTP front, so that a
figure measures the protocol and not the webhook's HTTP call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

import aiohttp
import yaml

from client.app import client_authenticator
from client.links import NodeLinks
from client.outcome import Accepted, Verdict
from client.records import BuildRecords, records_path
from client.service import ClientOptions, ClientService
from harness.network import parse_metrics, write_network
from pbft.build import Operation
from shared.config import NetworkConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
OPERATION = Operation("example", "master")


def faults_tolerated(n: int) -> int:
    return (n - 1) // 3


@dataclass
class NodeProcesses:
    """The node processes of one network; `stop` ends every one of them, however they fare."""

    config: NetworkConfig
    processes: dict[int, subprocess.Popen]
    root: Path
    commands: dict[int, list[str]] = field(default_factory=dict)  # how each node was started

    def restart(self, node_id: int) -> None:
        """Start node `node_id` again (after a kill) as it was started; returns once it answers."""
        assert self.processes[node_id].poll() is not None, f"node {node_id} still runs"
        with open(self.root / "log" / f"node-{node_id}.stdout", "ab") as stdout:
            self.processes[node_id] = subprocess.Popen(
                self.commands[node_id], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        _wait_until_up(self, self.root, only=[node_id])

    def rss_kib(self) -> dict[int, int]:
        """Each running node's resident set size (VmRSS), in KiB."""
        sizes = {}
        for node_id, process in self.processes.items():
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes[node_id] = int(line.split()[1])
        return sizes

    def cpu_s(self) -> float:
        """User and system CPU seconds the running nodes have used so far, summed."""
        ticks = 0
        for process in self.processes.values():
            try:
                stat = Path(f"/proc/{process.pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return ticks / os.sysconf("SC_CLK_TCK")

    def metric_sums(self, *series: tuple[str, tuple]) -> tuple[float, ...]:
        """Each (name, labels) series of the running nodes' GET /metrics, summed over the nodes;
        one scrape per node for them all."""
        totals = [0.0] * len(series)
        for node in self.config.nodes:
            if self.processes[node.id].poll() is not None:
                continue
            with urllib.request.urlopen(f"http://{node.host}:{node.port}/metrics", timeout=5) as response:
                metrics = parse_metrics(response.read().decode())
            for index, key in enumerate(series):
                totals[index] += metrics.get(key, 0.0)
        return tuple(totals)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline_s = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_nodes(
    root: Path, n: int, *, instant_builds: bool, profile_dir: Path | None = None, protocol: dict | None = None,
    edit: Callable[[dict], None] | None = None,
) -> NodeProcesses:
    """Write a network of `n` nodes under `root` and start every node; returns once all answer GET /status.

    With `profile_dir`, each node runs under cProfile, timed by its CPU clock (`bench.cpuprofile`), and writes node-<id>.prof there when it stops.
    `protocol`: settings of the network YAML's protocol section. `edit` changes the YAML's
    mapping before the nodes read it (owners, for a bench of changes).
    """
    config_path = write_network(root, n=n, f=faults_tolerated(n), allow_byzantine=instant_builds, protocol=protocol)
    if edit is not None:
        data = yaml.safe_load(config_path.read_text())
        edit(data)
        config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    (root / "log").mkdir(exist_ok=True)
    extra = ["--instant-builds"] if instant_builds else []
    processes = {}
    nodes = NodeProcesses(config, processes, root)
    try:
        for node in config.nodes:
            profiler = [] if profile_dir is None else [str(REPO_ROOT / "bench" / "cpuprofile.py"),
                                                       str(profile_dir / f"node-{node.id}.prof")]
            nodes.commands[node.id] = [sys.executable, *profiler, str(REPO_ROOT / "node" / "index.py"),
                                       "--config", str(config_path), "--id", str(node.id), *extra]
            with open(root / "log" / f"node-{node.id}.stdout", "wb") as stdout:
                processes[node.id] = subprocess.Popen(
                    nodes.commands[node.id], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                )
        _wait_until_up(nodes, root)
    except BaseException:
        nodes.stop()
        raise
    return nodes


def _wait_until_up(nodes: NodeProcesses, root: Path, only: list[int] | None = None) -> None:
    deadline_s = time.monotonic() + START_TIMEOUT_S
    pending = {node.id: f"http://{node.host}:{node.port}/status" for node in nodes.config.nodes
               if only is None or node.id in only}
    while pending:
        for node_id, url in list(pending.items()):
            if nodes.processes[node_id].poll() is not None:
                output = (root / "log" / f"node-{node_id}.stdout").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node {node_id} exited while starting:\n{output}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if json.load(response).get("id") == node_id:
                        del pending[node_id]
            except (OSError, ValueError):
                pass
        if pending:
            if time.monotonic() > deadline_s:
                raise RuntimeError(f"nodes {sorted(pending)} did not answer GET /status in {START_TIMEOUT_S:g} s")
            time.sleep(0.1)


@asynccontextmanager
async def client_of(
    config: NetworkConfig, name: str = "client", *, follow_links: bool = True, data_dir: Path | None = None
) -> AsyncIterator[ClientService]:
    """The client's service, links up and records open, for the network's configured client.
    Without `follow_links` the client ignores a link going down (`RequestCore.on_down`) and
    reaches all nodes only by retransmitting, as it did before it followed its links.
    `data_dir`: where its records live, for a second process of the same client."""
    auth = client_authenticator(config, name)
    records = BuildRecords(records_path(data_dir or config.data_dir, name))
    try:
        async with aiohttp.ClientSession() as session:
            links = NodeLinks(session, config.nodes)
            service = ClientService(config, name, auth, records, links, ClientOptions(follow_links=follow_links))
            service.start()
            try:
                yield service
            finally:
                await service.close()
    finally:
        records.close()


async def submit_accepted(service: ClientService) -> tuple[float, Verdict]:
    """Seconds from signing a request to its accepted verdict; raises if it was not accepted."""
    started_s = time.perf_counter()
    verdict = await service.verbs.submit.wait(OPERATION)
    elapsed_s = time.perf_counter() - started_s
    if not isinstance(verdict.outcome, Accepted):
        raise RuntimeError(f"request {verdict.build_id} was not accepted: replies from "
                           f"{[reply.sender for reply in verdict.replies]}")
    return elapsed_s, verdict


async def settle(service: ClientService, requests: int = 3) -> None:
    """Send a few requests so that every link is up and every node has warmed its code paths."""
    for _ in range(requests):
        await submit_accepted(service)

