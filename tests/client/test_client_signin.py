"""Signing in through a real OpenID provider (tests/client/oidc_provider.py), against fake
nodes: the session, its roles from the client's grants, CSRF, and signing out."""


import aiohttp
import pytest

from harness.network import free_port
from shared.config_principals import GrantConfig
from tests.client.github_oauth import CLIENT_SECRET as GITHUB_CLIENT_SECRET, GitHub
from tests.client.oidc_provider import provider, sign_in
from tests.client.signing_in import ACCOUNTS, a_browser, start_client_signing_in, start_client_signing_in_through_github


@pytest.fixture
async def setting(cluster, aiohttp_client):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with provider(f"{url}/auth/callback", ACCOUNTS) as issuer:
        await start_client_signing_in(cluster, aiohttp_client, port, issuer)
        async with a_browser() as browser:
            yield url, browser


async def test_a_person_signs_in_acts_with_the_roles_granted_to_their_groups_and_signs_out(setting):
    url, browser = setting
    landed = await sign_in(browser, url, "alice", "/dashboard/builds/1")
    assert landed.status == 200 and str(landed.url) == f"{url}/dashboard/builds/1"
    cookie = next(cookie for cookie in browser.cookie_jar if cookie.key == "pbft_session")
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not [cookie for cookie in browser.cookie_jar if cookie.key.startswith("pbft_signin_")]  # spent
    me = await (await browser.get(f"{url}/session")).json()
    assert (me["user"], me["groups"]) == ("alice", ["developers"]) and me["csrf"]

    body = {"repository": "hello", "branch": "main"}
    forged = await browser.post(f"{url}/webHook", json=body)  # what another site's form could send
    assert forged.status == 403 and "X-CSRF-Token" in (await forged.json())["error"]
    built = await browser.post(f"{url}/webHook", json=body, headers={"X-CSRF-Token": me["csrf"]})
    assert built.status == 200
    build_id = (await built.json())["build_id"]
    record = await (await browser.get(f"{url}/builds/{build_id}")).json()
    assert record["actor"] == {"kind": "user", "name": "alice"}
    refused = await browser.post(f"{url}/builds/{build_id}/cancel", headers={"X-CSRF-Token": me["csrf"]})
    assert refused.status == 403 and (await refused.json())["error"] == (
        "this needs the role operate: user alice has the role trigger")
    other = await browser.post(f"{url}/webHook", json={"repository": "open", "branch": "main"},
                               headers={"X-CSRF-Token": me["csrf"]})
    assert other.status == 403 and "on repository open: user alice has no role there" in (await other.json())["error"]

    assert (await browser.post(f"{url}/logout")).status == 403  # without its CSRF token
    out = await browser.post(f"{url}/logout", headers={"X-CSRF-Token": me["csrf"]})
    assert out.status == 200
    assert (await browser.get(f"{url}/session")).status == 401
    gone = await browser.get(f"{url}/builds", headers={"Cookie": f"pbft_session={cookie.value}"})
    assert gone.status == 401 and "sign in (GET /login)" in (await gone.json())["error"]


async def test_someone_granted_nothing_is_signed_in_and_reads_nothing(setting):
    url, browser = setting
    assert (await sign_in(browser, url, "bob")).status == 200
    assert (await (await browser.get(f"{url}/session")).json())["user"] == "bob"
    refused = await browser.get(f"{url}/builds")
    assert refused.status == 403 and (await refused.json())["error"] == (
        "this needs the role read: user bob has no role")


async def test_a_sign_in_that_returns_elsewhere_or_comes_back_unasked_is_refused(setting):
    url, browser = setting
    for next_path in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await browser.get(f"{url}/login", params={"next": next_path}, allow_redirects=False)
        assert response.status == 400, next_path
    unasked = await browser.get(f"{url}/auth/callback", params={"state": "made-up", "code": "made-up"})
    assert unasked.status == 400 and "this browser did not begin this sign-in" in (await unasked.json())["error"]
    denied = await browser.get(f"{url}/auth/callback", params={"error": "access_denied<script>"})
    assert denied.status == 400 and (await denied.json())["error"] == (
        "the provider did not sign you in: access_denied?script?")


