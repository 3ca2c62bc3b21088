"""Real node processes on loopback, with the test-only instant build executor: a node that
was down while 5,000 requests were ordered rejoins by chunked state transfer, and all four
SQLite ledgers agree afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.storage import NodeStore
from tests.support.node_processes import wait_until
from tests.node.real_nodes import Nodes, PROTOCOL, order_requests

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

REQUESTS = 5_000


@pytest.fixture
def nodes(tmp_path):
    started = Nodes(tmp_path)
    try:
        yield started
    finally:
        started.kill_left_running()


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
    last = nodes.idle()  # and the batches that log the last verdicts
    nodes.stop_all()

    ledgers = [NodeStore(nodes.store_path(node_id), n=4, f=1).ledger() for node_id in range(4)]
    assert len(ledgers[0]) == last >= primary["last_executed"]
    assert all(ledger == ledgers[0] for ledger in ledgers[1:])
    with sqlite3.connect(nodes.store_path(3)) as db:
        built = [seq for (seq,) in db.execute("SELECT seq FROM builds WHERE built = 1 AND timestamp >= 1000")]
        learnt = db.execute("SELECT count(*) FROM builds WHERE built = 0").fetchone()[0]
    # Nothing below the checkpoint it rejoined at was built again; all of it is on record as executed.
    assert all(seq > primary["low_watermark"] for seq in built), built[:10]
    assert learnt + len(built) >= REQUESTS
