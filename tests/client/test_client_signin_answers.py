"""The provider's answers as a real provider's server sends them over a real socket: read whole
however many pieces they arrive in, and refused with a 502 past their bound."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from client import signin
from client.intake import WebhookError
from client.signin import SignIn
from shared.config_principals import SignInConfig

CHUNK_BYTES = 4096


async def discovery(request: web.Request) -> web.StreamResponse:
    """A discovery document of about 100 KiB (providers list many claims, scopes and
    algorithms), sent a few KiB at a time as it leaves a server on a real network."""
    issuer = str(request.url.origin())
    document = {"issuer": issuer, "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks", "claims_supported": [f"claim_{index}" for index in range(8000)]}
    body = json.dumps(document).encode()
    assert len(body) > 64 * 1024  # more than one read of the stream ever gives
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for start in range(0, len(body), CHUNK_BYTES):
            await response.write(body[start:start + CHUNK_BYTES])
            await asyncio.sleep(0.001)  # the next segment is still on its way
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client stopped reading an answer over its bound
    return response


@pytest.fixture
async def provider(aiohttp_server):
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        issuer = str(server.make_url("")).rstrip("/")
        yield SignIn(SignInConfig(issuer=issuer, client_id="pbft-ci"), "http://127.0.0.1:8080/auth/callback", http)


async def test_a_discovery_document_that_arrives_in_many_pieces_is_read_whole(provider):
    url, _ = await provider.begin("/dashboard")
    assert url.startswith(f"{provider.settings.issuer}/auth?")


async def test_an_answer_over_its_bound_is_refused_as_too_large(provider, monkeypatch):
    monkeypatch.setattr(signin, "MAX_DOCUMENT_BYTES", 32 * 1024)
    with pytest.raises(WebhookError) as refused:
        await provider.begin("/dashboard")
    assert refused.value.status == 502 and "is too large" in refused.value.reason
