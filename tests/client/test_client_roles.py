"""Roles: every route asks for one, every caller has one (client.access). Against fake nodes,
with the client's machine token set and a personal token of each role."""

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from client.access import ROLES, granted
from client.app import make_app
from client.index import main, parse_args
from client.keys import RECORDS_KEY
from client.records import BuildRecords, records_path
from client.tables.tokens import TokenMade, TokenRefused
from client.tokencli import DEFAULT_CONFIG, token_command
from shared.config import load_config
from shared.config_principals import GrantConfig
from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import start_client
from tests.client.forge_deliveries import settled
from tests.client.signed_network import Network

# Every route that reads or changes something, with the role it asks for. The route's own
# answer past the check (200, 202, a 400 for an empty body, a 404 for no such approval, a
# 409 for a build with a verdict) shows the check let the caller through.
ROUTES = [
    ("GET", "/builds", "read"),
    ("GET", "/builds/{id}", "read"),
    ("GET", "/builds/{id}/certificate", "read"),
    ("GET", "/builds/{id}/attestation", "read"),
    ("GET", "/builds/{id}/in-toto", "read"),
    ("GET", "/builds/{id}/provenance", "read"),
    ("GET", "/builds/{id}/log?node=0", "read"),
    ("GET", "/builds/{id}/artifacts", "read"),
    ("GET", "/builds/{id}/artifacts/a.txt", "read"),
    ("GET", "/builds/{id}/nodes", "read"),
    ("GET", "/network", "read"),
    ("GET", "/approvals", "read"),
    ("GET", "/approvals/1", "read"),
    ("GET", "/audit", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/badge/hello/main.svg", "read"),
    ("POST", "/webHook", "trigger"),
    ("POST", "/builds/{id}/rerun", "operate"),
    ("POST", "/builds/{id}/rerun-failed", "operate"),
    ("POST", "/builds/{id}/cancel", "operate"),
    ("POST", "/builds/{id}/actions", "operate"),
    # Trigger at least; the environment's own role is asked once the action is known to wait
    # (tests/client/test_client_deploys.py).
    ("POST", "/builds/{id}/actions/deploy/approve", "trigger"),
    ("POST", "/approvals/1/approve", "approve"),
    ("POST", "/network/changes", "admin"),
]
# What is the whole network's asks for the role on every repository.
WHOLE_NETWORK = {"/network", "/metrics", "/network/changes"}
# The pages themselves hold no record (they load it with the caller's token), and which client
# answers on this port opens nothing.
PUBLIC = ["/client", "/dashboard", "/dashboard/network", "/dashboard/builds/1", "/dashboard/static/dashboard.js"]


def personal_tokens(app) -> dict[str, str]:
    tokens = app[RECORDS_KEY].tokens
    return {role: tokens.create(TokenMade(f"{role}-person", "matrix", role, 1), time.time())[1] for role in ROLES}


async def call(client, method: str, path: str, headers: dict):
    body = {"json": {"repository": "hello", "branch": "main"}} if path == "/webHook" else {"data": b""}
    return await client.request(method, path, headers=headers, **body)


async def test_every_route_asks_its_role_of_every_caller(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"repository": "hello", "branch": "main"}, headers=BEARER)
    build_id = (await response.json())["build_id"]
    await settled(client, build_id, BEARER)
    tokens = personal_tokens(client.server.app)

    for method, template, needed in ROUTES:
        path = template.format(id=build_id)
        anonymous = await call(client, method, path, {})
        assert anonymous.status == 401, (method, path)
        for role, token in [*tokens.items(), ("admin", TOKEN)]:
            response = await call(client, method, path, {"Authorization": f"Bearer {token}"})
            if ROLES.index(role) >= ROLES.index(needed):
                assert response.status not in (401, 403), (method, path, role, await response.text())
            else:
                assert response.status == 403, (method, path, role)
                error = (await response.json())["error"]
                if path in WHOLE_NETWORK:
                    expected = (f"this needs the role {needed} on every repository: "
                                f"token {role}-person has {role} on every repository")
                else:
                    expected = f"this needs the role {needed}: token {role}-person has the role {role}"
                assert error == expected, error
    for path in PUBLIC:
        assert (await client.get(path)).status == 200, path


