"""Fixtures of the action runner's tests: the client's fake nodes (tests/client/fake_nodes.py),
whose client lists the runner `RUNNER`, so that a runner reports to a real client app. The
runner at work on four real nodes is tests/e2e/test_end_to_end_actions.py."""

import pytest

from tests.client.fake_nodes import N, FakeCluster, configure


@pytest.fixture
async def cluster(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    servers = [await aiohttp_server(cluster.app(i)) for i in range(N)]
    configure(cluster, [server.port for server in servers], tmp_path, {"example": str(tmp_path / "repo")})
    return cluster
