"""A node whose data directory fills up stops instead of going on with a ledger it cannot write.

Four real node processes on loopback with the test-only instant builds (no
Docker); node 3's data directory is a small tmpfs the test mounts. While
requests keep arriving the test fills it: node 3 must exit at its next save
(exit code 70) with one line in its log saying what to do, and the other three
go on. With the space freed and node 3 restarted, it catches up, and every
sequence number holds the same batch and verdict on all four nodes: no hole
where its writes failed. The network is that of tests/test_long_lived_nodes.py,
with a checkpoint every 16 batches: node 3 rejoins partly by state transfer.
Needs root (it mounts a tmpfs); it unmounts it, and kills every node it
started, whatever happens. Instant builds start no container.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from client.app import client_authenticator
from node.storage import NodeStore
from pbft.build import Operation
from pbft.messages import Reply, Request, decode, encode, signed
from tests.node.real_nodes import Nodes, order_requests
from tests.support.handshake import say_hello
from tests.support.node_processes import wait_until

pytestmark = pytest.mark.slow

FULL = 3  # a backup: node 0 stays the primary, and the other three are a quorum
TMPFS_SIZE = "16m"
STREAM = 150  # requests sent one at a time while the disk fills
STREAM_INTERVAL_S = 0.02


def mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


@pytest.fixture
def nodes(tmp_path):
    """Nodes whose node 3 keeps its data on a tmpfs of TMPFS_SIZE; afterwards every node started is
    killed and the tmpfs unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    started = Nodes(tmp_path)
    started.full_dir = started.config.data_dir / f"node-{FULL}"
    started.full_dir.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(started.full_dir)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield started
    finally:
        started.kill_left_running()
        subprocess.run(["umount", str(started.full_dir)], check=True)
        assert not mounted(started.full_dir)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its file system has no byte left; return its path."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    chunk = b"\0" * (1 << 20)
    try:
        while True:
            os.write(descriptor, chunk)  # short at the end, then ENOSPC
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(descriptor)
    return filler


async def stream_requests(config, timestamps: range, interval_s: float) -> None:
    """Send the requests of `timestamps` to the primary one every `interval_s`, then wait for its reply to each."""
    auth = client_authenticator(config, "client")
    primary = config.node(0)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://{primary.host}:{primary.port}/client") as ws:
            await say_hello(ws, "client", 0, auth.sign)
            answered: set[int] = set()

            async def receive() -> None:
                while len(answered) < len(timestamps):
                    frame = await asyncio.wait_for(ws.receive(), timeout=30)
                    reply = decode(json.loads(frame.data))
                    if not isinstance(reply, Reply):
                        continue  # the node's CURRENT-VIEW, or a BUILD-STATE
                    assert reply.result.status == "success", reply
                    answered.add(reply.timestamp)

            receiving = asyncio.create_task(receive())
            for timestamp in timestamps:
                request = signed(Request("client", timestamp, Operation("example", "master")), auth.sign)
                await ws.send_str(json.dumps(encode(request)))
                await asyncio.sleep(interval_s)
            await receiving


def build_at(nodes: Nodes, node_id: int, seq: int) -> tuple[int, dict]:
    """A node's GET /builds/{seq}: status and body."""
    node = nodes.config.node(node_id)
    try:
        with urllib.request.urlopen(f"http://{node.host}:{node.port}/builds/{seq}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def ledger_view(nodes: Nodes, node_id: int, last: int) -> dict[int, tuple]:
    """seq -> (status, [(client, timestamp, operation, verdict)]) for 1..last, as GET /builds/{seq} says."""
    view = {}
    for seq in range(1, last + 1):
        status, body = build_at(nodes, node_id, seq)
        builds = [(b["client"], b["timestamp"], b["operation"], b["verdict"]) for b in body.get("builds", ())]
        view[seq] = (status, builds)
    return view


def test_a_node_whose_disk_fills_up_stops_and_after_a_restart_its_ledger_has_no_hole(nodes):
    for node_id in range(4):
        nodes.start(node_id)
    asyncio.run(order_requests(nodes.config, 10, first_timestamp=1))
    wait_until(lambda: nodes.status(FULL)["last_executed"] >= nodes.status(0)["last_executed"],
               timeout_s=10, what=f"node {FULL} to execute what the primary did")

    full = nodes.processes[FULL]
    with ThreadPoolExecutor(max_workers=1) as pool:
        stream = pool.submit(asyncio.run, stream_requests(nodes.config, range(100, 100 + STREAM), STREAM_INTERVAL_S))
        time.sleep(0.5)  # requests are arriving
        filler = fill(nodes.full_dir)
        returncode = full.wait(timeout=20)
        stream.result(timeout=60)  # the other three answer every request
    nodes.processes.pop(FULL)
    assert returncode == 70, returncode

    log = (nodes.logs / f"node-{FULL}.log").read_text()
    lines = [line for line in log.splitlines() if "store cannot write" in line]
    assert len(lines) == 1, lines
    assert f"node={FULL} store cannot write (OperationalError: database or disk is full): stopping; " \
           f"free space in {nodes.full_dir} and restart the node" in lines[0], lines[0]
    assert "CRITICAL" in lines[0] and "Traceback" not in log, log[-3000:]

    filler.unlink()
    nodes.start(FULL)
    asyncio.run(order_requests(nodes.config, 10, first_timestamp=1_000))
    last = nodes.idle()  # node 3 caught up, and the last verdicts are logged

    # Every seq holds the same batch on all four, and the same verdict once node 3 has fetched the votes.
    views = wait_until(
        lambda: (views := [ledger_view(nodes, node_id, last) for node_id in range(4)])
        and all(view == views[0] for view in views[1:]) and views,
        timeout_s=20, what="the four nodes' GET /builds/{seq} to agree",
    )
    holes = [seq for seq, (status, _builds) in views[FULL].items() if status != 200]
    assert holes == [], holes
    assert sum(len(builds) for _status, builds in views[0].values()) == 10 + STREAM + 10
    assert all(build[3]["state"] == "certified" for _status, builds in views[0].values() for build in builds)

    nodes.stop_all()
    ledgers = []
    for node_id in range(4):
        store = NodeStore(nodes.store_path(node_id), n=4, f=1)
        ledgers.append(store.ledger())
        store.close()
    assert len(ledgers[0]) == last and all(ledger == ledgers[0] for ledger in ledgers[1:])
