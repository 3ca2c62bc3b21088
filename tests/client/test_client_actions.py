"""`POST /builds/{id}/actions`: what the action runner (runner/) reports of the actions after a
build's verdict, kept with the build's record. Bad reports get a 4xx with the reason."""

import asyncio

import pytest

from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import post, start_client

GOOD = {"action": "deploy", "state": "success", "exit_code": 0, "reason": ""}


async def test_a_reported_action_is_listed_with_the_build_and_its_latest_word_kept(cluster, client):
    _, verdict = await post(client, {"branch": "main"})
    url = f"/builds/{verdict['build_id']}/actions"
    for report in ({**GOOD, "state": "running", "exit_code": None}, GOOD):
        response = await client.post(url, json=report)
        assert response.status == 200, await response.text()
    record = await (await client.get(f"/builds/{verdict['build_id']}")).json()
    assert [(action["name"], action["state"], action["exit_code"]) for action in record["actions"]] == [
        ("deploy", "success", 0)]


@pytest.mark.parametrize("report, reason", [
    ({**GOOD, "action": "no spaces"}, "action must be an action's name"),
    ({**GOOD, "state": "done"}, "state must be one of"),
    ({**GOOD, "exit_code": "0"}, "exit_code must be an integer or null"),
    ({**GOOD, "reason": "line\nbreak"}, "reason must be printable text"),
    ({"action": "deploy"}, "body must be an object with action, state, exit_code and reason"),
])
async def test_a_malformed_report_is_refused_with_its_reason(cluster, client, report, reason):
    _, verdict = await post(client, {"branch": "main"})
    response = await client.post(f"/builds/{verdict['build_id']}/actions", json=report)
    assert response.status == 400 and reason in (await response.json())["error"]


@pytest.mark.parametrize("body, reason", [
    (b"[" * 4000 + b"]" * 96, "body is nested too deeply"),  # json.loads recursed past Python's limit
    (b"{\"action\": ", "body is not valid JSON: Expecting value: line 1 column 12 (char 11)"),
    (b"\xff", "body is not UTF-8"),
    (b"[]", "body must be a JSON object"),
], ids=["nested too deeply", "cut short", "not UTF-8", "a list"])
async def test_a_report_that_is_no_json_object_is_refused_saying_why(cluster, client, body, reason):
    _, verdict = await post(client, {"branch": "main"})
    response = await client.post(f"/builds/{verdict['build_id']}/actions", data=body)
    assert (response.status, (await response.json())["error"]) == (400, reason)


async def test_only_a_certified_build_takes_reports_and_only_from_whoever_may_build(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    build_id = (await response.json())["build_id"]
    assert (await client.post(f"/builds/{build_id}/actions", json=GOOD)).status == 401
    assert (await client.post("/builds/42/actions", json=GOOD, headers=BEARER)).status == 404

    waiting = asyncio.create_task(client.post("/webHook", json={"branch": "hold-quiet/x"}, headers=BEARER))
    async with asyncio.timeout(5):
        while len(builds := (await (await client.get("/builds", headers=BEARER)).json())["builds"]) < 2:
            await asyncio.sleep(0.02)
    response = await client.post(f"/builds/{builds[0]['build_id']}/actions", json=GOOD, headers=BEARER)
    assert response.status == 409 and "has no certified verdict (pending)" in (await response.json())["error"]
    waiting.cancel()
