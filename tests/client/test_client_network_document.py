"""The client follows the network document the order made: once f+1 nodes sign a digest other
than its own (at the handshake, or in replies), it fetches that document from one of them,
checks its digest, and runs it with its own settings. One node alone, or a node that serves a
document that does not match, moves nothing. Real loopback sockets, fake nodes with real
signatures."""

import asyncio
import json
import logging

import pytest
from aiohttp import web

from client.keys import LIVE_KEY
from pbft.networkchange import document_digest
from shared.networkdoc import agreed
from tests.client.fake_nodes import FakeCluster, post, serve_fake_nodes, start_client
from tests.shared.config_files import edit


class Documents:
    """What each fake node serves at GET /network/document."""

    def __init__(self) -> None:
        self.served: dict[int, dict] = {}

    def add_routes(self, app: web.Application, node_id: int) -> None:
        async def document(request: web.Request) -> web.Response:
            served = self.served.get(node_id)
            if served is None:
                return web.json_response({"error": "none"}, status=404)
            return web.json_response({"digest": document_digest(served), "changed_at": 7, "document": served})

        app.router.add_get("/network/document", document)


@pytest.fixture
async def nodes(aiohttp_server, tmp_path):
    cluster, documents = FakeCluster(), Documents()
    await serve_fake_nodes(aiohttp_server, cluster, documents.add_routes, tmp_path)
    return cluster, documents


def with_repository(cluster: FakeCluster, name: str) -> dict:
    document = agreed(cluster.config)
    return {**document, "repositories": [*document["repositories"], {"name": name, "url": "/srv/git/" + name}]}


async def until(condition, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_the_client_runs_a_document_f_plus_1_nodes_vouch_for(nodes, aiohttp_client):
    cluster, documents = nodes
    wanted = with_repository(cluster, "newrepo")
    digest = document_digest(wanted)
    documents.served = {0: {"forged": True}, 1: wanted, 2: wanted}  # node 0 serves a document that does not match
    cluster.networks = {0: digest, 1: digest}  # f+1 = 2 nodes sign it at the handshake
    client = await start_client(aiohttp_client, cluster)
    await until(lambda: _digest(client) == digest)
    status, answer = await post(client, {"branch": "main", "repository": "newrepo"})
    assert status == 200, answer
    network = await (await client.get("/network")).json()
    assert network["client"]["network"] == {"digest": digest, "foreign": {"2": cluster.config.digest,
                                                                          "3": cluster.config.digest}}


async def test_once_the_client_runs_a_document_each_nodes_last_word_is_compared_with_it(nodes, aiohttp_client):
    cluster, documents = nodes
    wanted = with_repository(cluster, "newrepo")
    digest = document_digest(wanted)
    documents.served = {0: wanted}
    cluster.networks = {0: digest, 1: digest, 2: digest}  # node 3 still runs the one the client started with
    client = await start_client(aiohttp_client, cluster)
    await until(lambda: _digest(client) == digest)
    # No node has said a word since: those that named the document the client now runs are not
    # foreign, and the one that named the document it ran before is.
    network = await (await client.get("/network")).json()
    assert network["client"]["network"] == {"digest": digest, "foreign": {"3": cluster.config.digest}}


async def test_one_node_alone_moves_nothing(nodes, aiohttp_client):
    cluster, documents = nodes
    wanted = with_repository(cluster, "newrepo")
    documents.served = {3: wanted}
    cluster.networks = {3: document_digest(wanted)}
    client = await start_client(aiohttp_client, cluster)
    await asyncio.sleep(0.3)
    assert _digest(client) == cluster.config.digest
    status, answer = await post(client, {"branch": "main", "repository": "newrepo"})
    assert status == 400 and answer["error"].startswith("unknown repository 'newrepo'")


def _digest(client) -> str:
    return client.app[LIVE_KEY].current.digest


HOOK_SECRET = "the-new-webhooks-own-secret-" * 2


def with_webhook_repository(cluster: FakeCluster) -> tuple[dict, dict]:
    """The running document with a repository added that notifies a webhook; and that
    repository's entry as the client's file gives it, with the webhook's secret_file."""
    added = {"name": "newrepo", "url": "/srv/git/newrepo", "notify": [{"webhook": "https://hooks.example.org/new"}]}
    document = agreed(cluster.config)
    wanted = {**document, "repositories": [*document["repositories"], added]}
    (cluster.config.path.parent / "new-hook.secret").write_text(HOOK_SECRET)
    return wanted, {**added, "notify": [{**added["notify"][0], "secret_file": "new-hook.secret"}]}


async def test_the_client_runs_a_document_that_adds_a_webhook_with_the_secret_its_own_file_gives(nodes, aiohttp_client):
    """The client's operator put the new repository's entry, with the webhook's secret_file,
    in the client's file before the change: the client runs the document with it."""
    cluster, documents = nodes
    wanted, entry = with_webhook_repository(cluster)
    edit(cluster.config.path, lambda data: data["repositories"].append(entry))
    digest = document_digest(wanted)
    documents.served = {1: wanted, 2: wanted}
    cluster.networks = {1: digest, 2: digest}
    client = await start_client(aiohttp_client, cluster)
    await until(lambda: _digest(client) == digest)
    assert client.app[LIVE_KEY].current.repository("newrepo").notify[0].secret == HOOK_SECRET


async def test_a_client_whose_file_lacks_a_new_webhooks_secret_says_so_and_keeps_running(nodes, aiohttp_client,
                                                                                         caplog):
    cluster, documents = nodes
    wanted, _ = with_webhook_repository(cluster)
    digest = document_digest(wanted)
    documents.served = {1: wanted, 2: wanted}
    cluster.networks = {1: digest, 2: digest}
    client = await start_client(aiohttp_client, cluster)
    said = lambda: [record for record in caplog.records if record.levelno == logging.CRITICAL]  # noqa: E731
    await until(said)
    assert "repositories[1].notify[0].secret_file: is required for a webhook" in said()[0].getMessage()
    assert _digest(client) == cluster.config.digest
    status, answer = await post(client, {"branch": "master", "repository": "example"})
    assert status == 200, answer


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not a network change (scripts/network.py makes one): "),
    (b'{"base": "00", "document": "{}"}', "not a network change (scripts/network.py makes one): "),
    (json.dumps({"base": "a" * 64, "document": "[1, 2]", "signatures": []}).encode(),
     "the change's document is not a JSON object of finite numbers, nested within bounds"),
    (json.dumps({"base": "a" * 64, "document": "{}", "signatures": []}).encode(),
     "the change carries no owner's signature (scripts/network.py sign)"),
])
async def test_a_body_that_is_no_signed_change_is_refused_with_a_reason(nodes, aiohttp_client, body, reason):
    cluster, _ = nodes
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/network/changes", data=body)
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)
    assert cluster.received == {node: [] for node in range(4)}  # nothing was ordered
