"""Links over real aiohttp on loopback.

Peer links: heartbeats answered, hang-ups noticed, reconnects counted.
Client links: a HELLO is good only over the challenge the node issued on that
connection, once.
"""

from __future__ import annotations

import asyncio
import logging
import json

import aiohttp
import pytest
from aiohttp import web

from client.links import NodeLink
from harness.network import write_network
from node import peers
from node.peers import PeerLink
from node.server import make_app
from pbft.build import Operation
from pbft.handshake import Challenge, Hello
from pbft.messages import CurrentView, MessageError, Reply, Request, decode, encode, signed
from shared.config import NodeConfig, load_config
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key
from tests.support.handshake import say_hello
from tests.support.node_network import fake_build

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


async def statuses(session, config, skip: list | None = None) -> list[dict]:
    """Each node's /status; with `skip`, None for a node that does not answer."""
    answers = []
    for node in config.nodes:
        try:
            async with session.get(f"http://127.0.0.1:{node.port}/status") as response:
                answers.append(await response.json())
        except aiohttp.ClientConnectionError:
            if skip is None:
                raise
            answers.append(None)
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
        assert status["links"] == {peer: {"connected": True, "reconnects": 0, "dropped": 0, "expired": 0} for peer in others}
        # The far end of an unread link times out its PING and counts the frame error.
        assert "peer_frame_error" not in status["dropped"]


