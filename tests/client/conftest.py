"""Fixtures of the client tests: the fake nodes with a client config, the client app, a status API,
a webhook receiver and a mail server."""

import pytest
from aiohttp import web

from harness.network import free_port
from tests.client.fake_nodes import FakeCluster, N, configure, start_client
from tests.client.hook_receiver import HookReceiver
from tests.client.mail_server import MailServer
from tests.client.route_callers import guarded_client
from tests.client.status_api import StatusServer


@pytest.fixture
async def cluster(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    servers = [await aiohttp_server(cluster.app(i)) for i in range(N)]
    configure(cluster, [server.port for server in servers], tmp_path,
              {"example": str(tmp_path / "repo"), "other": str(tmp_path)})
    return cluster


@pytest.fixture
async def client(cluster, aiohttp_client):
    return await start_client(aiohttp_client, cluster)


@pytest.fixture
async def guarded(cluster, aiohttp_client):
    """The client of `guarded_client`: its machine token, people signing in, one admin."""
    return await guarded_client(cluster, aiohttp_client)


@pytest.fixture
async def status_server():
    server = StatusServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.base_url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def hook_receiver():
    """A webhook receiver with its port chosen and not yet listening: the test starts it."""
    receiver = HookReceiver()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def mail_server():
    server = await MailServer().start()
    yield server
    await server.stop()
