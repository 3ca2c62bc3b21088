"""`GET /builds/{id}/tests` (client/testtables.py), against fake nodes that check the client's
signed request as nodes do and serve each node's test record: a row per test, a column per
node, the tests whose outcome differs between nodes first, and a node whose record is not one
(a digest that is not its outcomes', an outcome no report holds) set aside with the reason."""

import asyncio
import time

import pytest
from aiohttp import web

from builder.reports.junit import outcomes_digest
from cli.main import main
from client.keys import RECORDS_KEY
from client.testtables import checked
from client.artifacts import NodeSkipped
from pbft.build import Operation, Result
from pbft.messages import Reply, Request, signed
from shared.logrequest import NodeAccess, NodeRequest, check_log_request
from tests.client.fake_nodes import CLIENT, FakeCluster, N, serve_fake_nodes, start_client

STEADY = {"app::adds": "passed", "app::skips": "skipped"}


def record_of(tests: dict) -> dict:
    summary = {outcome: list(tests.values()).count(outcome) for outcome in ("passed", "failed", "error", "skipped")}
    return {"tests": tests, "digest": outcomes_digest(tests), "summary": summary, "problems": []}


@pytest.fixture
async def network(aiohttp_server, tmp_path):
    cluster = FakeCluster()
    served: dict[int, object] = {node: record_of({**STEADY, "app::races": "passed"}) for node in range(N)}
    served[3] = record_of({**STEADY, "app::races": "failed"})

    def add_routes(app: web.Application, node_id: int) -> None:
        async def serve(request: web.Request) -> web.Response:
            reason = check_log_request(request.headers, NodeRequest(request.rel_url.raw_path_qs, node_id),
                                       NodeAccess(cluster.verifier.verify_client, {CLIENT}), time.time())
            if reason is not None:
                return web.json_response({"error": reason}, status=401)
            if served[node_id] is None:
                return web.json_response({"error": "no test outcomes"}, status=404)
            return web.json_response({"node": node_id, **served[node_id]})

        app.router.add_get("/tests/{client}/{timestamp}", serve)

    await serve_fake_nodes(aiohttp_server, cluster, add_routes, tmp_path)
    return cluster, served


def add_build(client, cluster) -> str:
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), time.time())
    replies = [signed(Reply(0, timestamp, CLIENT, node, Result("failure", 1, "a" * 40)), cluster.auths[node].sign)
               for node in range(N)]
    records.verdicts.accept(timestamp, replies[0].result, list(range(N)), 12, replies)
    records.store.commit()
    return str(timestamp)


async def test_a_test_that_failed_on_one_node_only_is_listed_first_with_every_nodes_outcome(network, aiohttp_client):
    cluster, _ = network
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)

    answer = await client.get(f"/builds/{build_id}/tests")

    assert answer.status == 200
    table = await answer.json()
    assert table["differing"] == ["app::races"]
    assert table["tests"][0] == {"test": "app::races", "differs": True,
                                 "outcomes": {"0": "passed", "1": "passed", "2": "passed", "3": "failed"}}
    assert [row["test"] for row in table["tests"][1:]] == ["app::adds", "app::skips"]
    assert not any(row["differs"] for row in table["tests"][1:])
    assert table["nodes"]["3"]["summary"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}


async def test_a_node_whose_record_is_not_one_is_set_aside_with_the_reason(network, aiohttp_client):
    cluster, served = network
    lying = record_of({**STEADY, "app::races": "passed"})
    served[1] = {**lying, "tests": {**lying["tests"], "app::races": "failed"}}  # outcomes its digest is not of
    served[2] = None
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)

    table = await (await client.get(f"/builds/{build_id}/tests")).json()

    assert table["nodes"]["1"] == {"skipped": "sent outcomes whose digest is not the one it names"}
    assert table["nodes"]["2"] == {"skipped": "does not have it (404)"}
    assert table["tests"][0]["outcomes"] == {"0": "passed", "3": "failed"}


@pytest.mark.parametrize("answer, reason", [
    ({"tests": {"a": "exploded"}}, "sent a test id or an outcome its reports cannot hold"),
    ({"tests": {"a\u202eb": "passed"}}, "sent a test id or an outcome its reports cannot hold"),
    ({"tests": []}, "sent no test outcomes, or more than 10000"),
    ({**record_of({"a": "passed"}), "problems": "none"}, "sent problems that are not a short list of lines"),
])
def test_what_a_node_record_must_be(answer, reason):
    with pytest.raises(NodeSkipped, match=reason.replace("(", r"\(").replace(")", r"\)")):
        checked(answer)


async def test_the_command_line_prints_the_table_and_exits_1_when_a_test_differs(network, aiohttp_client):
    cluster, served = network
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)
    url = str(client.make_url("/")).rstrip("/")

    lines: list[str] = []
    code = await asyncio.to_thread(main, ["--url", url, "tests", build_id], lines.append)

    assert code == 1
    assert lines == ["test\tnode 0\tnode 1\tnode 2\tnode 3",
                     "app::races\tpassed\tpassed\tpassed\tfailed  (differs between nodes)",
                     "app::adds\tpassed\tpassed\tpassed\tpassed",
                     "app::skips\tskipped\tskipped\tskipped\tskipped"]
    served[3] = record_of({**STEADY, "app::races": "passed"})
    served[2] = None
    lines.clear()
    code = await asyncio.to_thread(main, ["--url", url, "tests", build_id], lines.append)
    assert code == 0 and lines[-1] == "node 2: does not have it (404)" and lines[1] == "app::adds\tpassed\tpassed\t-\tpassed"
