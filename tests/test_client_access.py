"""Who may make the client build or read its records, and how long a caller may take to send a body.

The plain call (`{"branch": ...}` without forge headers) needs the client's
bearer token when one is configured, and is refused outright when neither a
token nor the loopback-only opt-out is configured. Forge deliveries are
authenticated by their repository's webhook secret and never need the token.
The app runs against the fake nodes of tests/test_client_app.py.
"""

import dataclasses

import pytest

from client.access import AccessRules
from client.index import main as index_main
from client.intake import WebhookError
from tests.test_client_app import cluster, honest_result, start_client  # noqa: F401 (cluster is a fixture)
from tests.test_client_forges import GITHUB_PUSH, REPOSITORIES, encoded, github_headers
from tests.network import write_network

TOKEN = "c0ffee" * 8  # 48 characters
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def with_client_settings(cluster, **settings):  # noqa: F811
    client = dataclasses.replace(cluster.config.clients[0], **settings)
    cluster.config = dataclasses.replace(cluster.config, clients=(client,), repositories=REPOSITORIES)
    return cluster


@pytest.fixture
async def guarded(cluster, aiohttp_client):  # noqa: F811
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
    if accepted:
        rules.check_plain_call(headers)
        rules.check_reader(headers)
        return
    for check in (rules.check_plain_call, rules.check_reader):
        with pytest.raises(WebhookError) as caught:
            check(headers)
        assert caught.value.status == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_without_a_token_plain_calls_need_the_opt_out_and_reads_stay_open():
    with pytest.raises(WebhookError) as caught:
        AccessRules(token="", plain_without_token=False).check_plain_call({})
    assert caught.value.status == 403 and "token_file" in caught.value.reason
    AccessRules(token="", plain_without_token=True).check_plain_call({})
    AccessRules(token="", plain_without_token=False).check_reader({})


# --- the app ---------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
async def test_plain_call_without_the_token_is_401_and_nothing_is_sent(cluster, guarded, headers):  # noqa: F811
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


async def test_forge_delivery_needs_its_secret_not_the_token(cluster, guarded):  # noqa: F811
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


async def test_plain_call_is_403_without_a_token_or_the_opt_out(cluster, aiohttp_client):  # noqa: F811
    client = await start_client(aiohttp_client, with_client_settings(cluster, plain_without_token=False))

    response = await client.post("/webHook", json={"branch": "main", "repository": "open"})

    assert response.status == 403
    assert "token_file" in (await response.json())["error"]
    assert all(not received for received in cluster.received.values())
    # Forge deliveries and reading the records are unaffected.
    body = encoded(GITHUB_PUSH)
    assert (await client.post("/webHook", data=body, headers=github_headers(body))).status == 202
    assert (await client.get("/builds")).status == 200


async def test_plain_call_is_open_with_the_loopback_opt_out(cluster, aiohttp_client):  # noqa: F811
    client = await start_client(aiohttp_client, with_client_settings(cluster, plain_without_token=True))

    response = await client.post("/webHook", json={"branch": "main", "repository": "open"})

    assert response.status == 200


def test_the_client_will_not_listen_beyond_loopback_on_the_token_waiver(tmp_path, capsys):
    config_path = write_network(tmp_path)  # a loopback client with plain_without_token: true

    assert index_main(["--config", str(config_path), "--host", "0.0.0.0"]) == 2
    assert "plain_without_token" in capsys.readouterr().err
