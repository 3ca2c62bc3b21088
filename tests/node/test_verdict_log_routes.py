"""The verdict log on four real nodes (docs/verdict-log.md): a certified build is provably in a
head co-signed by 2f+1 of them, fetched from any one node; a later head extends it; the monitor
sees one history, and names a node that serves a head the others did not sign."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web

from client.logmonitor import Monitor
from client.logproofs import check_head
from client.verify import verify
from harness.network import write_network
from pbft.build import Operation
from pbft.messages import Request, decode, encode, signed
from shared.config import load_config
from shared.crypto import load_private_key, sign_bytes
from pbft.encoding import canonical
from tests.support.node_network import Network


@pytest.fixture
async def network(tmp_path):
    config = load_config(write_network(tmp_path, protocol={"view_change_timeout_s": 2.0}))
    net = Network(config, set())
    for node_id in range(config.n):
        await net.start(node_id)
    yield net
    for node_id in list(net.runners):
        await net.stop(node_id)


async def get(session: aiohttp.ClientSession, net: Network, node_id: int, path: str) -> tuple[int, dict]:
    async with session.get(f"http://127.0.0.1:{net.config.node(node_id).port}{path}") as response:
        return response.status, await response.json()


async def head_of_at_least(session, net: Network, node_id: int, size: int, timeout_s: float = 60.0) -> dict:
    """Node `node_id`'s co-signed head once it holds `size` verdicts or more (the batch that logs
    a verdict comes about a second after it is certified, and is a checkpoint)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, head = await get(session, net, node_id, "/log/head")
        if status == 200 and head["size"] >= size:
            return head
        assert asyncio.get_running_loop().time() < deadline, f"node {node_id}'s head: {status} {head}"
        await asyncio.sleep(0.2)


def certificate(net: Network, branch: str, timestamp: int, replies, agreed: dict) -> dict:
    request = signed(Request("client", timestamp, Operation("example", branch)), net.auth.sign)
    return {"version": 1, "request": encode(request), "replies": [encode(reply) for reply in replies[:2]],
            "result": agreed}


def write(tmp_path, name: str, value) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


async def test_a_verdict_is_in_a_co_signed_head_and_a_later_head_extends_it(network, tmp_path, capsys):
    net = network
    config_path = str(net.config.path)
    async with aiohttp.ClientSession() as session:
        agreed, replies = await net.submit(session, "master", 1, [0])
        first = await head_of_at_least(session, net, 0, 1)
        await net.submit(session, "feature", 2, [0])
        second = await head_of_at_least(session, net, 1, first["size"] + 1)  # from another node
        status, inclusion = await get(session, net, 2, f"/log/inclusion?client=client&timestamp=1&size={second['size']}")
        assert status == 200 and inclusion["position"] == 0, inclusion
        status, consistency = await get(session, net, 3, f"/log/consistency?first={first['size']}&second={second['size']}")
        assert status == 200, consistency
        for path, reason in (("/log/inclusion?client=../etc&timestamp=1", "client is a client's name"),
                             ("/log/inclusion?client=client&timestamp=x", "timestamp is a non-negative integer"),
                             ("/log/consistency?first=3&second=1", "first and second are the sizes of two trees,"
                                                                  " first <= second")):
            assert await get(session, net, 0, path) == (400, {"error": reason})
        status, missing = await get(session, net, 0, "/log/inclusion?client=client&timestamp=99")
        assert status == 404 and "not in this node's verdict log" in missing["error"]
        assert (await Monitor(net.config).poll(session)) == []
        # The batches that logged the verdicts hold no build, and are in the ledger all the same.
        last = (await get(session, net, 0, "/status"))[1]["last_executed"]
        answers = [await get(session, net, 0, f"/builds/{seq}") for seq in range(1, last + 1)]
        assert all(status == 200 for status, _ in answers) and sum(len(body["builds"]) for _, body in answers) == 2

    cert = write(tmp_path, "cert.json", certificate(net, "master", 1, replies, agreed))
    head_path, old_path = write(tmp_path, "head.json", second), write(tmp_path, "old.json", first)
    capsys.readouterr()
    assert verify([cert, "--config", config_path, "--head", head_path,
                   "--inclusion", write(tmp_path, "inclusion.json", inclusion)]) == 0
    assert "in the verdict log at position 0" in capsys.readouterr().out
    assert verify([head_path, "--config", config_path, "--extends", old_path,
                   "--consistency", write(tmp_path, "consistency.json", consistency)]) == 0
    assert f"extends the head of {first['size']} verdicts" in capsys.readouterr().out
    # Another position, or the other build's certificate, proves nothing.
    moved = write(tmp_path, "moved.json", {**inclusion, "position": 1})
    assert verify([cert, "--config", config_path, "--head", head_path, "--inclusion", moved]) == 1
    assert "is not at position 1" in capsys.readouterr().err
    # A head with one signature too few is not the network's.
    thin = write(tmp_path, "thin.json", {**second, "checkpoints": second["checkpoints"][:2]})
    assert verify([thin, "--config", config_path]) == 1
    assert "co-signed by 2 nodes, 3 needed" in capsys.readouterr().err


async def test_the_monitor_names_a_node_that_serves_a_head_the_others_did_not_sign(network, tmp_path):
    net = network
    async with aiohttp.ClientSession() as session:
        await net.submit(session, "master", 1, [0])
        head = await head_of_at_least(session, net, 0, 1)
    # Node 3 turns: it serves the same checkpoints, its own re-signed for a history of its own.
    await net.stop(3)
    key = load_private_key(net.config.node_key_path(3))
    forged = []
    for wire in head["checkpoints"]:
        checkpoint = decode(wire)
        if checkpoint.sender == 3:
            checkpoint = signed(replace(checkpoint, log_root="ab" * 32), lambda payload: sign_bytes(key, canonical(payload)))
        forged.append(encode(checkpoint))
    served = {**head, "root": "ab" * 32, "checkpoints": forged}

    async def serve_head(request):
        return web.json_response(served)

    app = web.Application()
    app.router.add_get("/log/head", serve_head)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", net.config.node(3).port).start()
    try:
        async with aiohttp.ClientSession() as session:
            problems = await Monitor(net.config).poll(session)
    finally:
        await runner.cleanup()
    assert len(problems) == 1 and problems[0].startswith("node 3 serves a head that is not the network's: node "), problems
    assert check_head(head, net.config).size == head["size"]  # the others' head stands
