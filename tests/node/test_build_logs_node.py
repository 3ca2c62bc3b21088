"""A node's build logs over HTTP: only configured clients with signed requests, never outside log_dir.

Integration layer: the node's log route on a real aiohttp server, real Ed25519
signatures from a real client key. Follow mode is driven by writing the log
file in steps and awaiting the events each step must produce.
"""

import asyncio
import dataclasses
import time

import pytest
from aiohttp import web

from harness.network import write_network
from node.buildlogs import LOG_SETTINGS, add_build_log_route
from node.server import make_app
from shared.config import load_config
from shared.crypto import Ed25519Authenticator, generate_private_key, load_private_key
from shared.logrequest import NodeRequest, signed_log_headers

NODE_ID = 1
CLIENT = "client"  # the one client tests.network.write_network configures


@pytest.fixture
def config(tmp_path):
    return load_config(write_network(tmp_path))


@pytest.fixture
def client_auth(config):
    return Ed25519Authenticator(load_private_key(config.client_key_path(CLIENT)), {}, {})


async def node_client(aiohttp_client, config, **settings):
    app = web.Application()
    add_build_log_route(app, config, NODE_ID)
    if settings:
        app[LOG_SETTINGS] = dataclasses.replace(app[LOG_SETTINGS], **settings)
    return await aiohttp_client(app)


@pytest.fixture
async def node(aiohttp_client, config):
    return await node_client(aiohttp_client, config)


def now_us() -> int:
    return int(time.time() * 1_000_000)


def log_path(config, timestamp: int):
    return config.log_dir / f"build-node{NODE_ID}-{CLIENT}-{timestamp}.log"


def write_log(config, timestamp: int, text: str, mode: str = "w"):
    path = log_path(config, timestamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as file:
        file.write(text)


def headers(auth, path: str, *, client: str = CLIENT, for_node: int = NODE_ID, now_s: float | None = None) -> dict:
    return signed_log_headers(auth.sign, client, NodeRequest(path, for_node), time.time() if now_s is None else now_s)


async def get(node, auth, path: str, **kwargs):
    return await node.get(path, headers=headers(auth, path, **kwargs))


FINISHED = "== pbft-ci build x node 1\nhello\n== status success exit_code 0 duration_ms 12\n"


async def test_signed_request_gets_the_log_as_it_is_now(node, config, client_auth):
    write_log(config, 42, FINISHED)

    response = await get(node, client_auth, f"/logs/{CLIENT}/42")

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await response.text() == FINISHED


async def test_missing_log_is_404_json(node, client_auth):
    response = await get(node, client_auth, f"/logs/{CLIENT}/42")

    assert response.status == 404
    assert "no log" in (await response.json())["error"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"client": "stranger"}, "unknown client"),
        ({"skew_s": -120}, "time"),
        ({"skew_s": 120}, "time"),
        ({"for_node": NODE_ID + 1}, "signature"),  # signed for another node: cannot be replayed here
    ],
)
async def test_refused_with_401_and_a_reason(node, config, client_auth, change, reason):
    write_log(config, 42, FINISHED)
    if "skew_s" in change:
        # The clock is read now, not when the parameters were collected, minutes earlier in a long run.
        change = {"now_s": time.time() + change["skew_s"]}

    response = await get(node, client_auth, f"/logs/{CLIENT}/42", **change)

    assert response.status == 401
    assert reason in (await response.json())["error"]


async def test_a_key_that_is_not_the_clients_is_refused(node, config):
    write_log(config, 42, FINISHED)
    impostor = Ed25519Authenticator(generate_private_key(), {}, {})

    response = await get(node, impostor, f"/logs/{CLIENT}/42")

    assert response.status == 401 and "signature" in (await response.json())["error"]


async def test_a_signature_for_another_build_is_refused(node, config, client_auth):
    write_log(config, 42, FINISHED)

    response = await node.get(f"/logs/{CLIENT}/42", headers=headers(client_auth, f"/logs/{CLIENT}/43"))

    assert response.status == 401


async def test_a_signed_request_is_served_once(node, config, client_auth):
    """Client and nodes talk plain HTTP: captured headers replayed within the window get nothing."""
    write_log(config, 42, FINISHED)
    sent = headers(client_auth, f"/logs/{CLIENT}/42")

    first = await node.get(f"/logs/{CLIENT}/42", headers=sent)
    replayed = await node.get(f"/logs/{CLIENT}/42", headers=sent)

    assert first.status == 200
    assert replayed.status == 401 and "already used" in (await replayed.json())["error"]
    assert (await get(node, client_auth, f"/logs/{CLIENT}/42")).status == 200  # signed anew: served


