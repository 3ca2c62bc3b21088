"""Every HTTP route a node serves, called with what a careless or hostile caller sends: path
parameters that are no names or numbers (dots, NUL, huge numbers, other scripts) and query
values of every wrong kind for every parameter the node reads. None may answer 500 or leave the
request hanging, and a JSON refusal says why. One node in this process (aiohttp's test
server), its builds faked; its peers never come, so nothing is ordered: each route answers
from what a node holds before its first build, which is where a caller's input meets it."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import pytest

from harness.network import write_network
from node.server import make_app
from shared.config import load_config
from tests.support.node_network import fake_build

NODE_ID = 0
ODD_SEGMENTS = ("..", "-1", "0", "1" * 40, "1e400", "nan", "x" * 4000, "ärger€", "\x00", " ", "%", "$(id)",
                "client", "a/b/../../c")
ODD_QUERIES = ("", "-1", "0", "1" * 400, "1e309", "nan", "true", "\x00", "ärger", "../x", "x" * 5000)
# Every query parameter a node's handler reads (node/*.py `request.query`).
QUERY_NAMES = ("after", "seq", "client", "timestamp", "size", "first", "second", "follow", "times")
# Sockets: a plain GET of them is refused by the WebSocket handshake, which their own tests cover.
SOCKETS = ("/peer", "/client")
REQUEST_TIMEOUT_S = 20


@pytest.fixture
async def node(tmp_path, aiohttp_client):
    config = load_config(write_network(tmp_path), node_id=NODE_ID, read_secrets=False)
    return await aiohttp_client(make_app(config, NODE_ID, build=fake_build))


def routes(app) -> list[str]:
    return sorted({route.resource.canonical for route in app.router.routes()
                   if route.method == "GET" and route.resource.canonical not in SOCKETS})


def parameters(path: str) -> list[str]:
    return re.findall(r"\{(\w+)(?::[^}]*)?\}", path)


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda found: values.get(found.group(1), "1"), path)


async def answer(node, url: str, params=()) -> tuple[int, str, bytes]:
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        response = await node.get(url, params=params, allow_redirects=False)
        return response.status, response.content_type, await response.read()


def unclear(what: str, status: int, content_type: str, body: bytes) -> str | None:
    if status >= 500:
        return f"{what}: {status} {body[:200]!r}"
    if status >= 400 and content_type == "application/json":
        try:
            said = json.loads(body)
        except ValueError:
            return f"{what}: {status} with a body that is no JSON"
        if not (isinstance(said, dict) and isinstance(said.get("error"), str) and said["error"]):
            return f"{what}: {status} without an error that says why: {body[:200]!r}"
    return None


async def test_the_routes_it_serves_are_the_ones_this_test_calls(node):
    # A route added later is called by the tests below as it is; this names them, so that one
    # whose parameters the lists above do not cover is noticed.
    assert set(routes(node.server.app)) == {
        "/status", "/network/document", "/network/first", "/metrics", "/builds/{seq}", "/ledger",
        "/requests/{client}/{timestamp}", "/requests/{client}/{timestamp}/attestation", "/logs/{client}/{timestamp}",
        "/artifacts/{client}/{timestamp}", "/artifacts/{client}/{timestamp}/{path}", "/tests/{client}/{timestamp}",
        "/log/head", "/log/inclusion", "/log/consistency"}


async def test_odd_path_parameters_are_refused_or_not_found_never_a_500(node):
    problems = []
    for path in routes(node.server.app):
        for name in parameters(path):
            for odd in ODD_SEGMENTS:
                url = fill(path, {"client": "client", "timestamp": "1", name: quote(odd, safe="")})
                problems.append(unclear(f"{path} {name}={odd[:20]!r}", *await answer(node, url)))
    assert [problem for problem in problems if problem] == []


async def test_odd_query_values_are_refused_or_ignored_never_a_500(node):
    problems = []
    for path in routes(node.server.app):
        url = fill(path, {"client": "client", "timestamp": "1", "seq": "1", "path": "a.txt"})
        for name in QUERY_NAMES:
            for odd in ODD_QUERIES:
                problems.append(unclear(f"{path}?{name}={odd[:20]!r}", *await answer(node, url, {name: odd})))
        every = [(name, "-1") for name in QUERY_NAMES for _ in range(2)]
        problems.append(unclear(f"{path} every parameter twice", *await answer(node, url, every)))
        sizes = [("first", "0"), ("second", str(2 ** 62)), ("size", str(2 ** 62)), ("client", "client"),
                 ("timestamp", "1"), ("seq", str(2 ** 62))]
        problems.append(unclear(f"{path} sizes of 2^62", *await answer(node, url, sizes)))
    assert [problem for problem in problems if problem] == []
