"""The verdict log's kept subtrees (node/logtree.py): proofs from them are RFC 9162's proofs over
the leaves, whatever part of the log is grown; they read a few rows, not every leaf; a store
from before the tree existed is grown in the background while the routes say why they wait; a
node serves a proof of a long log without hashing it."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from harness.network import write_network
from node.logtree import GROW_LEAVES, MAX_TAIL, TREE_LEVEL, TreeBehind
from node.logroutes import GROW_INTERVAL_S, retry_after_s
from node.server import make_app
from node.storage import NodeStore
from pbft.merkle import consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion
from shared.config import load_config
from tests.support.node_network import fake_build


def leaf_data(position: int) -> bytes:
    return b'{"client":"client","result":{"status":"success"},"seq":%d,"timestamp":%d}' % (position, position)


def write_leaves(path, positions) -> None:
    """Leaves as the store's Execute effects write them, through a connection of their own."""
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO verdict_log (position, client, timestamp, seq, leaf) VALUES (?, ?, ?, ?, ?)",
                       [(position, "client", position, position, leaf_data(position)) for position in positions])
    db.close()


@pytest.fixture
def store(tmp_path):
    opened = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    yield opened
    opened.close()


def test_proofs_are_the_rfcs_proofs_however_far_the_tree_is_grown(store):
    leaves = [leaf_hash(leaf_data(position)) for position in range(300)]
    write_leaves(store.path, range(300))
    log = store.verdict_log
    for limit in (0, 16, 40, 64, 300):  # none, one block, a slice that ends inside a block, more
        if limit:
            log.grow(limit)
        assert log.grown % (1 << TREE_LEVEL) == 0
        for size in (1, 2, 15, 16, 17, 33, 64, 129, 255, 256, 300):
            for index in {0, min(1, size - 1), size // 2, size - 1}:
                assert log.inclusion(size, index) == inclusion_proof(leaves[:size], index), (log.grown, size, index)
            for old in {1, size // 3, size - 1} - {0}:
                assert log.consistency(size, old) == consistency_proof(leaves[:size], old), (log.grown, size, old)
    assert log.grown == 288  # whole blocks of 16 only: the last 12 leaves wait for theirs


def test_a_proof_reads_a_few_rows_not_every_leaf(store):
    size = (1 << 12) + 5
    write_leaves(store.path, range(size))
    log = store.verdict_log
    while log.grow() < size - size % (1 << TREE_LEVEL):
        pass
    leaves = [leaf_hash(leaf_data(position)) for position in range(size)]
    head = root(leaves)
    # Every leaf but the first block and the last five goes: a proof that needed them would fail.
    db = sqlite3.connect(store.path)
    with db:
        db.execute("DELETE FROM verdict_log WHERE position >= 16 AND position < ?", (size - 5,))
    db.close()
    proof = log.inclusion(size, 3)
    assert verify_inclusion(leaves[3], 3, size, proof, head)
    assert verify_consistency(8, root(leaves[:8]), size, head, log.consistency(size, 8))
    assert verify_inclusion(leaves[size - 1], size - 1, size, log.inclusion(size, size - 1), head)
    with pytest.raises(LookupError):
        log.inclusion(20, 17)  # a tree that does end inside the deleted leaves does need them


def test_a_store_from_before_the_tree_is_grown_and_proofs_wait_for_it(tmp_path):
    path = tmp_path / "node.sqlite"
    count = MAX_TAIL + 100
    NodeStore(path, n=4, f=1).close()
    write_leaves(path, range(count))
    db = sqlite3.connect(path)
    with db:  # as a store written before the tree existed: leaves and no subtree
        db.execute("DROP TABLE verdict_log_tree")
    db.close()
    store = NodeStore(path, n=4, f=1)
    try:
        log = store.verdict_log
        assert log.grown == 0
        with pytest.raises(TreeBehind, match=f"0 of {count} verdicts"):
            log.inclusion(count, 0)
        assert log.grow() == GROW_LEAVES
    finally:
        store.close()
    reopened = NodeStore(path, n=4, f=1)  # how far it got is kept with the subtrees
    try:
        assert reopened.verdict_log.grown == GROW_LEAVES
        leaves = [leaf_hash(leaf_data(position)) for position in range(count)]
        assert reopened.verdict_log.inclusion(count, count - 1) == inclusion_proof(leaves, count - 1)
    finally:
        reopened.close()


def test_growing_stops_at_a_missing_leaf(store):
    write_leaves(store.path, [*range(40), *range(50, 100)])
    assert store.verdict_log.grow() == 32
    assert store.verdict_log.grow() == 32


def test_a_wait_for_the_tree_is_told_in_whole_seconds_from_the_leaves_missing():
    per_second = int(GROW_LEAVES / GROW_INTERVAL_S)
    assert retry_after_s(TreeBehind(0, MAX_TAIL + 1)) == 1
    assert retry_after_s(TreeBehind(GROW_LEAVES, GROW_LEAVES + MAX_TAIL + 3 * per_second)) == 3
    assert retry_after_s(TreeBehind(GROW_LEAVES, GROW_LEAVES + MAX_TAIL + 3 * per_second + 1)) == 4


async def test_a_node_serves_a_long_logs_consistency_once_its_tree_is_grown(tmp_path, aiohttp_client):
    config = load_config(write_network(tmp_path), node_id=0, read_secrets=False)
    size = 2 * GROW_LEAVES + 7
    NodeStore(config.data_dir / "node-0" / "node.sqlite", n=config.n, f=config.f).close()
    write_leaves(config.data_dir / "node-0" / "node.sqlite", range(size))
    node = await aiohttp_client(make_app(config, 0, build=fake_build))
    leaves = [leaf_hash(leaf_data(position)) for position in range(size)]
    async with asyncio.timeout(30):
        while True:
            response = await node.get("/log/consistency", params={"first": "100", "second": str(size)})
            body = await response.json()
            if response.status == 200:
                break
            assert response.status == 503 and "still indexing its verdict log" in body["error"], body
            assert 1 <= int(response.headers["Retry-After"]) <= retry_after_s(TreeBehind(0, size)), response.headers
            await asyncio.sleep(0.05)
    proof = [bytes.fromhex(node_hash) for node_hash in body["proof"]]
    assert verify_consistency(100, root(leaves[:100]), size, root(leaves), proof)
    response = await node.get("/log/consistency", params={"first": "100", "second": str(size + 1)})
    assert response.status == 404 and f"holds {size} verdicts" in (await response.json())["error"]
