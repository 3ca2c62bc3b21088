"""`GET /builds/{id}/tests` (client/testtables.py), against fake nodes that check the client's
signed request as nodes do and serve each node's test record signed by the node's key: a row per
test, a column per node, the tests whose outcome differs between nodes first, one that passed and
failed marked proven flaky with each side's signed statement, and a node whose record is not one
(a digest that is not its outcomes', an outcome no report holds, a signature not its own, a
statement of another build or commit) set aside with the reason."""

import asyncio
import json
import time

import pytest
from aiohttp import web

from builder.reports.junit import outcomes_digest
from cli.main import main
from client.keys import RECORDS_KEY
from client.testtables import Expected, checked
from client.artifacts import NodeSkipped
from shared.crypto import sign_bytes
from shared.testrecord import sign_record, verify_statement
from pbft.build import Operation, Result
from pbft.messages import Reply, Request, signed
from shared.logrequest import NodeAccess, NodeRequest, check_log_request
from tests.client.fake_nodes import CLIENT, FakeCluster, N, serve_fake_nodes, start_client

STEADY = {"app::adds": "passed", "app::skips": "skipped"}
COMMIT = "a" * 40


def record_of(tests: dict) -> dict:
    summary = {outcome: list(tests.values()).count(outcome) for outcome in ("passed", "failed", "error", "skipped")}
    return {"tests": tests, "digest": outcomes_digest(tests), "summary": summary, "problems": [],
            "repository": "example", "commit": COMMIT}


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
            build = f"{CLIENT}-{request.match_info['timestamp']}"
            key = cluster.node_keys[node_id]
            return web.json_response(sign_record(lambda data: sign_bytes(key, data), node_id,
                                                 {"build": build, **served[node_id]}))

        app.router.add_get("/tests/{client}/{timestamp}", serve)

    await serve_fake_nodes(aiohttp_server, cluster, add_routes, tmp_path)
    return cluster, served


def add_build(client, cluster) -> str:
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation("example", "main")), time.time())
    replies = [signed(Reply(0, timestamp, CLIENT, node, Result("failure", 1, COMMIT)), cluster.auths[node].sign)
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
    assert table["tests"][0] == {"test": "app::races", "differs": True, "flaky": "proven",
                                 "passed_on": ["0", "1", "2"], "failed_on": ["3"],
                                 "outcomes": {"0": "passed", "1": "passed", "2": "passed", "3": "failed"}}
    assert [row["test"] for row in table["tests"][1:]] == ["app::adds", "app::skips"]
    assert not any(row["differs"] for row in table["tests"][1:])
    assert table["nodes"]["3"]["summary"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    # Each side's evidence: the node's statement of this build, commit and digest, checkable offline.
    for node in ("0", "3"):
        said = table["nodes"][node]["statement"]
        assert said == {"node": int(node), "build": f"{CLIENT}-{build_id}", "repository": "example",
                        "commit": COMMIT, "digest": table["nodes"][node]["digest"]}
        assert verify_statement(cluster.node_keys[int(node)].public_key(), said, table["nodes"][node]["signature"])
    outcomes_of_3 = {row["test"]: row["outcomes"]["3"] for row in table["tests"]}
    assert outcomes_digest(outcomes_of_3) == table["nodes"]["3"]["statement"]["digest"]


async def test_a_test_skipped_on_one_node_differs_but_is_not_proven_flaky(network, aiohttp_client):
    cluster, served = network
    served[3] = record_of({**STEADY, "app::races": "skipped"})
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)

    table = await (await client.get(f"/builds/{build_id}/tests")).json()

    assert table["tests"][0]["test"] == "app::races" and table["tests"][0]["differs"]
    assert "flaky" not in table["tests"][0]


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


async def test_a_record_not_signed_by_its_node_for_this_build_and_commit_is_set_aside(network, aiohttp_client):
    cluster, served = network
    served[1] = {**record_of({**STEADY, "app::races": "failed"}), "commit": "b" * 40}  # another commit's
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)
    node_0 = cluster.node_keys[0]
    forged = cluster.node_keys[2]
    good = sign_record(lambda data: sign_bytes(node_0, data), 0,
                       {"build": f"{CLIENT}-{build_id}", **record_of({"app::races": "failed"})})
    expected = Expected(0, node_0.public_key(), f"{CLIENT}-{build_id}", COMMIT)
    assert checked(good, expected)["tests"] == {"app::races": "failed"}
    with pytest.raises(NodeSkipped, match="its key did not sign"):
        checked({**good, "signature": sign_record(lambda data: sign_bytes(forged, data), 0, good)["signature"]},
                expected)
    with pytest.raises(NodeSkipped, match="its key did not sign"):
        checked({key: value for key, value in good.items() if key != "signature"}, expected)
    with pytest.raises(NodeSkipped, match="another node, build, commit or digest"):
        checked(good, Expected(0, node_0.public_key(), f"{CLIENT}-1", COMMIT))

    table = await (await client.get(f"/builds/{build_id}/tests")).json()

    assert table["nodes"]["1"] == {"skipped": "signed outcomes of another node, build, commit or digest"}
    assert "1" not in table["tests"][0]["outcomes"]


@pytest.mark.parametrize("answer, reason", [
    ({"tests": {"a": "exploded"}}, "sent a test id or an outcome its reports cannot hold"),
    ({"tests": {"a\u202eb": "passed"}}, "sent a test id or an outcome its reports cannot hold"),
    ({"tests": []}, "sent no test outcomes, or more than 10000"),
    ({**record_of({"a": "passed"}), "problems": "none"}, "sent problems that are not a short list of lines"),
])
def test_what_a_node_record_must_be(answer, reason):
    cluster = FakeCluster()
    expected = Expected(0, cluster.node_keys[0].public_key(), f"{CLIENT}-1", COMMIT)
    with pytest.raises(NodeSkipped, match=reason.replace("(", r"\(").replace(")", r"\)")):
        checked(answer, expected)


async def test_the_command_line_prints_the_table_and_exits_1_when_a_test_differs(network, aiohttp_client, tmp_path):
    cluster, served = network
    client = await start_client(aiohttp_client, cluster)
    build_id = add_build(client, cluster)
    url = str(client.make_url("/")).rstrip("/")

    lines: list[str] = []
    evidence = tmp_path / "evidence.json"
    code = await asyncio.to_thread(main, ["--url", url, "tests", build_id, "--evidence", str(evidence)], lines.append)

    assert code == 1
    assert lines == ["test\tnode 0\tnode 1\tnode 2\tnode 3",
                     "app::races\tpassed\tpassed\tpassed\tfailed  "
                     "(proven flaky: passed on node 0, 1, 2, failed on node 3; each signed)",
                     "app::adds\tpassed\tpassed\tpassed\tpassed",
                     "app::skips\tskipped\tskipped\tskipped\tskipped"]
    kept = json.loads(evidence.read_text())
    said = kept["nodes"]["3"]["statement"]
    assert verify_statement(cluster.node_keys[3].public_key(), said, kept["nodes"]["3"]["signature"])
    served[3] = record_of({**STEADY, "app::races": "passed"})
    served[2] = None
    lines.clear()
    code = await asyncio.to_thread(main, ["--url", url, "tests", build_id], lines.append)
    assert code == 0 and lines[-1] == "node 2: does not have it (404)" and lines[1] == "app::adds\tpassed\tpassed\t-\tpassed"
