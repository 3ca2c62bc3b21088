"""The client set up for the sign-in tests: its accounts at the provider, its grants, the client
started with sign-in through a provider, and a browser's cookie jar."""

import dataclasses

import aiohttp

from client.app import make_app
from harness.network import free_port
from shared.config_principals import GrantConfig, SignInConfig
from tests.client.client_token import TOKEN, with_client_settings
from tests.client.fake_nodes import CLIENT
from tests.client.github_oauth import CLIENT_ID as GITHUB_CLIENT_ID, CLIENT_SECRET as GITHUB_CLIENT_SECRET
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


async def start_client_signing_in_through_github(cluster, aiohttp_client, github_server, *, grants: tuple = (),
                                                 secret: str = GITHUB_CLIENT_SECRET) -> str:
    """The client on a port of its own, with the machine token, `grants` and sign-in through the
    GitHub that `github_server` serves, with `secret` as its client secret there; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with_client_settings(cluster, token=TOKEN)
    client_config = dataclasses.replace(
        cluster.config.clients[0], public_url=url, grants=grants,
        sign_in=SignInConfig(str(github_server.make_url("")).rstrip("/"), GITHUB_CLIENT_ID, secret, provider="github"))
    cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
    await aiohttp_client(make_app(cluster.config, CLIENT), server_kwargs={"port": port})
    return url


def a_browser() -> aiohttp.ClientSession:
    """A browser's part: cookies kept, for 127.0.0.1 too."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
