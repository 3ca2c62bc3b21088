"""Who may make the client build or read its records, and how long a caller may take to send a body.

The plain call (`{"branch": ...}` without forge headers) needs the client's
bearer token when one is configured, and is refused outright when neither a
token nor the loopback-only opt-out is configured. Forge deliveries are
authenticated by their repository's webhook secret and never need the token.
The app runs against the fake nodes of tests/test_client_app.py.
"""

import asyncio
import json
import logging
import os

import aiohttp
import pytest
from aiohttp import web

from client.access import READ, TRIGGER, AccessRules
from client.app import make_app
from client.index import main as index_main
from client.intake import WebhookError
from harness.network import write_network
from pbft.build import Actor
from tests.client.client_token import BEARER, with_client_settings
from tests.client.client_token import TOKEN
from tests.client.fake_nodes import CLIENT, honest_result, start_client
from tests.client.forge_deliveries import GITHUB_PUSH, encoded, github_headers


@pytest.fixture
async def guarded(cluster, aiohttp_client):
    """A client with a bearer token configured."""
    return await start_client(aiohttp_client, with_client_settings(cluster, token=TOKEN))


# --- the rule, without HTTP ------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization, accepted",
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer   {TOKEN}", True),  # the scheme is case-insensitive (RFC 9110 11.1)
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Basic {TOKEN}", False),
        ("Bearer", False),
        ("Bearer ümlaut", False),  # never raises on what compare_digest cannot take as str
        ("", False),
    ],
)
def test_bearer_token_check(authorization, accepted):
    rules = AccessRules(token=TOKEN, plain_without_token=False)
    headers = {"Authorization": authorization} if authorization else {}
    for role in (TRIGGER, READ):
        if accepted:
            assert rules.require(headers, role, None, 0.0).actor == Actor("machine", "client")
            continue
        with pytest.raises(WebhookError) as caught:
            rules.require(headers, role, None, 0.0)
        assert caught.value.status == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_without_a_token_plain_calls_need_the_opt_out_and_reads_stay_open():
    with pytest.raises(WebhookError) as caught:
        AccessRules(token="", plain_without_token=False).require({}, TRIGGER, None, 0.0)
    assert caught.value.status == 403 and "token_file" in caught.value.reason
    AccessRules(token="", plain_without_token=True).require({}, TRIGGER, None, 0.0)
    AccessRules(token="", plain_without_token=False).require({}, READ, None, 0.0)


# --- the app ---------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
async def test_plain_call_without_the_token_is_401_and_nothing_is_sent(cluster, guarded, headers):
    response = await guarded.post("/webHook", json={"branch": "main", "repository": "open"}, headers=headers)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"]
    assert all(not received for received in cluster.received.values())


async def test_plain_call_with_the_token_gets_its_verdict(guarded):
    response = await guarded.post("/webHook", json={"branch": "main", "repository": "open"}, headers=BEARER)

    assert response.status == 200
    verdict = await response.json()
    assert (verdict["status"], verdict["commit"]) == ("success", honest_result("main").commit)


async def test_forge_delivery_needs_its_secret_not_the_token(cluster, guarded):
    body = encoded(GITHUB_PUSH)
    response = await guarded.post("/webHook", data=body, headers=github_headers(body))
    assert response.status == 202

    forged = await guarded.post("/webHook", data=body, headers={**github_headers(body, secret="guess"), **BEARER})
    assert forged.status == 401  # the token does not stand in for the repository's secret


async def test_build_records_need_the_token_when_one_is_configured(guarded):
    response = await guarded.post("/webHook", json={"branch": "main", "repository": "open"}, headers=BEARER)
    build_id = (await response.json())["build_id"]

    for path in ("/builds", f"/builds/{build_id}", f"/builds/{build_id}/certificate"):
        refused = await guarded.get(path)
        assert refused.status == 401, path
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "build_id" not in await refused.text()
        wrong = await guarded.get(path, headers={"Authorization": "Bearer " + "0" * 48})
        assert wrong.status == 401, path
        allowed = await guarded.get(path, headers=BEARER)
        assert allowed.status == 200, path


async def test_artifacts_need_the_token_before_any_node_is_asked(guarded):
    response = await guarded.post("/webHook", json={"branch": "main", "repository": "open"}, headers=BEARER)
    build_id = (await response.json())["build_id"]

    routes = ("artifacts", "artifacts/dist/app.whl", "provenance")
    for path in (f"/builds/{build_id}/{route}" for route in routes):
        refused = await guarded.get(path)
        assert refused.status == 401, path
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        # With the token, the record is read: this build's verdict carries no artifacts.
        allowed = await guarded.get(path, headers=BEARER)
        assert allowed.status == 404, path
        assert (await allowed.json())["error"] == f"build {build_id} declared no artifacts"


