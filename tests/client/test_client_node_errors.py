"""Why a node does not answer the dashboard's questions, in words: "node 3 does not answer: connection refused"."""

import asyncio
import socket
import ssl
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from client import nodeviews
from client.nodeviews import network_view
from harness.network import free_port
from shared.config import NodeConfig


async def asked(node: NodeConfig) -> dict:
    async with aiohttp.ClientSession() as session:
        [view] = await network_view(session, [node])
    assert view["reachable"] is False and view["status"] is None  # the flag says unreachable, as before
    return view


async def asked_of_a_server(handle) -> dict:
    """The view of a node whose port is served by `handle(reader, writer)`, a raw TCP server."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        return await asked(node(server.sockets[0].getsockname()[1]))
    finally:
        server.close()


def node(port: int, scheme: str = "http", host: str = "127.0.0.1") -> NodeConfig:
    return NodeConfig(3, host, port, "00" * 32, scheme=scheme)


async def test_a_closed_port_is_connection_refused():
    view = await asked(node(free_port()))
    assert view["error"] == "node 3 does not answer: connection refused"


async def test_a_node_that_never_answers_timed_out(monkeypatch):
    monkeypatch.setattr(nodeviews, "ANSWER_TIMEOUT_S", 0.3)

    async def hold(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)
        writer.close()

    view = await asked_of_a_server(hold)
    assert view["error"] == "node 3 does not answer: timed out after 0.3 s"


async def test_a_node_that_hangs_up_closed_the_connection_without_answering():
    async def hang_up(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    view = await asked_of_a_server(hang_up)
    assert view["error"] == "node 3 does not answer: it closed the connection without answering"


async def test_tls_to_a_node_that_does_not_speak_it_failed_its_handshake(aiohttp_server):
    server = await aiohttp_server(web.Application())
    view = await asked(node(server.port, scheme="https"))
    assert view["error"] == "node 3 does not answer: TLS handshake failed: wrong version number"


KEY = SimpleNamespace(host="node3.example", port=9003, ssl=True)


@pytest.mark.parametrize("error, words", [
    (aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")), "name or service not known"),
    (aiohttp.ClientConnectorError(KEY, OSError(113, "No route to host")), "no route to host"),
    (aiohttp.ConnectionTimeoutError("Connection timeout to host"), "no connection within 2 s"),
    (asyncio.TimeoutError(), "timed out after 4 s"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "its answer broke off"),
    (aiohttp.ClientError("something odd\nhappened"), "ClientError: something odd happened"),
])
def test_each_failure_has_its_words(error, words):
    assert nodeviews._describe(node(9003), error) == f"node 3 does not answer: {words}"


def test_a_certificate_the_client_does_not_accept_is_named_with_the_reason():
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    refused.verify_message = "self-signed certificate"
    error = aiohttp.ClientConnectorCertificateError(KEY, refused)
    assert nodeviews._describe(node(9003), error) == \
        "node 3 does not answer: TLS certificate not accepted: self-signed certificate"
