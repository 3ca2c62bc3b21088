"""`POST /builds/{id}/rerun`: a new build of what a build built, linked both ways in the records."""

import hashlib

from pbft.build import Actor, Operation
from pbft.wire import decode_struct
from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import post, start_client
from tests.client.forge_deliveries import settled


def operations(cluster) -> list[Operation]:
    return [request.operation for _view, request in cluster.committed.values()]


async def test_a_rerun_builds_the_commit_the_old_verdict_named_and_is_linked_to_it(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    status, first = await post(client, {"branch": "main"})
    assert status == 200
    built = hashlib.sha1(b"main").hexdigest()  # what the fake nodes build of "main"
    assert first["commit"] == built

    response = await client.post(f"/builds/{first['build_id']}/rerun")
    assert response.status == 202
    answer = await response.json()
    assert answer["rerun_of"] == first["build_id"] and answer["status_url"].endswith(f"/builds/{answer['build_id']}")

    again = await settled(client, answer["build_id"])
    assert (again["state"], again["rerun_of"], again["commit_requested"]) == ("accepted", first["build_id"], built)
    # The same request, but pinned: a branch that moved on since is not what runs again.
    # Asked for by whoever called for the rerun: here the same caller, the client's machine.
    actor = Actor("machine", "ci")
    assert decode_struct(Operation, again["request"]["operation"]) == Operation(
        "example", "main", built, event="manual", actor=actor)
    assert operations(cluster) == [Operation("example", "main", event="manual", actor=actor),
                                   Operation("example", "main", built, event="manual", actor=actor)]
    old = await (await client.get(f"/builds/{first['build_id']}")).json()
    assert (old["reruns"], old["rerun_of"]) == ([answer["build_id"]], None)
    listed = (await (await client.get("/builds")).json())["builds"]
    assert [(build["build_id"], build["rerun_of"]) for build in listed] == [
        (answer["build_id"], first["build_id"]), (first["build_id"], None)]


async def test_a_rerun_of_a_build_without_a_commit_asks_the_same_again(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    _, first = await post(client, {"branch": "missing"})
    assert first["status"] == "error" and first["commit"] is None

    answer = await (await client.post(f"/builds/{first['build_id']}/rerun")).json()
    again = await settled(client, answer["build_id"])
    assert decode_struct(Operation, again["request"]["operation"]) == Operation(
        "example", "missing", event="manual", actor=Actor("machine", "ci"))
    assert again["result"]["status"] == "error"


async def test_a_rerun_needs_what_a_build_needs_and_a_build_that_exists(cluster, aiohttp_client):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    build_id = (await response.json())["build_id"]

    refused = await client.post(f"/builds/{build_id}/rerun")
    assert refused.status == 401 and "Bearer" in (await refused.json())["error"]
    assert (await client.post("/builds/999/rerun", headers=BEARER)).status == 404
    assert (await client.post("/builds/x1/rerun", headers=BEARER)).status == 400
    assert len(operations(cluster)) == 1  # none of them built anything
    assert (await client.post(f"/builds/{build_id}/rerun", headers=BEARER)).status == 202