async def test_plain_call_is_403_without_a_token_or_the_opt_out(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, with_client_settings(cluster, plain_without_token=False))

    response = await client.post("/webHook", json={"branch": "main", "repository": "open"})

    assert response.status == 403
    assert "token_file" in (await response.json())["error"]
    assert all(not received for received in cluster.received.values())
    # Forge deliveries and reading the records are unaffected.
    body = encoded(GITHUB_PUSH)
    assert (await client.post("/webHook", data=body, headers=github_headers(body))).status == 202
    assert (await client.get("/builds")).status == 200


async def test_plain_call_is_open_with_the_loopback_opt_out(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, with_client_settings(cluster, plain_without_token=True))

    response = await client.post("/webHook", json={"branch": "main", "repository": "open"})

    assert response.status == 200


# --- slow and vanishing callers --------------------------------------------------------------


@pytest.fixture
async def serve(cluster):
    """Start the client app as `web.run_app` does and return its port.

    aiohttp's test server cancels a handler whose caller disconnects; the
    client's own server (client/index.py) does not, so a vanished caller
    surfaces as an error from the body's stream, and that is what these
    tests must see.
    """
    runners = []

    async def start(**settings) -> int:
        runner = web.AppRunner(make_app(with_client_settings(cluster, **settings).config, CLIENT))
        runners.append(runner)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with asyncio.timeout(5):
            while not all(cluster.registered.values()):
                await asyncio.sleep(0.01)
        return runner.addresses[0][1]

    yield start
    for runner in runners:
        await runner.cleanup()


async def raw_connection(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


def partial_post(declared_bytes: int, sent: bytes, headers: str = "") -> bytes:
    return (
        f"POST /webHook HTTP/1.1\r\nHost: ci\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {declared_bytes}\r\n\r\n"
    ).encode() + sent


async def read_until_closed(reader) -> bytes:
    received = b""
    while chunk := await reader.read(4096):
        received += chunk
    return received


async def test_a_body_not_received_in_time_is_408_and_the_connection_closed(cluster, serve):
    reader, writer = await raw_connection(await serve(token=TOKEN, body_timeout_s=0.2))
    writer.write(partial_post(100, b'{"branch":', f"Authorization: Bearer {TOKEN}\r\n"))
    await writer.drain()

    # The server answers after 0.2 s and closes; without the close, aiohttp
    # would keep reading the rest of the body for ten more seconds.
    async with asyncio.timeout(2):
        received = await read_until_closed(reader)
    writer.close()

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in head
    assert json.loads(body) == {"error": "body not received within 0.2 s"}
    assert all(not received for received in cluster.received.values())


async def test_the_token_is_checked_before_the_body_is_waited_for(serve):
    reader, writer = await raw_connection(await serve(token=TOKEN, body_timeout_s=5))
    writer.write(partial_post(100, b'{"branch":'))
    await writer.drain()

    async with asyncio.timeout(2):
        status_line = await reader.readline()
    writer.close()

    assert status_line.startswith(b"HTTP/1.1 401 ")


async def test_a_caller_hanging_up_mid_body_is_logged_as_such_not_as_a_bug(serve, caplog):
    caplog.set_level(logging.INFO)
    port = await serve(token=TOKEN)
    reader, writer = await raw_connection(port)
    # With `Expect: 100-continue` the server says when its handler runs; a
    # caller gone before that never reaches the handler, so nothing is logged.
    writer.write(partial_post(100, b"", f"Authorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n"))
    await writer.drain()
    async with asyncio.timeout(2):
        assert (await reader.readline()).startswith(b"HTTP/1.1 100 ")
    writer.write(b'{"branch":')
    await writer.drain()
    writer.close()

    async with asyncio.timeout(2):
        while "caller hung up" not in caplog.text:
            await asyncio.sleep(0.01)

    hung_up = [record for record in caplog.records if "caller hung up" in record.getMessage()]
    assert [record.levelno for record in hung_up] == [logging.INFO]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert "bug while handling" not in caplog.text
    # The client still serves the next caller.
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"http://127.0.0.1:{port}/webHook", headers=BEARER,
                                      json={"branch": "main", "repository": "open"})
        assert response.status == 200


def test_the_client_will_not_listen_beyond_loopback_on_the_token_waiver(tmp_path, capsys):
    config_path = write_network(tmp_path)  # a loopback client with plain_without_token: true

    assert index_main(["--config", str(config_path), "--host", "0.0.0.0"]) == 2
    assert "plain_without_token" in capsys.readouterr().err


async def test_who_answers_is_public_and_names_only_the_client_and_its_process(guarded):
    # ./scripts/startClient.sh asks it, without the token, to tell its own client from any
    # other program on the port.
    response = await guarded.get("/client")
    assert response.status == 200
    assert await response.json() == {"name": CLIENT, "pid": os.getpid()}
