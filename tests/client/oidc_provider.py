"""A real OpenID provider for the sign-in tests: panva's oidc-provider (npm, tests/oidc,
installed by scripts/setup.sh) run by Node.js on a loopback port, and a browser's part of
its sign-in played over HTTP: its login form filled and posted, its redirects followed."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import select
import subprocess
import time
from pathlib import Path
from typing import Iterator

import aiohttp
import yarl
from Crypto.PublicKey import ECC

from harness.network import free_port

PROVIDER = Path(__file__).resolve().parent.parent / "oidc" / "provider.mjs"
CLIENT_ID, CLIENT_SECRET = "pbft-ci-dashboard", "a-secret-of-the-client-at-the-provider"
START_TIMEOUT_S = 20.0


@contextlib.contextmanager
def provider(redirect_uri: str, accounts: dict[str, list[str]], port: int | None = None,
             own_key: bool = False) -> Iterator[str]:
    """Run the provider for one client (`redirect_uri`) and `accounts` (name -> groups), on
    `port` (a free one if None); yield its issuer URL. It stops when the block ends, and with
    this process if it dies (its standard input closes). With `own_key`, it signs ID tokens
    with an ES256 key made for this run (the library's development keys never change)."""
    if not (PROVIDER.parent / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("tests/oidc has no node_modules: run scripts/setup.sh (PBFT_CI_TEST_IMAGES=1)")
    port = free_port() if port is None else port
    issuer = f"http://127.0.0.1:{port}"
    config = {"issuer": issuer, "port": port, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "redirect_uri": redirect_uri, "accounts": {name: {"groups": groups} for name, groups in accounts.items()}}
    if own_key:
        config["jwks"] = {"keys": [_ec_jwk()]}
    # Unbuffered: `_wait_until_listening` selects on the pipe, which a buffered reader would
    # have emptied into its own buffer, lines and all, after the first line it read.
    process = subprocess.Popen(["node", str(PROVIDER), json.dumps(config)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    try:
        _wait_until_listening(process)
        yield issuer
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _ec_jwk() -> dict:
    """A fresh P-256 private key as a JWK."""
    key = ECC.generate(curve="P-256")

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode("ascii")

    return {"kty": "EC", "crv": "P-256", "kid": secrets.token_hex(8), "use": "sig", "alg": "ES256",
            "x": b64(int(key.pointQ.x)), "y": b64(int(key.pointQ.y)), "d": b64(int(key.d))}


def _wait_until_listening(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    said = []
    while True:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = process.stdout.readline() if ready else b""
        if b"listening" in line:
            return
        said.append(line.decode(errors="replace"))
        if not ready or not line:
            raise RuntimeError(f"the OpenID provider did not listen within {START_TIMEOUT_S:g} s; "
                               f"it said: {''.join(said)[-2000:]!r}")


async def sign_in(browser: aiohttp.ClientSession, client_url: str, login: str, next_path: str = "/dashboard"
                  ) -> aiohttp.ClientResponse:
    """What a browser does to sign in at `client_url` as `login`: the client's /login, the
    provider's login form, back to the client; the last answer (the page it returns to)."""
    return await signed_in_at_provider(browser, await login_form(browser, client_url, next_path), login)


async def login_form(browser: aiohttp.ClientSession, client_url: str, next_path: str = "/dashboard") -> str:
    """The first half of a sign-in: the client's /login, on to the provider's login form; where
    the form posts to."""
    form_page = await browser.get(f"{client_url}/login", params={"next": next_path})
    html = await form_page.text()
    found = re.search(r'<form[^>]*action="([^"]+)"', html)
    assert form_page.status == 200 and found, f"no login form at the provider: {form_page.status} {html[:300]}"
    return found.group(1)


async def signed_in_at_provider(browser: aiohttp.ClientSession, form_action: str, login: str
                                ) -> aiohttp.ClientResponse:
    """The second half: the provider's login form posted as `login`, and the redirects followed
    back to the client; the last answer."""
    return await browser.post(form_action, data={"prompt": "login", "login": login, "password": "any"})


async def return_url(browser: aiohttp.ClientSession, form_action: str, login: str, redirect_uri: str) -> str:
    """The second half stopped short: the provider's login form posted as `login` and its own
    redirects followed, up to the one that would take the browser back to the client
    (`redirect_uri`), which is returned, not followed."""
    response = await browser.post(form_action, data={"prompt": "login", "login": login, "password": "any"},
                                  allow_redirects=False)
    for _ in range(10):
        location = response.headers.get("Location", "")
        assert response.status in (302, 303) and location, f"the provider answered {response.status}"
        url = str(response.url.join(yarl.URL(location)))
        if url.startswith(f"{redirect_uri}?"):
            return url
        response = await browser.get(url, allow_redirects=False)
    raise AssertionError("the provider never sent the browser back to the client")
