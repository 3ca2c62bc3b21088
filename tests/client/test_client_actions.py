"""`POST /builds/{id}/actions`: what an action runner (runner/) reports of the actions after a
build's verdict, signed with the runner's own key (shared/actionreport.py), kept with the build's
record under the runner's name. A report that is not the word of a runner the client lists, for
this build, newer than the one kept, gets a 4xx with the reason; the bearer token alone writes
nothing."""

import asyncio
import sqlite3
import time

import pytest

from client.records import BuildRecords, records_path
from client.tables.schema import ACTION_COLUMNS_OF_8, ACTION_COLUMNS_OF_14
from shared.actionreport import ActionReport
from shared.crypto import generate_private_key
from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import CLIENT, RUNNER, post, start_client

# What the runner says of action deploy; report() makes it a signed body.
DEPLOYED = {"action": "deploy", "state": "success", "exit_code": 0, "reason": ""}


def report(cluster, build_id: int, *, key=None, runner: str = RUNNER, stamp_us: int | None = None, **said) -> dict:
    """The body of a report of `build_id` signed by `runner` with `key` (by default, the runner the
    client lists, with its key), stamped now unless `stamp_us` says otherwise."""
    fields = {**DEPLOYED, **said}
    stamp_us = time.time_ns() // 1000 if stamp_us is None else stamp_us
    return ActionReport(build_id, runner=runner, stamp_us=stamp_us, **fields).signed_body(key or cluster.runner_key)


async def deployed(client) -> int:
    """A build with a certified verdict that ran a .pbft-ci.yml, as a deploy's build does."""
    status, verdict = await post(client, {"branch": "deploy"})
    assert status == 200, verdict
    return int(verdict["build_id"])


async def actions_of(client, build_id: int) -> list[dict]:
    return (await (await client.get(f"/builds/{build_id}")).json())["actions"]


async def refusal(response) -> tuple[int, str]:
    return response.status, (await response.json())["error"]


async def test_a_signed_report_is_kept_with_its_runner_and_the_newest_word(cluster, client):
    build_id = await deployed(client)
    url = f"/builds/{build_id}/actions"
    running = report(cluster, build_id, state="running", exit_code=None, stamp_us=1_000)
    response = await client.post(url, json=running)
    assert response.status == 200, await response.text()
    assert (await response.json())["runner"] == RUNNER
    assert (await client.post(url, json=report(cluster, build_id, stamp_us=2_000))).status == 200

    (action,) = await actions_of(client, build_id)
    assert (action["name"], action["state"], action["exit_code"], action["runner"], action["stamp_us"]) == (
        "deploy", "success", 0, RUNNER, 2_000)
    # The record keeps what anyone holding the runner's public key can check later.
    kept = ActionReport(build_id, action["name"], action["state"], action["exit_code"], action["reason"],
                        action["runner"], action["stamp_us"])
    assert kept.verifies(cluster.runner_key.public_key(), action["sig"])


@pytest.mark.parametrize("body, reason", [
    (b"[" * 4000 + b"]" * 96, "body is nested too deeply"),  # json.loads recursed past Python's limit
    (b"{\"action\": ", "body is not valid JSON: Expecting value: line 1 column 12 (char 11)"),
    (b"\xff", "body is not UTF-8"),
    (b"[]", "body must be a JSON object"),
], ids=["nested too deeply", "cut short", "not UTF-8", "a list"])
async def test_a_report_that_is_no_json_object_is_refused_saying_why(cluster, client, body, reason):
    build_id = await deployed(client)
    response = await client.post(f"/builds/{build_id}/actions", data=body)
    assert (response.status, (await response.json())["error"]) == (400, reason)


async def test_a_report_with_only_the_bearer_token_is_refused(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"branch": "deploy"}, headers=BEARER)
    build_id = int((await response.json())["build_id"])
    response = await client.post(f"/builds/{build_id}/actions", json=DEPLOYED, headers=BEARER)
    status, reason = await refusal(response)
    assert status == 403 and "must be signed by an action runner the client's configuration lists" in reason
    assert (await (await client.get(f"/builds/{build_id}", headers=BEARER)).json())["actions"] == []