async def serve_peer(aiohttp_server, handler) -> str:
    """A stand-in peer at /peer; returns its URL."""
    app = web.Application()
    app.router.add_get("/peer", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/peer"))


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

    url = await serve_peer(aiohttp_server, peer)
    async with aiohttp.ClientSession() as session:
        # The default heartbeat is far longer than this test: only reading notices the hang-up.
        link = PeerLink(1, url, session)
        link.start()
        try:
            async with asyncio.timeout(2):
                while link.connections < 2 or not link.connected:
                    await asyncio.sleep(0.01)
            assert link.status() == {"connected": True, "reconnects": 1, "dropped": 0, "expired": 0}
            link.send("frame after the hang-up")
            async with asyncio.timeout(2):
                while connections[1] != ["frame after the hang-up"]:
                    await asyncio.sleep(0.01)
        finally:
            await link.close()
    assert not link.connected


def recording_peer(received: list[str]):
    """A peer's /peer route that keeps each message's text, in order."""

    async def peer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for frame in ws:
            received.append(frame.data)
        return ws

    return peer


async def test_frames_that_waited_too_long_for_their_peer_are_dropped_not_delivered(aiohttp_server):
    received: list[str] = []

    url = await serve_peer(aiohttp_server, recording_peer(received))
    now = [0.0]
    async with aiohttp.ClientSession() as session:
        link = PeerLink(1, url, session, max_age_s=5.0, clock=lambda: now[0])
        for index in range(3):
            link.send(f"old {index}")  # queued while the peer was down
        now[0] = 60.0  # it comes back a minute later
        link.send("fresh")
        link.start()
        try:
            async with asyncio.timeout(2):
                while received != ["fresh"]:
                    await asyncio.sleep(0.01)
        finally:
            await link.close()
    assert link.status()["expired"] == 3


async def test_frames_queued_together_go_out_as_one_message_a_frame_per_line_within_its_bounds(aiohttp_server, monkeypatch):
    monkeypatch.setattr(peers, "MAX_MESSAGE_CHARS", 30)
    received: list[str] = []

    url = await serve_peer(aiohttp_server, recording_peer(received))
    async with aiohttp.ClientSession() as session:
        link = PeerLink(1, url, session)
        for index in range(peers.MAX_FRAMES_PER_MESSAGE + 1):
            link.send(str(index))  # queued while the link connects
        link.send("x" * 20)  # the message it follows would pass 30 characters: the next one starts with it
        link.send("y" * 40)  # longer than a message alone: it goes alone
        link.start()
        try:
            async with asyncio.timeout(2):
                while sum(message.count("\n") + 1 for message in received) < peers.MAX_FRAMES_PER_MESSAGE + 3:
                    await asyncio.sleep(0.01)
        finally:
            await link.close()
    frames = [frame for message in received for frame in message.split("\n")]
    assert frames == [str(index) for index in range(peers.MAX_FRAMES_PER_MESSAGE + 1)] + ["x" * 20, "y" * 40]
    assert all(len(message) < 30 or "\n" not in message for message in received)
    assert max(message.count("\n") + 1 for message in received) <= peers.MAX_FRAMES_PER_MESSAGE
    assert len(received) < len(frames) / 4  # together, not one by one


def client_auth(config) -> Ed25519Authenticator:
    return Ed25519Authenticator(
        load_private_key(config.client_key_path("client")),
        {node.id: parse_public_key(node.public_key) for node in config.nodes},
        {},
    )


async def dropped_by(session, config, node_id) -> dict:
    async with session.get(f"http://127.0.0.1:{config.node(node_id).port}/status") as response:
        return (await response.json())["dropped"]


async def next_reply(ws) -> Reply:
    """The next REPLY on a client's connection; what else a node says first (its view) is skipped."""
    while not isinstance(message := decode(json.loads((await asyncio.wait_for(ws.receive(), 5)).data)), Reply):
        assert isinstance(message, CurrentView), message
    return message


async def test_a_hello_replayed_on_another_connection_subscribes_nobody(nodes):
    auth = client_auth(nodes)
    url = f"http://127.0.0.1:{nodes.node(1).port}/client"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as client, session.ws_connect(url) as eavesdropper:
            captured = await say_hello(client, "client", 1, auth.sign)
            await asyncio.wait_for(eavesdropper.receive(), 5)  # its own challenge, which the captured HELLO does not sign
            await eavesdropper.send_str(json.dumps(encode(captured)))

            # The request reaches the primary on its own connection; node 1 answers its subscribers.
            async with session.ws_connect(f"http://127.0.0.1:{nodes.node(0).port}/client") as to_primary:
                await asyncio.wait_for(to_primary.receive(), 5)
                request = signed(Request("client", 1, Operation("example", "master")), auth.sign)
                await to_primary.send_str(json.dumps(encode(request)))
                reply = await next_reply(client)
            assert reply.sender == 1 and reply.result.status == "success"
            # Nothing reaches it: its wait times out, or the node closes the connection that never
            # said a valid HELLO (a PONG then finds it closing). It must never get a message.
            # Not receive(timeout=...): aiohttp restarts that timeout at every PING it answers.
            try:
                message = await asyncio.wait_for(eavesdropper.receive(), 2 * HEARTBEAT_S)
            except (asyncio.TimeoutError, aiohttp.ClientConnectionResetError):
                message = None
            closed = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
            assert message is None or message.type in closed, message
        assert await dropped_by(session, nodes, 1) == {"hello_wrong_challenge": 1}


async def test_a_connection_takes_one_hello_only(nodes):
    auth = client_auth(nodes)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{nodes.node(2).port}/client") as ws:
            hello = await say_hello(ws, "client", 2, auth.sign)
            await ws.send_str(json.dumps(encode(hello)))
            for _ in range(100):
                if await dropped_by(session, nodes, 2):
                    break
                await asyncio.sleep(0.02)
        assert await dropped_by(session, nodes, 2) == {"hello_challenge_used": 1}


async def test_a_hello_with_a_malformed_challenge_is_dropped_as_malformed(nodes):
    auth = client_auth(nodes)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{nodes.node(3).port}/client") as ws:
            challenge = decode(json.loads((await asyncio.wait_for(ws.receive(), 5)).data)).challenge
            wire = encode(signed(Hello("client", 3, challenge), auth.sign))
            await ws.send_str(json.dumps({**wire, "challenge": challenge.upper()}))
            await ws.send_str(json.dumps({**wire, "challenge": None}))
            for _ in range(100):
                if sum((await dropped_by(session, nodes, 3)).values()) == 2:
                    break
                await asyncio.sleep(0.02)
        assert await dropped_by(session, nodes, 3) == {"malformed_frame": 2}


@pytest.mark.parametrize("challenge", [None, 7, "", "ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, "ab" * 31 + "a\n"])
def test_the_decoder_refuses_a_challenge_that_is_not_64_lowercase_hex_digits(challenge):
    with pytest.raises(MessageError):
        decode({"type": "challenge", "challenge": challenge})
    with pytest.raises(MessageError):
        decode({"type": "hello", "client": "client", "node": 0, "challenge": challenge, "sig": "ab" * 64})
    assert decode({"type": "challenge", "challenge": "0f" * 32}) == Challenge("0f" * 32)


async def test_the_client_says_hello_only_over_a_challenge(aiohttp_server):
    first_frames = ["not json", json.dumps({"type": "hello"}), json.dumps(encode(Challenge("5a" * 32)))]
    opened: list[str] = []

    async def node(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        opened.append(first_frames[min(len(opened), 2)])
        await ws.send_str(opened[-1])
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/client", node)
    server = await aiohttp_server(app)
    said: list[tuple[int, str]] = []

    async def on_connect(node_id: int, challenge: str) -> None:
        said.append((node_id, challenge))

    async with aiohttp.ClientSession() as session:
        link = NodeLink(session, NodeConfig(4, "127.0.0.1", server.port, "00" * 32))
        task = asyncio.create_task(link.run(lambda node_id, text: None, on_connect))
        try:
            async with asyncio.timeout(5):
                while not said:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    # Two connections opened with something else: no HELLO on them, and the link tried again.
    assert opened == first_frames
    assert said == [(4, "5a" * 32)]


async def test_the_link_says_when_a_connection_that_was_up_goes_down(aiohttp_server):
    # The node opens with its challenge and, the first time, hangs up: the client hears of it
    # at once (a killed primary's requests then go to every node). A refused one is no news.
    connections: list[int] = []

    async def node(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connections.append(1)
        await ws.send_str(json.dumps(encode(Challenge("5a" * 32))))
        if len(connections) > 1:
            async for _ in ws:
                pass
        return ws

    app = web.Application()
    app.router.add_get("/client", node)
    server = await aiohttp_server(app)
    downs: list[int] = []

    async def on_connect(node_id: int, challenge: str) -> None:
        pass

    async with aiohttp.ClientSession() as session:
        link = NodeLink(session, NodeConfig(4, "127.0.0.1", server.port, "00" * 32))
        task = asyncio.create_task(link.run(lambda node_id, text: None, on_connect, downs.append))
        try:
            async with asyncio.timeout(5):
                while len(connections) < 2:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert downs[:1] == [4]


async def test_a_peer_that_vanishes_with_a_ping_unanswered_is_logged_at_info_without_a_traceback(nodes, caplog):
    """A stopped peer (SIGSTOP, a paused VM) resumes with PINGs queued and its connection
    already closed: answering them meets a closing transport. That is a routine hang-up,
    not a server error."""
    node = nodes.nodes[0]
    reader, writer = await asyncio.open_connection(node.host, node.port)
    writer.write(
        f"GET /peer HTTP/1.1\r\nHost: {node.host}:{node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    caplog.set_level(logging.INFO)
    # What a resumed peer's buffer holds: frames (masked, here "{}"), a PING, and the
    # end of the connection its far end gave up on. The node takes the frames in turn,
    # so the hang-up has closed the transport by the time it answers the PING.
    writer.write((bytes([0x81, 0x82]) + bytes(4) + b"{}") * 5 + bytes([0x89, 0x80]) + bytes(4))
    writer.close()
    async with asyncio.timeout(5):
        while not any("socket /peer from 127.0.0.1 gone" in record.getMessage() for record in caplog.records):
            await asyncio.sleep(0.05)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_link_cancelled_as_its_challenge_arrives_stops():
    """The client stops its links by cancelling them; one whose challenge arrives in the same
    turn of the loop must stop too (asyncio.wait_for on Python 3.11 returned the frame instead,
    and the link went on connecting, so the client never finished stopping). A real socket
    cannot be made to hit that turn, so this socket hands out the frame's future itself."""
    frame = asyncio.get_running_loop().create_future()

    class Socket:
        def receive(self) -> asyncio.Future:
            return frame

    link = NodeLink(None, NodeConfig(4, "127.0.0.1", 1, "00" * 32))
    waiting = asyncio.create_task(link._challenge(Socket()))
    await asyncio.sleep(0)  # now it waits for the frame
    frame.set_result(aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, json.dumps(encode(Challenge("5a" * 32))), None))
    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_peer_whose_server_stopped_is_unreachable_to_the_others_and_reachable_once_back(tmp_path):
    """`pbft.reach` fed by real links: node 0's server stops (its connections close, new ones
    are refused), the others' /status names it unreachable; started again, it is not."""
    config = load_config(write_network(tmp_path))
    runners = {}

    async def start(node):
        runner = web.AppRunner(make_app(config, node.id, build=fake_build, heartbeat_s=HEARTBEAT_S))
        await runner.setup()
        await web.TCPSite(runner, node.host, node.port).start()
        runners[node.id] = runner

    async def until(session, check):
        async with asyncio.timeout(10):
            while True:
                answers = [answer for answer in await statuses(session, config, skip=[]) if answer is not None]
                if check(answers):
                    return answers
                await asyncio.sleep(0.05)

    for node in config.nodes:
        await start(node)
    try:
        async with aiohttp.ClientSession() as session:
            answers = await until(session, all_links_up)
            assert [answer["unreachable"] for answer in answers] == [[]] * 4
            await runners.pop(0).cleanup()
            others = await until(session, lambda answers: all(answer["unreachable"] == [0] for answer in answers))
            assert [answer["id"] for answer in others] == [1, 2, 3]
            await start(config.nodes[0])
            await until(session, lambda answers: len(answers) == 4 and all_links_up(answers)
                        and all(answer["unreachable"] == [] for answer in answers))
    finally:
        for runner in runners.values():
            await runner.cleanup()


@pytest.mark.parametrize("protocol, period", [(None, peers.HEARTBEAT_S), ({"peer_heartbeat_s": 45}, 45.0)])
def test_a_node_pings_its_peers_at_the_period_its_configuration_gives(tmp_path, monkeypatch, protocol, period):
    """protocol.peer_heartbeat_s reaches every socket of the node (node/index.py): a network whose
    nodes may pause longer than 1.5 periods keeps its links instead of dropping what they carry."""
    from node import index as node_index
    from node.keys import HEARTBEAT

    served = []
    monkeypatch.setattr(node_index, "serve", lambda app, *args, **kwargs: served.append(app) or 0)
    path = write_network(tmp_path, allow_byzantine=True, protocol=protocol)  # for --instant-builds: no engine

    assert node_index.main(["--config", str(path), "--id", "0", "--instant-builds", "--log-file", "-"]) == 0
    assert [app[HEARTBEAT] for app in served] == [period]
