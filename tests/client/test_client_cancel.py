"""`POST /builds/{id}/cancel` and auto-cancel, against fake nodes on which a build of a branch
"hold…" runs until a cancel for it is ordered (tests/client/fake_nodes.py). What a node does
with a cancel is tested on real nodes (tests/e2e/test_end_to_end_cancel.py)."""

import asyncio
import dataclasses

from pbft.build import Actor, Operation
from client.keys import RECORDS_KEY, SERVICE_KEY
from tests.client.client_token import BEARER, TOKEN, with_client_settings
from tests.client.fake_nodes import post, start_client
from tests.client.forge_deliveries import REPOSITORIES, push, settled

SHAS = ["1" * 40, "2" * 40, "3" * 40]


def operations(cluster) -> list[Operation]:
    return [request.operation for _view, request in cluster.committed.values()]


async def pending(client, count: int, headers=None) -> list[dict]:
    async with asyncio.timeout(5):
        while len(listed := (await (await client.get("/builds", headers=headers)).json())["builds"]) < count:
            await asyncio.sleep(0.02)
    return listed


async def test_a_running_build_cancelled_gets_the_verdict_cancelled(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    waiting = asyncio.create_task(post(client, {"branch": "hold/tests"}))
    [build] = await pending(client, 1)
    assert build["state"] == "pending"

    response = await client.post(f"/builds/{build['build_id']}/cancel")
    assert response.status == 202
    answer = await response.json()
    assert answer["build_id"] == build["build_id"]

    status, verdict = await waiting  # the webhook that asked for the build gets its verdict
    assert status == 200 and (verdict["status"], verdict["commit"]) == ("cancelled", None)
    record = await settled(client, build["build_id"])
    assert (record["state"], record["result"]["status"], record["cancels"]) == ("accepted", "cancelled", None)
    cancel = await settled(client, answer["cancel_id"])
    assert (cancel["cancels"], cancel["result"]["status"]) == (build["build_id"], "success")
    assert operations(cluster) == [
        Operation("example", "hold/tests", event="manual", actor=Actor("machine", "ci")),
        # The build's repository and branch; asked for by whoever cancelled (here the same caller).
        Operation("example", "hold/tests", cancels=int(build["build_id"]), actor=Actor("machine", "ci")),
    ]


async def test_only_a_build_without_a_verdict_can_be_cancelled_and_only_by_whoever_may_build(
    cluster, aiohttp_client
):
    with_client_settings(cluster, token=TOKEN)
    client = await start_client(aiohttp_client, cluster)
    response = await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    done = (await response.json())["build_id"]

    refused = await client.post(f"/builds/{done}/cancel", headers=BEARER)
    assert refused.status == 409 and "has its verdict already (accepted)" in (await refused.json())["error"]
    assert (await client.post(f"/builds/{done}/cancel")).status == 401
    assert (await client.post("/builds/12345/cancel", headers=BEARER)).status == 404
    assert len(operations(cluster)) == 1

    waiting = asyncio.create_task(client.post("/webHook", json={"branch": "hold/x"}, headers=BEARER))
    held = (await pending(client, 2, BEARER))[0]["build_id"]
    cancel_id = (await (await client.post(f"/builds/{held}/cancel", headers=BEARER)).json())["cancel_id"]
    for action in ("cancel", "rerun"):
        refused = await client.post(f"/builds/{cancel_id}/{action}", headers=BEARER)
        assert refused.status == 409 and "is a cancel, not a build" in (await refused.json())["error"]
    assert (await (await waiting).json())["status"] == "cancelled"


async def test_a_newer_push_cancels_the_older_build_of_its_branch_only(cluster, aiohttp_client):
    cluster.config = dataclasses.replace(cluster.config, repositories=REPOSITORIES)
    client = await start_client(aiohttp_client, cluster)

    first = await push(client, "hold/main", SHAS[0], "d-1")
    other = await push(client, "hold/other", SHAS[1], "d-2")
    second = await push(client, "hold/main", SHAS[2], "d-3")

    assert (await settled(client, first))["result"]["status"] == "cancelled"
    cancels = [operation.cancels for operation in operations(cluster) if operation.cancels is not None]
    assert cancels == [int(first)]  # neither the other branch's build nor the newest one
    listed = {build["build_id"]: build["state"] for build in (await (await client.get("/builds")).json())["builds"]}
    assert listed[other] == listed[second] == "pending"


async def test_a_repository_can_keep_its_older_builds(cluster, aiohttp_client):
    repositories = (dataclasses.replace(REPOSITORIES[0], auto_cancel=False), *REPOSITORIES[1:])
    cluster.config = dataclasses.replace(cluster.config, repositories=repositories)
    client = await start_client(aiohttp_client, cluster)

    await push(client, "hold/main", SHAS[0], "d-1")
    await push(client, "hold/main", SHAS[1], "d-2")
    await asyncio.sleep(0.2)

    assert [operation.cancels for operation in operations(cluster)] == [None, None]


# --- Builds that wait for build slots ---------------------------------------------------------


async def test_a_build_f_plus_1_nodes_say_is_queued_shows_so_and_outlives_the_deadline(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster, deadline_s=0.5)
    waiting = asyncio.create_task(post(client, {"branch": "hold/queue"}))
    [build] = await pending(client, 1)
    async with asyncio.timeout(5):
        while (await (await client.get(f"/builds/{build['build_id']}")).json())["progress"] != "queued":
            await asyncio.sleep(0.02)
    listed = (await (await client.get("/builds")).json())["builds"]
    assert (listed[0]["state"], listed[0]["progress"]) == ("pending", "queued")
    metrics = await (await client.get("/metrics")).text()
    assert "pbft_client_builds_queued 1.0" in metrics and "pbft_client_builds_waiting 1.0" in metrics

    await asyncio.sleep(1.5)  # three deadlines: f+1 nodes vouch that the build waits for a slot
    assert not waiting.done()
    assert (await client.post(f"/builds/{build['build_id']}/cancel")).status == 202
    status, verdict = await waiting
    assert (status, verdict["status"]) == (200, "cancelled")
    record = await settled(client, build["build_id"])
    assert record["progress"] is None  # it has its verdict


async def test_a_build_no_f_plus_1_nodes_vouch_for_times_out_at_the_deadline(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster, deadline_s=0.5)
    status, answer = await post(client, {"branch": "hold-quiet/x"})
    assert (status, answer["error"]) == (504, "no quorum before the deadline"), answer


async def test_a_build_vouched_for_until_the_queue_limit_says_so_when_it_times_out(cluster, aiohttp_client):
    cluster.config = dataclasses.replace(
        cluster.config, protocol=dataclasses.replace(cluster.config.protocol, client_queue_limit_s=1.0))
    client = await start_client(aiohttp_client, cluster, deadline_s=0.4)
    status, answer = await post(client, {"branch": "hold/forever"})
    assert (status, answer["error"]) == (504, "still queued at f+1 nodes after client_queue_limit_s (1 s)"), answer


async def test_a_cancel_racing_the_builds_end_gives_cancelled_never_disputed(cluster, aiohttp_client):
    """Two nodes finish the build (success) before the cancel is ordered, two stop it: 2-2 at
    n = 4, which the replies alone would make `disputed`. The order decides (pbft.cancels):
    the cancel executed after the build, so it is `cancelled`, the successes kept as replies."""
    client = await start_client(aiohttp_client, cluster)
    waiting = asyncio.create_task(post(client, {"branch": "hold/race"}))
    [build] = await pending(client, 1)
    cluster.release(int(build["build_id"]), nodes=[0, 1])
    response = await client.post(f"/builds/{build['build_id']}/cancel")
    assert response.status == 202

    status, verdict = await waiting
    assert status == 200 and verdict["status"] == "cancelled"
    assert verdict["cancelled_by"] == (await response.json())["cancel_id"]
    record = await settled(client, build["build_id"])
    assert (record["state"], record["result"]["status"]) == ("accepted", "cancelled")
    said = {reply["sender"]: reply["result"]["status"] for reply in record["replies"]}
    assert {0: "success", 1: "success", 2: "cancelled", 3: "cancelled"} == said
    # Its certificate is its own: the f+1 nodes that stopped it signed `cancelled` for it.
    assert record["agreed_by"] == verdict["agreed_by"] == [2, 3]


async def test_a_cancel_ordered_after_the_builds_verdict_makes_its_record_cancelled(cluster, aiohttp_client):
    """The webhook's cancel is refused once a verdict is in (409), but one sent just before the
    verdict came is still ordered after the build: every node's ledger then says `cancelled`,
    and so does the record, after the verdict it first had."""
    client = await start_client(aiohttp_client, cluster)
    waiting = asyncio.create_task(post(client, {"branch": "hold/late"}))
    [build] = await pending(client, 1)
    service = client.server.app[SERVICE_KEY]
    # Read while still pending, as the route does.
    record = client.server.app[RECORDS_KEY].builds.get(int(build["build_id"]))
    cluster.release(int(build["build_id"]))
    status, verdict = await waiting
    assert (status, verdict["status"]) == (200, "success")

    cancel_id = service.verbs.cancel.start(record, Actor("machine", "client"))
    cancel = await settled(client, str(cancel_id))
    assert cancel["result"]["status"] == "success"
    async with asyncio.timeout(5):
        while (await settled(client, build["build_id"]))["result"]["status"] != "cancelled":
            await asyncio.sleep(0.02)
    record = await settled(client, build["build_id"])
    # Every node had replied success: no f+1 of its own replies say cancelled, and the cancel's
    # certificate (its own record) is the evidence.
    assert record["state"] == "accepted" and record["agreed_by"] == []
    assert {reply["result"]["status"] for reply in record["replies"]} == {"success"}