async def test_a_person_makes_a_token_for_their_scripts_which_acts_with_their_groups_until_revoked(setting):
    url, browser = setting
    await sign_in(browser, url, "alice")
    csrf = {"X-CSRF-Token": (await (await browser.get(f"{url}/session")).json())["csrf"]}
    assert (await browser.post(f"{url}/tokens", json={"label": "laptop"})).status == 403  # no CSRF token
    made = await browser.post(f"{url}/tokens", json={"label": "laptop", "days": 7}, headers=csrf)
    assert made.status == 201
    token_id, token = (await made.json())["token_id"], (await made.json())["token"]
    script = {"Authorization": f"Bearer {token}"}

    async with aiohttp.ClientSession() as other:  # a script: no cookie
        built = await other.post(f"{url}/webHook", json={"repository": "hello", "branch": "main"}, headers=script)
        assert built.status == 200  # trigger on hello, through her group developers
        record = await (await other.get(f"{url}/builds/{(await built.json())['build_id']}", headers=script)).json()
        assert record["actor"] == {"kind": "token", "name": "alice"}
        refused = await other.post(f"{url}/tokens", json={}, headers=script)
        assert refused.status == 401  # a token does not make tokens
        listed = (await (await browser.get(f"{url}/tokens")).json())["tokens"]
        assert [(t["token_id"], t["owner"], t["label"], t["role"]) for t in listed] == [
            (token_id, "alice", "laptop", None)]
        assert (await browser.post(f"{url}/tokens/{token_id}/revoke", headers=csrf)).status == 200
        assert (await other.get(f"{url}/builds", headers=script)).status == 401
        assert (await browser.post(f"{url}/tokens/{token_id}/revoke", headers=csrf)).status == 404


async def test_a_provider_that_rotated_its_keys_is_asked_for_them_again(cluster, aiohttp_client):
    port, provider_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    with provider(f"{url}/auth/callback", ACCOUNTS, provider_port, own_key=True) as issuer:
        await start_client_signing_in(cluster, aiohttp_client, port, issuer)
        async with a_browser() as browser:
            assert (await sign_in(browser, url, "alice")).status == 200  # the client fetched its keys
    # The same provider started again signs with new keys, which the client has not seen.
    with provider(f"{url}/auth/callback", ACCOUNTS, provider_port, own_key=True):
        async with a_browser() as browser:
            assert (await sign_in(browser, url, "bob")).status == 200
            assert (await (await browser.get(f"{url}/session")).json())["user"] == "bob"


async def test_a_person_signs_in_through_github_with_their_organizations_and_teams_as_groups(
    cluster, aiohttp_client, aiohttp_server,
):
    github = GitHub("octocat", orgs=["octo-org"], teams=[("octo-org", "developers")])
    grants = (GrantConfig("trigger", groups=("octo-org/developers",), repositories=("hello",)),)
    url = await start_client_signing_in_through_github(cluster, aiohttp_client, await aiohttp_server(github.app()),
                                                       grants=grants)
    async with a_browser() as browser:
        landed = await browser.get(f"{url}/login?next=/dashboard")
        assert landed.status == 200 and str(landed.url) == f"{url}/dashboard"
        me = await (await browser.get(f"{url}/session")).json()
        assert (me["user"], me["groups"]) == ("octocat", ["octo-org", "octo-org/developers"])
        built = await browser.post(f"{url}/webHook", json={"repository": "hello", "branch": "main"},
                                   headers={"X-CSRF-Token": me["csrf"]})
        assert built.status == 200
        record = await (await browser.get(f"{url}/builds/{(await built.json())['build_id']}")).json()
        assert record["actor"] == {"kind": "user", "name": "octocat"}
    [exchanged] = github.exchanged  # the code went back with the secret and the PKCE verifier
    assert exchanged["client_secret"] == GITHUB_CLIENT_SECRET and exchanged["code_verifier"]


async def test_a_github_code_traded_without_the_clients_secret_signs_nobody_in(cluster, aiohttp_client, aiohttp_server):
    github = GitHub("octocat", orgs=[], teams=[])
    url = await start_client_signing_in_through_github(cluster, aiohttp_client, await aiohttp_server(github.app()),
                                                       secret="not-the-secret")
    async with a_browser() as browser:
        refused = await browser.get(f"{url}/login?next=/dashboard")
        assert refused.status == 400
        assert "GitHub refused the sign-in: bad_verification_code" in (await refused.json())["error"]
        assert (await browser.get(f"{url}/session")).status == 401
