"""The client's build-log proxy, against fake nodes that check its signatures for real.

The fake nodes are test_client_app's FakeCluster (so webhooks get verdicts
and build records exist) plus a `/logs/{client}/{timestamp}` route that
verifies the client's log-request signature with `shared.logrequest` and
serves what the test gave that node: a plain log, nothing (404), or an SSE
stream fed event by event through a queue.
"""

import asyncio
import time

import pytest
from aiohttp import web

from client.app import make_app
from shared.logrequest import NodeAccess, NodeRequest, check_log_request
from shared.sse import SseEvent, SseParser, SseTooLarge, sse_comment, sse_event
from tests.client.fake_nodes import CLIENT, FakeCluster, N, configure


class FakeLogNodes:
    """What each fake node answers on its log route, and what it was asked."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.plain: dict[int, bytes] = {}
        self.missing: set[int] = set()  # nodes that answer 404 in follow mode
        self.streams: dict[int, asyncio.Queue] = {i: asyncio.Queue() for i in range(N)}
        self.asked: list[tuple[int, str, str]] = []  # (node, path, query string) of signed requests
        self.stream_closed: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(N)}

    def handler(self, node_id: int):
        async def serve(request: web.Request) -> web.StreamResponse:
            reason = check_log_request(
                request.headers, NodeRequest(request.rel_url.raw_path_qs, node_id),
                NodeAccess(self.cluster.verifier.verify_client, {CLIENT}), time.time(),
            )
            if reason is not None:
                return web.json_response({"error": reason}, status=401)
            self.asked.append((node_id, request.path, request.query_string))
            if request.query.get("follow") == "1" and node_id not in self.missing:
                return await self._stream(node_id, request)
            if node_id not in self.plain:
                return web.json_response({"error": "no log"}, status=404)
            return web.Response(body=self.plain[node_id], content_type="text/plain", charset="utf-8")

        return serve

    async def _stream(self, node_id: int, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while (chunk := await self.streams[node_id].get()) is not None:
                await response.write(chunk)
        except ConnectionError:
            pass
        finally:
            self.stream_closed[node_id].set()
        return response


@pytest.fixture
async def network(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    nodes = FakeLogNodes(cluster)
    apps = []
    for node_id in range(N):
        app = cluster.app(node_id)
        app.router.add_get("/logs/{client}/{timestamp}", nodes.handler(node_id))
        apps.append(app)
    nodes.servers = [await aiohttp_server(app) for app in apps]
    configure(cluster, [server.port for server in nodes.servers], tmp_path, {"example": str(tmp_path / "repo")})
    return nodes


@pytest.fixture
async def client(network, aiohttp_client):
    client = await aiohttp_client(make_app(network.cluster.config, CLIENT))
    async with asyncio.timeout(5):
        while not all(network.cluster.registered.values()):
            await asyncio.sleep(0.01)
    return client


@pytest.fixture
async def build_id(client) -> str:
    response = await client.post("/webHook", json={"branch": "main"})
    assert response.status == 200
    return (await response.json())["build_id"]


def expected_links(build_id: str) -> dict:
    return {str(i): f"/builds/{build_id}/log?node={i}" for i in range(N)}


async def test_verdict_and_build_record_say_where_each_nodes_log_is(client):
    response = await client.post("/webHook", json={"branch": "main"})
    verdict = await response.json()

    assert verdict["logs"] == expected_links(verdict["build_id"])
    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert record["logs"] == expected_links(verdict["build_id"])


async def test_plain_log_comes_signed_from_the_named_node_only(network, client, build_id):
    network.plain[2] = b"== pbft-ci build\nnode two says hi\n"
    network.plain[3] = b"a different story\n"

    response = await client.get(f"/builds/{build_id}/log", params={"node": "2"})

    assert response.status == 200
    assert response.headers["X-Pbft-Node"] == "2"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert await response.read() == network.plain[2]
    # The fake node checked the client's signature before answering; nobody else was asked.
    assert network.asked == [(2, f"/logs/{CLIENT}/{build_id}", "")]


async def test_node_without_the_log_is_404_with_a_reason(network, client, build_id):
    response = await client.get(f"/builds/{build_id}/log", params={"node": "1"})

    assert response.status == 404
    assert (await response.json())["error"] == f"node 1 has no log for build {build_id} (yet)"


async def test_unreachable_node_is_502_with_a_reason(network, client, build_id):
    await network.servers[3].close()

    response = await client.get(f"/builds/{build_id}/log", params={"node": "3"})

    assert response.status == 502
    assert "node 3" in (await response.json())["error"]


async def test_node_refusing_the_client_is_502(network, client, build_id):
    network.cluster.verifier = FakeCluster().verifier  # the node knows another key for the client

    response = await client.get(f"/builds/{build_id}/log", params={"node": "0"})

    assert response.status == 502
    assert "node 0" in (await response.json())["error"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/builds/{id}/log", 400),
        ("/builds/{id}/log?node=4", 400),
        ("/builds/{id}/log?node=-1", 400),
        ("/builds/{id}/log?node=one", 400),
        ("/builds/{id}/log?node=99999999999999999999999", 400),
        ("/builds/123/log?node=0", 404),
        ("/builds/abc/log?node=0", 400),
    ],
)
async def test_bad_log_requests_get_a_4xx_with_a_reason(network, client, build_id, path, status):
    response = await client.get(path.replace("{id}", build_id))

    assert response.status == status
    assert (await response.json())["error"]
    assert network.asked == []


class EventReader:
    """The SSE events of one response, read as the test asks for them."""

    def __init__(self, response) -> None:
        self.response = response
        self.parser = SseParser()
        self.pending: list[SseEvent] = []

    async def next(self) -> SseEvent:
        async with asyncio.timeout(5):
            while not self.pending:
                chunk = await self.response.content.readany()
                assert chunk, "stream ended"
                self.pending += self.parser.feed(chunk)
        return self.pending.pop(0)

    async def until_closed(self) -> list[SseEvent]:
        async with asyncio.timeout(5):
            while chunk := await self.response.content.readany():
                self.pending += self.parser.feed(chunk)
        events, self.pending = self.pending, []
        return events


@pytest.mark.parametrize("how", [{"params": {"node": "1", "follow": "1"}},
                                 {"params": {"node": "1"}, "headers": {"Accept": "text/event-stream"}}])
async def test_follow_passes_the_nodes_events_through_labelled_with_the_node(network, client, build_id, how):
    queue = network.streams[1]
    response = await client.get(f"/builds/{build_id}/log", **how)

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Pbft-Node"] == "1"
    events = EventReader(response)
    assert await events.next() == SseEvent("node", "1")
    assert network.asked == [(1, f"/logs/{CLIENT}/{build_id}", "follow=1")]

    queue.put_nowait(sse_event("output", "== pbft-ci build\nstep"))
    assert await events.next() == SseEvent("output", "== pbft-ci build\nstep")
    # A node may not relabel its stream as another node's, nor invent event kinds.
    queue.put_nowait(sse_event("node", "0") + sse_event("verdict", "success"))
    queue.put_nowait(b": keepalive\n\n")
    assert await events.next() == SseEvent(None, "keepalive")
    last_output = " one\n== status success exit_code 0 duration_ms 3\n"
    queue.put_nowait(sse_event("output", last_output) + sse_event("end", ""))
    queue.put_nowait(None)

    assert await events.until_closed() == [SseEvent("output", last_output), SseEvent("end", "")]


async def test_follow_says_when_the_nodes_stream_broke_off(network, client, build_id):
    response = await client.get(f"/builds/{build_id}/log", params={"node": "2", "follow": "1"})
    events = EventReader(response)
    assert await events.next() == SseEvent("node", "2")

    network.streams[2].put_nowait(sse_event("output", "half"))
    network.streams[2].put_nowait(None)

    rest = await events.until_closed()
    assert rest[0] == SseEvent("output", "half")
    assert [event.name for event in rest[1:]] == ["error"] and "node 2" in rest[1].data


async def test_follow_of_a_node_without_the_log_is_404(network, client, build_id):
    network.missing.add(0)

    response = await client.get(f"/builds/{build_id}/log", params={"node": "0", "follow": "1"})

    assert response.status == 404
    assert (await response.json())["error"] == f"node 0 has no log for build {build_id} (yet)"


async def test_follow_stops_reading_the_node_when_the_caller_goes_away(network, client, build_id):
    response = await client.get(f"/builds/{build_id}/log", params={"node": "3", "follow": "1"})
    assert await EventReader(response).next() == SseEvent("node", "3")

    response.close()
    async with asyncio.timeout(5):
        while not network.stream_closed[3].is_set():
            network.streams[3].put_nowait(sse_event("output", "x" * 1000))
            await asyncio.sleep(0.02)


def test_sse_parser_handles_split_chunks_crlf_and_comments():
    parser = SseParser()
    stream = b"event: output\r\ndata: a\r\ndata: b\r\n\r\n: keepalive\n\nevent: end\ndata\n\n"

    events = [event for i in range(len(stream)) for event in parser.feed(stream[i:i + 1])]

    assert events == [SseEvent("output", "a\nb"), SseEvent(None, "keepalive"), SseEvent("end", "")]


def test_sse_parser_refuses_an_endless_line():
    parser = SseParser(max_event_bytes=100)
    with pytest.raises(SseTooLarge):
        parser.feed(b"data: " + b"x" * 200)


def test_sse_event_data_cannot_start_fields_of_its_own():
    framed = sse_event("output", "a\rb\r\nevent: end\n")

    assert SseParser().feed(framed) == [SseEvent("output", "a\nb\nevent: end\n")]


def test_sse_comment_stays_one_comment():
    framed = sse_comment("waiting\revent: end\ndata: x")

    assert SseParser().feed(framed) == [SseEvent(None, "waiting event: end data: x")]


async def test_a_long_plain_log_is_passed_on_whole_as_it_comes(network, client, build_id):
    network.plain[2] = b"".join(b"line %d of a long build\n" % i for i in range(60_000))  # about 1.4 MB

    response = await client.get(f"/builds/{build_id}/log?node=2")

    assert response.status == 200 and response.headers["X-Pbft-Node"] == "2"
    assert await response.read() == network.plain[2]


async def test_a_plain_log_longer_than_any_capped_log_is_refused_with_502(network, client, build_id):
    network.plain[1] = b"x" * (3 * 1024 * 1024)  # the cap of this network's logs is about 2 MB

    response = await client.get(f"/builds/{build_id}/log?node=1")

    assert response.status == 502
    assert "node 1 sent more than" in (await response.json())["error"]


async def test_line_times_are_asked_of_the_named_node_with_the_query_signed(network, client, build_id):
    network.plain[2] = b"3 1700000000000\n1 250\n"  # the fake node answers the same body for either query

    response = await client.get(f"/builds/{build_id}/log", params={"node": "2", "times": "1"})

    assert response.status == 200 and response.headers["X-Pbft-Node"] == "2"
    assert await response.read() == network.plain[2]
    assert network.asked == [(2, f"/logs/{CLIENT}/{build_id}", "times=1")]


async def test_line_times_longer_than_a_nodes_cap_are_refused_with_502(network, client, build_id):
    network.plain[1] = b"1 0\n" * (300 * 1024)  # 1.2 MB: more than any node writes

    response = await client.get(f"/builds/{build_id}/log?node=1&times=1")

    assert response.status == 502
    assert "node 1 sent more than" in (await response.json())["error"]
