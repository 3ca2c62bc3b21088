"""Peer links over real aiohttp on loopback: heartbeats answered, hang-ups noticed, reconnects counted."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from node.peers import PeerLink
from node.server import make_app
from pbft.config import load_config
from tests.network import write_network
from tests.test_node_integration import fake_build

HEARTBEAT_S = 0.25
IDLE_S = 8 * HEARTBEAT_S


@pytest.fixture
async def nodes(tmp_path):
    config = load_config(write_network(tmp_path))
    runners = []
    for node in config.nodes:
        runner = web.AppRunner(make_app(config, node.id, build=fake_build, heartbeat_s=HEARTBEAT_S))
        await runner.setup()
        await web.TCPSite(runner, node.host, node.port).start()
        runners.append(runner)
    yield config
    for runner in runners:
        await runner.cleanup()


async def statuses(session, config) -> list[dict]:
    answers = []
    for node in config.nodes:
        async with session.get(f"http://127.0.0.1:{node.port}/status") as response:
            answers.append(await response.json())
    return answers


def all_links_up(answers) -> bool:
    return all(link["connected"] for status in answers for link in status["links"].values())


async def test_idle_links_stay_up_across_many_heartbeats(nodes):
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(5):
            while not all_links_up(await statuses(session, nodes)):
                await asyncio.sleep(0.05)

        # Nothing is sent; only the heartbeats of both ends cross the links.
        await asyncio.sleep(IDLE_S)

        answers = await statuses(session, nodes)
    for status in answers:
        others = {str(node.id) for node in nodes.nodes if node.id != status["id"]}
        assert status["links"] == {peer: {"connected": True, "reconnects": 0} for peer in others}
        # The far end of an unread link times out its PING and counts the frame error.
        assert "peer_frame_error" not in status["dropped"]


async def test_a_link_whose_peer_hangs_up_reconnects_at_once_and_sends_what_was_queued(aiohttp_server):
    connections: list[list[str]] = []

    async def peer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        frames: list[str] = []
        connections.append(frames)
        if len(connections) == 1:
            await ws.close()
            return ws
        async for frame in ws:
            frames.append(frame.data)
        return ws

    app = web.Application()
    app.router.add_get("/peer", peer)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        # The default heartbeat is far longer than this test: only reading notices the hang-up.
        link = PeerLink(1, str(server.make_url("/peer")), session)
        link.start()
        try:
            async with asyncio.timeout(2):
                while link.connections < 2 or not link.connected:
                    await asyncio.sleep(0.01)
            assert link.status() == {"connected": True, "reconnects": 1}
            link.send("frame after the hang-up")
            async with asyncio.timeout(2):
                while connections[1] != ["frame after the hang-up"]:
                    await asyncio.sleep(0.01)
        finally:
            await link.close()
    assert not link.connected