async def test_a_forged_or_altered_signature_is_refused(cluster, client):
    build_id = await deployed(client)
    url = f"/builds/{build_id}/actions"
    forged = report(cluster, build_id, key=generate_private_key())  # the runner's name, another key
    altered = {**report(cluster, build_id, state="failure", exit_code=1), "state": "success", "exit_code": 0}
    for body in (forged, altered):
        status, reason = await refusal(await client.post(url, json=body))
        assert status == 403 and f"the signature is not runner {RUNNER!r}'s" in reason
    assert await actions_of(client, build_id) == []


async def test_a_runner_the_client_does_not_list_is_refused(cluster, client):
    build_id = await deployed(client)
    stranger = generate_private_key()
    body = report(cluster, build_id, key=stranger, runner="stranger")
    status, reason = await refusal(await client.post(f"/builds/{build_id}/actions", json=body))
    assert status == 403
    assert f"runner 'stranger' is not one client {CLIENT!r} takes reports from" in reason and RUNNER in reason
    assert await actions_of(client, build_id) == []


async def test_a_report_signed_for_one_build_is_refused_for_another(cluster, client):
    first, second = await deployed(client), await deployed(client)
    captured = report(cluster, first)
    status, reason = await refusal(await client.post(f"/builds/{second}/actions", json=captured))
    assert status == 403 and f"the report is signed for build {first}, not build {second}" in reason
    assert await actions_of(client, second) == []
    # Naming the other build in the body breaks the signature instead.
    moved = {**captured, "build_id": second}
    status, reason = await refusal(await client.post(f"/builds/{second}/actions", json=moved))
    assert status == 403 and "the signature is not" in reason


async def test_a_replayed_or_older_report_does_not_overwrite_a_newer_one(cluster, client):
    build_id = await deployed(client)
    url = f"/builds/{build_id}/actions"
    older = report(cluster, build_id, state="running", exit_code=None, stamp_us=1_000)
    newer = report(cluster, build_id, stamp_us=2_000)
    assert (await client.post(url, json=newer)).status == 200
    for body, stamp in ((newer, 2_000), (older, 1_000)):  # the same report again, then one captured before
        status, reason = await refusal(await client.post(url, json=body))
        assert status == 409 and "a replayed or older report" in reason
        assert f"stamped 2000, and this one is stamped {stamp}" in reason
    assert [(action["state"], action["stamp_us"]) for action in await actions_of(client, build_id)] == [
        ("success", 2_000)]
    # Each action has its own stamps: another action of the build is not held to deploy's.
    assert (await client.post(url, json=report(cluster, build_id, action="notify", stamp_us=1_500))).status == 200


@pytest.mark.parametrize("change, reason", [
    ({"action": "no spaces"}, "action must be an action's name"),
    ({"state": "done"}, "state must be one of"),
    ({"exit_code": "0"}, "exit_code must be an integer or null"),
    ({"reason": "line\nbreak"}, "reason must be printable text"),
    ({"runner": "no spaces"}, "runner must be a runner's name"),
    ({"stamp_us": 0}, "stamp_us must be a positive integer"),
    ({"build_id": "1"}, "build_id must be a build's id"),
    ({"sig": "00"}, "sig must be an Ed25519 signature"),
    ({"extra": 1}, "body must be an object with action, build_id, exit_code, reason, runner, sig, stamp_us, state"),
])
async def test_a_malformed_report_is_refused_with_its_reason(cluster, client, change, reason):
    build_id = await deployed(client)
    body = {**report(cluster, build_id), **change}
    status, said = await refusal(await client.post(f"/builds/{build_id}/actions", json=body))
    assert status == 400 and reason in said


async def test_only_a_certified_build_that_ran_a_spec_takes_reports_and_only_from_whoever_may_build(
        cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"branch": "deploy"}, headers=BEARER)
    build_id = int((await response.json())["build_id"])
    assert (await client.post(f"/builds/{build_id}/actions", json=report(cluster, build_id))).status == 401
    assert (await client.post("/builds/42/actions", json=report(cluster, 42), headers=BEARER)).status == 404

    # A build whose result names no .pbft-ci.yml ran no spec with an `after:` section.
    response = await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    plain = int((await response.json())["build_id"])
    status, reason = await refusal(await client.post(f"/builds/{plain}/actions", json=report(cluster, plain),
                                                     headers=BEARER))
    assert status == 409 and f"build {plain} ran no .pbft-ci.yml, so it has no after: actions" in reason

    waiting = asyncio.create_task(client.post("/webHook", json={"branch": "hold-quiet/x"}, headers=BEARER))
    async with asyncio.timeout(5):
        while len(builds := (await (await client.get("/builds", headers=BEARER)).json())["builds"]) < 3:
            await asyncio.sleep(0.02)
    pending = int(builds[0]["build_id"])
    response = await client.post(f"/builds/{pending}/actions", json=report(cluster, pending), headers=BEARER)
    status, reason = await refusal(response)
    assert status == 409 and "has no certified verdict (pending)" in reason
    waiting.cancel()


