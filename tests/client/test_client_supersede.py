"""A concurrency group's `cancel_in_progress` at the client (client/verbs/supersede.py): the client
cancels an older build through the order only once f+1 nodes' signed BUILD-STATEs name it as the
one a newer build supersedes. One node's word, however often said, or a build that is not older,
cancels nothing. The whole path on four real nodes is tests/e2e/test_end_to_end_concurrency.py."""

import asyncio
import json

from client.keys import SERVICE_KEY
from pbft.messages import BuildState, encode, signed
from tests.client.fake_nodes import CLIENT, post, start_client


async def say(cluster, node: int, build_id: int, supersedes: int) -> None:
    """Node `node` signs that build `build_id` waits for, and supersedes, build `supersedes`."""
    news = signed(BuildState(build_id, CLIENT, "running", node, supersedes=supersedes), cluster.auths[node].sign)
    for ws in list(cluster.registered[node]):
        await ws.send_str(json.dumps(encode(news)))


async def until(condition) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def cancels(client) -> list[str]:
    """The builds the client has asked the network to cancel (a cancel is recorded as it is asked for)."""
    return [build["cancels"] for build in (await (await client.get("/builds")).json())["builds"] if build["cancels"]]


async def test_f_plus_1_nodes_naming_the_older_build_have_the_client_cancel_it_once(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    waiting = []
    for count, name in enumerate(("older", "newer"), start=1):  # one after the other: the older has the lower id
        waiting.append(asyncio.create_task(post(client, {"branch": f"hold/{name}"})))
        async with asyncio.timeout(5):
            while len(builds := (await (await client.get("/builds")).json())["builds"]) < count:
                await asyncio.sleep(0.02)
    older, newer = sorted(int(build["build_id"]) for build in builds)
    said = client.server.app[SERVICE_KEY].core.outstanding(newer).superseding  # what the client took in, by node

    for _ in range(3):  # one node, however often
        await say(cluster, 1, newer, older)
    await until(lambda: said.get(1) == older)
    assert await cancels(client) == []
    for node in (2, 3):  # two nodes alike, but of a build that is not older
        await say(cluster, node, newer, newer + 1)
    await until(lambda: said.get(2) == said.get(3) == newer + 1)
    assert await cancels(client) == []

    await say(cluster, 3, newer, older)  # node 3 now names the older one too: f+1
    await until(lambda: said.get(3) == older)
    assert await cancels(client) == [str(older)]
    await say(cluster, 0, newer, older)  # a third: nothing more is asked for
    await until(lambda: said.get(0) == older)
    assert await cancels(client) == [str(older)]
    status, verdict = await waiting[0]
    assert status == 200 and verdict["status"] == "cancelled", verdict
    waiting[1].cancel()
