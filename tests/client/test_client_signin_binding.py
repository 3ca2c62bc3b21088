"""A sign-in is finished only by the browser that began it (client.signinpending), with a real
OpenID provider (tests/client/oidc_provider.py) and GitHub's flow as tests/client/github_oauth.py
plays it: a return URL handed to another browser signs nobody in, a flood of `GET /login`
pushes out no one's sign-in, and a sign-in's cookie that was changed or is too old is refused."""

import asyncio
import dataclasses
import time

import aiohttp
import pytest

from client.app import make_app
from client.signin import SIGNIN_KEY
from client.signinpending import PENDING_S
from harness.network import free_port
from tests.client.fake_nodes import CLIENT
from tests.client.github_oauth import GitHub
from tests.client.oidc_provider import login_form, provider, return_url, signed_in_at_provider
from tests.client.signing_in import ACCOUNTS, a_browser, start_client_signing_in, start_client_signing_in_through_github

FLOOD = 2000
FLOOD_AT_ONCE = 50
NOT_BEGUN_HERE = "this browser did not begin this sign-in"


@pytest.fixture
async def signing_in(cluster, aiohttp_client):
    """The client's URL and its sign-in (whose clock a test may move), with a real provider."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with provider(f"{url}/auth/callback", ACCOUNTS) as issuer:
        client = await start_client_signing_in(cluster, aiohttp_client, port, issuer)
        yield url, client.server.app[SIGNIN_KEY]


def signin_cookies(browser: aiohttp.ClientSession) -> dict[str, str]:
    return {cookie.key: cookie.value for cookie in browser.cookie_jar if cookie.key.startswith("pbft_signin_")}


async def nobody_signed_in(browser: aiohttp.ClientSession, url: str) -> bool:
    return (await browser.get(f"{url}/session")).status == 401 and not [
        cookie for cookie in browser.cookie_jar if cookie.key == "pbft_session"]


async def test_a_return_url_opened_in_a_browser_that_did_not_begin_the_sign_in_signs_nobody_in(signing_in):
    url, _ = signing_in
    async with a_browser() as attacker, a_browser() as victim:
        # Someone signs in as themselves at the provider and stops before the way back.
        form = await login_form(attacker, url)
        [(name, _)] = signin_cookies(attacker).items()
        returning = await return_url(attacker, form, "bob", f"{url}/auth/callback")

        refused = await victim.get(returning, allow_redirects=False)
        assert refused.status == 400 and NOT_BEGUN_HERE in (await refused.json())["error"]
        assert "pbft_session" not in refused.cookies
        assert await nobody_signed_in(victim, url)

        # The URL itself was good: the browser that began the sign-in finishes it (the
        # refusal above never took its code to the provider), and its cookie is spent.
        landed = await attacker.get(returning)
        assert landed.status == 200 and str(landed.url) == f"{url}/dashboard"
        assert (await (await attacker.get(f"{url}/session")).json())["user"] == "bob"
        assert name not in signin_cookies(attacker)


async def test_a_flood_of_sign_ins_begun_pushes_out_no_one_elses(signing_in):
    url, _ = signing_in
    async with a_browser() as person, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as flood:
        form = await login_form(person, url, "/dashboard/builds/7")  # begun before the flood

        async def begin() -> int:
            async with flood.get(f"{url}/login", allow_redirects=False) as response:
                return response.status

        for _ in range(FLOOD // FLOOD_AT_ONCE):
            assert set(await asyncio.gather(*(begin() for _ in range(FLOOD_AT_ONCE)))) == {302}

        landed = await signed_in_at_provider(person, form, "alice")  # and finished after it
        assert landed.status == 200 and str(landed.url) == f"{url}/dashboard/builds/7"
        assert (await (await person.get(f"{url}/session")).json())["user"] == "alice"


async def test_a_sign_ins_cookie_changed_or_older_than_ten_minutes_is_refused_and_tabs_keep_their_own(signing_in):
    url, sign_in = signing_in
    async with a_browser() as browser:
        # Three tabs of one browser begin a sign-in each, and each gets as far as the way back.
        forms = [await login_form(browser, url, f"/dashboard/builds/{tab}") for tab in range(3)]
        cookies = signin_cookies(browser)
        assert len(cookies) == 3
        returns = [await return_url(browser, form, "alice", f"{url}/auth/callback") for form in forms]
        changed, late, in_time = returns

        # The first tab's cookie with one character changed, sent as that browser would.
        [(name, value)] = [(name, value) for name, value in cookies.items()
                           if f"state={name.removeprefix('pbft_signin_')}" in changed]
        tampered = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
        async with aiohttp.ClientSession(cookies={name: tampered}) as forged:
            refused = await forged.get(changed, allow_redirects=False)
            assert refused.status == 400 and NOT_BEGUN_HERE in (await refused.json())["error"]
            assert await nobody_signed_in(forged, url)

        began = time.time()
        sign_in.clock = lambda: began + PENDING_S + 1
        too_late = await browser.get(late, allow_redirects=False)
        assert too_late.status == 400 and (await too_late.json())["error"] == (
            "this sign-in began more than ten minutes ago: sign in again")
        assert await nobody_signed_in(browser, url) and len(signin_cookies(browser)) == 2  # spent all the same

        sign_in.clock = lambda: began + PENDING_S - 30
        landed = await browser.get(in_time)
        assert landed.status == 200 and str(landed.url) == f"{url}/dashboard/builds/2"
        assert (await (await browser.get(f"{url}/session")).json())["user"] == "alice"


async def test_a_begun_sign_in_is_a_cookie_for_the_return_route_only_secure_on_https(cluster, aiohttp_client):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with provider(f"{url}/auth/callback", ACCOUNTS) as issuer:
        client = await start_client_signing_in(cluster, aiohttp_client, port, issuer)
        begun = await client.get("/login", allow_redirects=False)
    assert begun.status == 302
    [cookie] = begun.cookies.values()
    assert cookie.key.startswith("pbft_signin_") and cookie["path"] == "/auth/callback"
    assert (cookie["max-age"], cookie["httponly"], cookie["samesite"], cookie["secure"]) == ("600", True, "Lax", "")

    # Behind https (under a path of a proxy's), it goes over https only, to that path's return route.
    with provider("https://ci.example.test/ci/auth/callback", ACCOUNTS) as issuer:
        client_config = cluster.config.clients[0]
        client_config = dataclasses.replace(client_config, public_url="https://ci.example.test/ci",
                                            sign_in=dataclasses.replace(client_config.sign_in, issuer=issuer))
        cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
        secure = await aiohttp_client(make_app(cluster.config, CLIENT))
        begun = await secure.get("/login", allow_redirects=False)
    [cookie] = begun.cookies.values()
    assert cookie["secure"] is True and cookie["path"] == "/ci/auth/callback"


async def test_a_github_return_url_opened_in_another_browser_signs_nobody_in(cluster, aiohttp_client, aiohttp_server):
    github = GitHub("octocat", orgs=[], teams=[])
    url = await start_client_signing_in_through_github(cluster, aiohttp_client, await aiohttp_server(github.app()))
    async with a_browser() as attacker, a_browser() as victim:
        to_github = await attacker.get(f"{url}/login", allow_redirects=False)
        back = await attacker.get(to_github.headers["Location"], allow_redirects=False)
        returning = back.headers["Location"]
        assert returning.startswith(f"{url}/auth/callback?")
        refused = await victim.get(returning, allow_redirects=False)
        assert refused.status == 400 and NOT_BEGUN_HERE in (await refused.json())["error"]
        assert await nobody_signed_in(victim, url)
        assert github.exchanged == []  # the code never went to GitHub
        assert (await attacker.get(returning)).status == 200
        assert (await (await attacker.get(f"{url}/session")).json())["user"] == "octocat"