@pytest.mark.parametrize("signed, asked", [
    (f"/logs/{CLIENT}/42", f"/logs/{CLIENT}/42?follow=1"),  # a plain read does not open a stream
    (f"/logs/{CLIENT}/42?follow=1", f"/logs/{CLIENT}/42"),
    (f"/logs/{CLIENT}/42?follow=1", f"/logs/{CLIENT}/42?follow=1&x=2"),
])
async def test_the_signature_covers_the_query(node, config, client_auth, signed, asked):
    write_log(config, 42, FINISHED)

    response = await node.get(asked, headers=headers(client_auth, signed))

    assert response.status == 401 and "signature" in (await response.json())["error"]


@pytest.mark.parametrize("headers_missing", ["X-Pbft-Client", "X-Pbft-Time", "X-Pbft-Nonce", "X-Pbft-Signature"])
async def test_missing_headers_are_401(node, config, client_auth, headers_missing):
    write_log(config, 42, FINISHED)
    sent = headers(client_auth, f"/logs/{CLIENT}/42")
    del sent[headers_missing]

    response = await node.get(f"/logs/{CLIENT}/42", headers=sent)

    assert response.status == 401


@pytest.mark.parametrize(
    "path",
    [
        f"/logs/{CLIENT}/..%2F..%2Fsecret",
        f"/logs/{CLIENT}/42%2F..%2F..%2Fsecret",
        "/logs/..%2F..%2Fsecret/42",
        f"/logs/{CLIENT}/9223372036854775808",  # 2**63
        f"/logs/{CLIENT}/99999999999999999999999999999999",
        f"/logs/{CLIENT}/-1",
        f"/logs/{CLIENT}/4e2",
        f"/logs/{CLIENT}/%EF%BC%94%EF%BC%92",  # fullwidth digits: isdecimal() but not ASCII
        "/logs/stranger/42",
        f"/logs/{CLIENT}.log/42",
    ],
)
async def test_nothing_outside_the_configured_names_is_read(node, config, client_auth, tmp_path, path):
    write_log(config, 42, FINISHED)
    (tmp_path / "secret").write_text("SECRET")
    (config.log_dir / "secret").write_text("SECRET")

    # Signed over the path exactly as the node sees it, so only the path checks stand in the way.
    response = await node.get(path, headers=headers(client_auth, path))

    assert response.status in (400, 404)
    body = await response.text()
    assert "SECRET" not in body and "hello" not in body
    assert "error" in await response.json()


async def test_leading_zeros_name_the_same_build(node, config, client_auth):
    write_log(config, 42, FINISHED)

    response = await get(node, client_auth, f"/logs/{CLIENT}/0042")

    assert response.status == 200 and await response.text() == FINISHED


async def next_event(response) -> tuple[str, str]:
    """The next SSE event as (name, data); comments are returned as (":", text)."""
    name, data = "message", []
    async with asyncio.timeout(5):
        while True:
            line = (await response.content.readline()).decode()
            assert line, "stream ended before the event was complete"
            line = line.rstrip("\n")
            if line.startswith(":"):
                if not data and name == "message":
                    return ":", line[1:].strip()
                continue
            if line == "":
                if data or name != "message":
                    return name, "\n".join(data)
                continue  # the blank line after a comment
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def next_output(response) -> str:
    while True:
        name, data = await next_event(response)
        if name != ":":
            assert name == "output", (name, data)
            return data


async def test_follow_streams_a_growing_log_until_its_status_line(node, config, client_auth):
    timestamp = now_us()  # a recent build: its log may not exist yet

    response = await get(node, client_auth, f"/logs/{CLIENT}/{timestamp}?follow=1")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")

    write_log(config, timestamp, "== pbft-ci build x node 1\n")
    assert await next_output(response) == "== pbft-ci build x node 1\n"
    write_log(config, timestamp, "step one\nstep two", mode="a")
    assert await next_output(response) == "step one\nstep two"
    write_log(config, timestamp, " done\n== status failure exit_code 3 duration_ms 40\n", mode="a")
    assert await next_output(response) == " done\n== status failure exit_code 3 duration_ms 40\n"
    assert (await next_event(response))[0] == "end"
    async with asyncio.timeout(5):
        assert await response.content.read() == b""


async def test_follow_of_a_finished_log_sends_it_and_ends(node, config, client_auth):
    write_log(config, 42, FINISHED)

    response = await get(node, client_auth, f"/logs/{CLIENT}/42?follow=1")

    assert await next_output(response) == FINISHED
    assert (await next_event(response))[0] == "end"


async def test_follow_of_an_old_build_without_log_is_404(node, client_auth):
    response = await get(node, client_auth, f"/logs/{CLIENT}/42?follow=1")

    assert response.status == 404
    assert "error" in await response.json()


