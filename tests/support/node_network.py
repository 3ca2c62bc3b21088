"""Four real nodes on loopback (aiohttp, WebSockets, Ed25519) whose builds are faked: the node
tests' network, and the one the provenance tests sign with."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from builder import BuildOrder, BuildResult
from node.byzantine import HONEST, Lie
from node.server import make_app
from pbft.build import Operation
from pbft.messages import Reply, Request, decode, encode, signed
from pbft.quorum import reply_quorum, winner
from shared.crypto import Ed25519Authenticator, load_private_key, parse_public_key
from tests.support.handshake import say_hello


async def fake_build(order: BuildOrder) -> BuildResult:
    await asyncio.sleep(0)
    if order.branch == "master":
        return BuildResult("success", 0, "a" * 40)
    return BuildResult("failure", 3, "b" * 40)


class Network:
    def __init__(self, config, tampered: set[int], build=fake_build) -> None:
        """`build(order)` runs each build on every node (`builder.BuildOrder`), fake_build by default."""
        self.config = config
        self.tampered = tampered
        self.build = build
        self.runners: dict[int, web.AppRunner] = {}
        client_key = load_private_key(config.client_key_path("client"))
        self.auth = Ed25519Authenticator(
            client_key,
            {node.id: parse_public_key(node.public_key) for node in config.nodes},
            {},
        )

    async def start(self, node_id: int, config=None) -> None:
        """Start node `node_id` with the network's configuration, or with `config` (another
        network document at the same addresses)."""
        app = make_app(config or self.config, node_id, build=self.build,
                       behaviour=Lie() if node_id in self.tampered else HONEST)
        runner = web.AppRunner(app)
        await runner.setup()
        node = self.config.node(node_id)
        await web.TCPSite(runner, node.host, node.port).start()
        self.runners[node_id] = runner

    async def stop(self, node_id: int) -> None:
        await self.runners.pop(node_id).cleanup()

    async def submit(
        self, session, branch: str, timestamp: int, targets, repository: str = "example"
    ) -> tuple[dict, list[Reply]]:
        """Send a signed request to `targets` and wait for f+1 matching replies."""
        return await self.order(session, Operation(repository, branch), timestamp, targets)

    async def order(self, session, operation: Operation, timestamp: int, targets) -> tuple[dict, list[Reply]]:
        """`submit` of any operation (a change of the network document, a cancel)."""
        request = signed(Request("client", timestamp, operation), self.auth.sign)
        sockets = {
            node_id: await session.ws_connect(f"http://127.0.0.1:{self.config.node(node_id).port}/client")
            for node_id in self.runners
        }
        replies: dict[int, Reply] = {}
        try:
            for node_id, ws in sockets.items():
                await say_hello(ws, "client", node_id, self.auth.sign)
            for node_id in targets:
                await sockets[node_id].send_str(json.dumps(encode(request)))

            async def collect(ws):
                async for frame in ws:
                    reply = decode(json.loads(frame.data))
                    if not isinstance(reply, Reply):
                        continue  # the node's CURRENT-VIEW, or a BUILD-STATE
                    assert self.auth.verify_node(reply.sender, reply.payload(), reply.sig)
                    if reply.timestamp == timestamp:
                        replies.setdefault(reply.sender, reply)
                    votes = {s: r.result.agreed_key() for s, r in replies.items()}
                    if winner(votes, reply_quorum(self.config.f)):
                        return
            done, pending = await asyncio.wait([asyncio.create_task(collect(ws)) for ws in sockets.values()],
                                               timeout=10, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            for ws in sockets.values():
                await ws.close()
        votes = {s: r.result.agreed_key() for s, r in replies.items()}
        found = winner(votes, reply_quorum(self.config.f))
        assert found is not None, f"no quorum; replies: {replies}"
        return replies[found[1][0]].result.agreed(), list(replies.values())