async def test_a_report_recorded_before_reports_were_signed_shows_as_unsigned_until_the_runner_reports(
        cluster, client):
    build_id = await deployed(client)
    path = records_path(cluster.config.data_dir, CLIENT)
    await client.close()  # the client of version 7 had taken a report on the token's word
    with sqlite3.connect(path) as old:
        for column in ACTION_COLUMNS_OF_8:
            old.execute(f"ALTER TABLE actions DROP COLUMN {column}")
        old.execute("INSERT INTO actions (build_id, name, state, exit_code, reason, reported_at)"
                    " VALUES (?, 'deploy', 'success', 0, '', 1.0)", (build_id,))
        old.execute("PRAGMA user_version = 7")

    records = BuildRecords(path)
    (action,) = records.builds.get(build_id)["actions"]
    assert (action["state"], action["runner"], action["sig"], action["stamp_us"]) == ("success", None, None, None)
    failed = ActionReport(build_id, "deploy", "failure", 1, "", RUNNER, 5)
    assert records.actions.keep(failed, "ab" * 64, time.time())  # any signed report replaces an unsigned one
    (action,) = records.builds.get(build_id)["actions"]
    assert (action["state"], action["runner"], action["stamp_us"]) == ("failure", RUNNER, 5)
    records.close()


async def test_records_of_version_13_gain_a_deploys_environment_and_approver(cluster, client):
    build_id = await deployed(client)
    path = records_path(cluster.config.data_dir, CLIENT)
    await client.close()
    with sqlite3.connect(path) as old:
        old.execute("INSERT INTO actions (build_id, name, state, exit_code, reason, reported_at, runner, signature,"
                    " stamp_us) VALUES (?, 'deploy', 'success', 0, '', 1.0, ?, ?, 5)", (build_id, RUNNER, "ab" * 64))
        for column in ACTION_COLUMNS_OF_14:
            old.execute(f"ALTER TABLE actions DROP COLUMN {column}")
        old.execute("DROP TABLE deploy_approvals")
        old.execute("PRAGMA user_version = 13")

    records = BuildRecords(path)
    (action,) = records.builds.get(build_id)["actions"]
    assert (action["state"], action["environment"], action["approver"]) == ("success", None, None)
    assert "approvals" not in action  # no deploy: nothing to approve
    approved = ActionReport(build_id, "deploy", "success", 0, "", RUNNER, 6, "production", "user alice")
    assert records.actions.keep(approved, "cd" * 64, time.time())
    (action,) = records.builds.get(build_id)["actions"]
    assert (action["environment"], action["approver"], action["approvals"]) == ("production", "user alice", [])
    records.close()


async def test_a_deploys_report_is_signed_with_its_environment_and_approver(cluster, client):
    build_id = await deployed(client)
    url = f"/builds/{build_id}/actions"
    body = report(cluster, build_id, state="success", environment="production", approver="user alice")
    assert (body["environment"], body["approver"]) == ("production", "user alice")
    # The signature covers both: naming another approver or environment breaks it.
    for field, value in (("approver", "user mallory"), ("environment", "staging")):
        status, reason = await refusal(await client.post(url, json={**body, field: value}))
        assert status == 403 and "the signature is not" in reason
    for field, value, why in (("approver", "mallory", "approver must name who approved"),
                              ("environment", "a b", "environment must be an environment's name")):
        status, reason = await refusal(await client.post(url, json={**body, field: value}))
        assert status == 400 and why in reason
    assert (await client.post(url, json=body)).status == 200
    (action,) = await actions_of(client, build_id)
    assert (action["environment"], action["approver"]) == ("production", "user alice")
    # A report of any other action signs the bytes reports always had: no such keys.
    plain = report(cluster, build_id, action="notify")
    assert "environment" not in plain and "approver" not in plain
    assert (await client.post(url, json=plain)).status == 200