async def test_follow_sends_keepalives_while_nothing_happens(aiohttp_client, config, client_auth):
    node = await node_client(aiohttp_client, config, keepalive_s=0.05)
    response = await get(node, client_auth, f"/logs/{CLIENT}/{now_us()}?follow=1")

    assert await next_event(response) == (":", "waiting for the build to start")
    assert await next_event(response) == (":", "keepalive")
    assert await next_event(response) == (":", "keepalive")


async def test_follow_stops_at_its_time_cap(aiohttp_client, config, client_auth):
    node = await node_client(aiohttp_client, config, follow_cap_s=0.3)
    timestamp = now_us()
    write_log(config, timestamp, "started\n")
    response = await get(node, client_auth, f"/logs/{CLIENT}/{timestamp}?follow=1")

    assert await next_output(response) == "started\n"
    assert (await next_event(response))[0] == "limit"
    async with asyncio.timeout(5):
        assert await response.content.read() == b""


async def test_follow_bounds_the_bytes_of_one_event(aiohttp_client, config, client_auth):
    node = await node_client(aiohttp_client, config, max_event_bytes=1000)
    text = "".join(f"line {i:05d}\n" for i in range(1000)) + "== status success exit_code 0 duration_ms 1\n"
    write_log(config, 42, text)
    response = await get(node, client_auth, f"/logs/{CLIENT}/42?follow=1")

    chunks = []
    while True:
        name, data = await next_event(response)
        if name == "end":
            break
        assert name == "output" and len(data.encode()) <= 1000
        chunks.append(data)
    assert "".join(chunks) == text and len(chunks) > 10


async def test_follow_never_lets_output_forge_sse_fields(node, config, client_auth):
    # Carriage returns end SSE lines too: output must not start an "event: end" of its own.
    write_log(config, 42, "progress\revent: end\r\n== status success exit_code 0 duration_ms 1\n")
    response = await get(node, client_auth, f"/logs/{CLIENT}/42?follow=1")

    raw = await response.content.read()

    assert b"\revent" not in raw
    assert raw.count(b"\nevent: end\n") == 1


async def test_follow_decodes_split_utf8_without_losing_characters(node, config, client_auth):
    timestamp = now_us()
    encoded = "é€\n".encode()  # é is 2 bytes, € is 3
    response = await get(node, client_auth, f"/logs/{CLIENT}/{timestamp}?follow=1")

    write_log(config, timestamp, "")
    with open(log_path(config, timestamp), "ab") as file:
        # Half of é alone is not sent; with the next byte and half of €, é is.
        file.write(encoded[:1])
        file.flush()
        file.write(encoded[1:4])
        file.flush()
        assert await next_output(response) == "é"
        file.write(encoded[4:])
        file.flush()
        assert await next_output(response) == "€\n"


async def test_the_node_application_serves_build_logs(aiohttp_client, config, client_auth):
    async def no_build(order):
        raise AssertionError("no build is ordered in this test")

    node = await aiohttp_client(make_app(config, NODE_ID, build=no_build))
    write_log(config, 42, FINISHED)

    response = await get(node, client_auth, f"/logs/{CLIENT}/42")

    assert response.status == 200 and await response.text() == FINISHED


async def test_follow_starts_over_when_the_build_runs_again(node, config, client_auth):
    # A node killed mid-build runs the build again after its restart, and the log is written afresh.
    timestamp = now_us()
    write_log(config, timestamp, "== pbft-ci build x node 1\nfirst run, killed half way\n")
    response = await get(node, client_auth, f"/logs/{CLIENT}/{timestamp}?follow=1")
    assert await next_output(response) == "== pbft-ci build x node 1\nfirst run, killed half way\n"

    write_log(config, timestamp, "== pbft-ci build x node 1\n")

    assert await next_event(response) == ("reset", "")
    assert await next_output(response) == "== pbft-ci build x node 1\n"


async def test_the_line_times_of_a_log_are_served_beside_it(node, config, client_auth):
    write_log(config, 42, FINISHED)
    log_path(config, 42).with_name(log_path(config, 42).name + ".times").write_text("2 1700000000000\n1 5\n")

    response = await get(node, client_auth, f"/logs/{CLIENT}/42?times=1")
    assert response.status == 200
    assert await response.text() == "2 1700000000000\n1 5\n"
    # The query is signed: a signature for the log itself does not get the times, nor the other way round.
    refused = await node.get(f"/logs/{CLIENT}/42?times=1", headers=headers(client_auth, f"/logs/{CLIENT}/42"))
    assert refused.status == 401


async def test_a_log_without_times_answers_404(node, config, client_auth):
    write_log(config, 43, FINISHED)  # written by a node from before line times

    response = await get(node, client_auth, f"/logs/{CLIENT}/43?times=1")
    assert response.status == 404
    assert "no line times" in (await response.json())["error"]