async def test_a_personal_token_acts_for_its_owner_until_it_expires_or_is_revoked(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    tokens = client.server.app[RECORDS_KEY].tokens
    token_id, token = tokens.create(TokenMade("alice", "laptop", "trigger", 1), time.time())
    bearer = {"Authorization": f"Bearer {token}"}

    response = await client.post("/webHook", json={"repository": "hello", "branch": "main"}, headers=bearer)
    assert response.status == 200
    build_id = (await response.json())["build_id"]
    record = await (await client.get(f"/builds/{build_id}", headers=bearer)).json()
    assert record["actor"] == record["request"]["operation"]["actor"] == {"kind": "token", "name": "alice"}
    stored = client.server.app[RECORDS_KEY].store.read("SELECT hash FROM tokens").fetchone()[0]
    assert token not in stored and len(stored) == 64  # its sha256, never the token

    _, expired = tokens.create(TokenMade("bob", "old", "admin", 1), time.time() - 2 * 86400)
    refused = await client.get("/builds", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status == 401 and "token 2 of bob expired on" in (await refused.json())["error"]
    assert tokens.revoke(token_id, time.time()) and not tokens.revoke(token_id, time.time())
    refused = await client.get("/builds", headers=bearer)
    assert refused.status == 401 and f"token {token_id} of alice was revoked on" in (await refused.json())["error"]
    unknown = await client.get("/builds", headers={"Authorization": "Bearer pbft_" + "x" * 43})
    assert unknown.status == 401 and (await unknown.json())["error"] == "wrong bearer token"


@pytest.mark.parametrize("argv, code", [(["create", "--owner", "a b", "--role", "read"], 2),
                                         (["create", "--owner", "alice", "--role", "root"], 2),
                                         (["create", "--owner", "alice", "--role", "read", "--days", "400"], 2)])
def test_the_token_command_refuses_what_it_cannot_make(argv, code):
    with pytest.raises(SystemExit) as exited:
        token_command(argv, "client/index.py")
    assert exited.value.code == code


def test_the_token_command_makes_lists_and_revokes_tokens_the_records_keep(tmp_path, capsys):
    network = Network(tmp_path)
    config = ["--config", str(network.config_path)]
    path = records_path(network.config.data_dir, network.config.clients[0].name)
    BuildRecords(path).close()  # as the client does when it starts
    assert main(["token", *config, "create", "--owner", "alice", "--role", "approve", "--days", "7"]) == 0
    made = capsys.readouterr()
    token = made.out.strip()
    assert token.startswith("pbft_") and "token 1 for alice, role approve on every repository, valid 7 days" in made.err
    assert f"in the records of client client ({path})" in made.err
    records = BuildRecords(path)
    try:
        assert records.tokens.holder(token, time.time()).role == "approve"
        assert main(["token", "list", *config]) == 0  # the options after the verb, as before it
        assert capsys.readouterr().out.startswith("1\talice\tapprove\t*\tapi\texpires ")
        assert main(["token", *config, "revoke", "1"]) == 0
        assert main(["token", *config, "revoke", "1"]) == 1  # once
        with pytest.raises(TokenRefused, match="was revoked"):
            records.tokens.holder(token, time.time())
    finally:
        records.close()


def test_the_token_command_makes_no_records_of_a_client_that_never_ran_there(tmp_path, capsys):
    network = Network(tmp_path)
    path = records_path(network.config.data_dir, network.config.clients[0].name)
    for verb in (["create", "--owner", "alice"], ["list"], ["revoke", "1"]):
        assert main(["token", "--config", str(network.config_path), *verb]) == 2
        assert capsys.readouterr().err.startswith(f"no records of client client at {path}: that client has not run")
    assert not network.config.data_dir.exists()


async def test_a_token_the_command_makes_without_config_is_one_the_client_run_by_default_accepts(
    tmp_path, monkeypatch, aiohttp_client, capsys,
):
    # The client and the command, both run without --config from the same folder, read the same records.
    network = Network(tmp_path / Path(DEFAULT_CONFIG).parent)
    monkeypatch.chdir(tmp_path)
    assert parse_args([]).config == DEFAULT_CONFIG and (tmp_path / DEFAULT_CONFIG).samefile(network.config_path)
    client = await aiohttp_client(make_app(load_config(parse_args([]).config), "client"))
    assert main(["token", "create", "--owner", "alice", "--role", "read"]) == 0
    token = capsys.readouterr().out.strip()
    assert (await client.get("/builds", headers={"Authorization": f"Bearer {token}"})).status == 200
    assert (await client.get("/builds", headers={"Authorization": "Bearer pbft_" + "x" * 43})).status == 401


async def test_a_token_made_for_some_repositories_sees_and_acts_on_those_only(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    other = (await (await client.post("/webHook", json={"repository": "open", "branch": "main"},
                                      headers=BEARER)).json())["build_id"]
    _, token = client.server.app[RECORDS_KEY].tokens.create(
        TokenMade("carol", "hello-ci", "operate", 1, frozenset({"hello", "webhooks"})), time.time())
    bearer = {"Authorization": f"Bearer {token}"}

    response = await client.post("/webHook", json={"repository": "hello", "branch": "main"}, headers=bearer)
    assert response.status == 200
    mine = (await response.json())["build_id"]
    refused = await client.post("/webHook", json={"repository": "open", "branch": "main"}, headers=bearer)
    assert refused.status == 403 and (await refused.json())["error"] == (
        "this needs the role trigger on repository open: token carol has no role there")

    listed = (await (await client.get("/builds", headers=bearer)).json())["builds"]
    assert [build["build_id"] for build in listed] == [mine]
    assert [entry["build_id"] for entry in (await (await client.get("/audit", headers=bearer)).json())["actions"]] == [
        mine]
    for method, path in (("GET", f"/builds/{other}"), ("GET", f"/builds/{other}/certificate"),
                         ("POST", f"/builds/{other}/rerun"), ("GET", "/badge/open/main.svg")):
        response = await client.request(method, path, headers=bearer)
        assert response.status == 403 and "on repository open:" in (await response.json())["error"], path
    for path in ("/network", "/metrics"):  # the whole network's
        response = await client.get(path, headers=bearer)
        assert response.status == 403 and "on every repository:" in (await response.json())["error"], path
    assert (await client.post(f"/builds/{mine}/rerun", headers=bearer)).status == 202
    # The machine token still sees every repository.
    assert len((await (await client.get("/builds", headers=BEARER)).json())["builds"]) == 3


GRANTS = (
    GrantConfig("read", groups=("staff",)),
    GrantConfig("trigger", users=("dave",), repositories=("hello",)),
    GrantConfig("approve", users=("erin",), groups=("maintainers",), repositories=("hello", "open")),
    GrantConfig("operate", users=("erin",)),
)


@pytest.mark.parametrize("user, groups, everywhere, on", [
    ("dave", (), None, {"hello": "trigger"}),
    ("dave", ("staff",), "read", {"hello": "trigger"}),
    ("erin", (), "operate", {"hello": "approve", "open": "approve"}),
    ("frank", ("maintainers", "staff"), "read", {"hello": "approve", "open": "approve"}),
    ("mallory", ("STAFF",), None, {}),  # names are compared exactly
])
def test_a_person_has_the_highest_role_any_grant_naming_them_gives_on_each_repository(user, groups, everywhere, on):
    assert granted(GRANTS, user, groups) == (everywhere, on)


async def test_a_token_made_without_a_role_acts_with_what_its_owner_is_granted(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    cluster.config = dataclasses.replace(cluster.config, clients=(
        dataclasses.replace(cluster.config.clients[0], grants=GRANTS),))
    client = await start_client(aiohttp_client, cluster)
    _, token = client.server.app[RECORDS_KEY].tokens.create(TokenMade("dave", "laptop", None, 1), time.time())
    bearer = {"Authorization": f"Bearer {token}"}

    assert (await client.post("/webHook", json={"repository": "hello", "branch": "main"}, headers=bearer)).status == 200
    refused = await client.post("/webHook", json={"repository": "open", "branch": "main"}, headers=bearer)
    assert refused.status == 403 and (await refused.json())["error"] == (
        "this needs the role trigger on repository open: token dave has no role there")
    listed = (await (await client.get("/builds", headers=bearer)).json())["builds"]
    assert [build["repository"] for build in listed] == ["hello"] and listed[0]["actor"] == {
        "kind": "token", "name": "dave"}
    cancel = await client.post(f"/builds/{listed[0]['build_id']}/cancel", headers=bearer)
    assert cancel.status == 403 and (await cancel.json())["error"] == (
        "this needs the role operate: token dave has the role trigger")


def test_records_of_version_10_gain_the_groups_of_a_tokens_owner(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    _, token = records.tokens.create(TokenMade("alice", "old", "read", 1), time.time())
    records.close()
    with sqlite3.connect(path) as db:  # as version 10 left a file
        db.execute("ALTER TABLE tokens DROP COLUMN groups")
        db.execute("PRAGMA user_version = 10")
    records = BuildRecords(path)
    try:
        assert records.tokens.holder(token, time.time()).groups == ()
        assert records.store.read("PRAGMA user_version").fetchone()[0] == 14
    finally:
        records.close()
