"""The client set up for the sign-in tests: its accounts at the provider, its grants, the client
started with sign-in through a provider, and a browser's cookie jar."""

import dataclasses

import aiohttp

from client.app import make_app
from shared.config_principals import GrantConfig, SignInConfig
from tests.client.client_token import TOKEN, with_client_settings
from tests.client.fake_nodes import CLIENT
from tests.client.oidc_provider import CLIENT_ID, CLIENT_SECRET

ACCOUNTS = {"alice": ["developers"], "bob": []}
GRANTS = (GrantConfig("trigger", groups=("developers",), repositories=("hello",)),)


async def start_client_signing_in(cluster, aiohttp_client, port: int, issuer: str):
    """The client on `port` (its redirect URI names it), with the machine token, the grants and
    sign-in through `issuer`; its test client."""
    with_client_settings(cluster, token=TOKEN)
    client_config = dataclasses.replace(
        cluster.config.clients[0], public_url=f"http://127.0.0.1:{port}", grants=GRANTS,
        sign_in=SignInConfig(issuer, CLIENT_ID, CLIENT_SECRET, scopes=("openid", "profile", "groups")))
    cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
    return await aiohttp_client(make_app(cluster.config, CLIENT), server_kwargs={"port": port})


def a_browser() -> aiohttp.ClientSession:
    """A browser's part: cookies kept, for 127.0.0.1 too."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
