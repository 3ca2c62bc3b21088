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
from client.records import BuildRecords
from client.artifacts import artifact_source
from client.flakycollector import SETTLE_S, WINDOW_S, FlakyCollector
from client.tables.flaky import MAX_BUILDS, MAX_TESTS_PER_BUILD
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


def add_build(client, cluster, pull_ref: str | None = None, replied: int = N, named: dict | None = None) -> str:
    """A build with a verdict, of which `replied` nodes replied, each naming the test outcomes'
    digest `named` gives it (none by default)."""
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    operation = Operation("example", "main", commit=COMMIT if pull_ref else None, pull_ref=pull_ref)
    records.builds.add_pending(Request(CLIENT, timestamp, operation), time.time())
    replies = [signed(Reply(0, timestamp, CLIENT, node, Result("failure", 1, COMMIT, tests=(named or {}).get(node))),
                      cluster.auths[node].sign) for node in range(replied)]
    records.verdicts.accept(timestamp, replies[0].result, list(range(replied)), 12, replies)
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


async def test_a_node_is_held_to_the_outcomes_its_signed_reply_named(network, aiohttp_client):
    cluster, served = network
    client = await start_client(aiohttp_client, cluster)
    passed = record_of({**STEADY, "app::races": "passed"})["digest"]
    # Node 3 replied that the test passed, then serves that it failed; node 2's reply named none.
    build_id = add_build(client, cluster, named={0: passed, 1: passed, 3: passed})

    table = await (await client.get(f"/builds/{build_id}/tests")).json()

    assert table["nodes"]["3"] == {"skipped": f"serves outcomes other than those its signed reply named ({passed})"}
    assert [table["nodes"][node]["in_reply"] for node in "012"] == [True, True, False]
    assert table["differing"] == []  # node 3's word against its own reply is not a flaky test


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


async def test_a_repositorys_flaky_tests_are_its_branch_builds_proven_flaky_most_often_first(
        network, aiohttp_client, tmp_path):
    cluster, served = network
    client = await start_client(aiohttp_client, cluster)
    looked = []
    for node in range(N):
        served[node] = record_of({**STEADY, "app::races": "passed", "app::slow": "passed"})
    for failing_node in (3, 2):  # app::races fails on node 3, then on node 2
        served[failing_node] = record_of({**STEADY, "app::races": "failed", "app::slow": "error"})
        build_id = add_build(client, cluster)
        looked.append(build_id)
        assert (await client.get(f"/builds/{build_id}/tests")).status == 200
        served[failing_node] = record_of({**STEADY, "app::races": "passed", "app::slow": "passed"})
    # Asked again while node 2 does not answer: what its signature proved stays proven.
    served[2] = None
    assert (await client.get(f"/builds/{looked[1]}/tests")).status == 200
    assert (await (await client.get("/repositories/example/flaky")).json())["tests"][0]["builds"] == 2
    # A pull request's build runs its author's tests: they never reach the repository's page.
    served[1] = record_of({**STEADY, "app::sneaky": "failed"})
    served[0] = record_of({**STEADY, "app::sneaky": "passed"})
    pull = add_build(client, cluster, pull_ref="refs/pull/7/head")
    assert (await client.get(f"/builds/{pull}/tests")).status == 200

    answer = await client.get("/repositories/example/flaky")

    assert answer.status == 200
    assert await answer.json() == {"repository": "example", "tests": [
        {"test": "app::races", "builds": 2, "last_build": looked[1], "failed_on": {"2": 1, "3": 1}},
        {"test": "app::slow", "builds": 2, "last_build": looked[1], "failed_on": {"2": 1, "3": 1}},
    ]}
    missing = await client.get("/repositories/nowhere/flaky")
    assert missing.status == 404 and "no such repository" in (await missing.json())["error"]
    url = str(client.make_url("/")).rstrip("/")
    lines: list[str] = []
    assert await asyncio.to_thread(main, ["--url", url, "flaky", "example"], lines.append) == 0
    assert lines == ["test\tbuilds\tlast build\tfailed on",
                     f"app::races\t2\t{looked[1]}\tnode 2 ×1, node 3 ×1",
                     f"app::slow\t2\t{looked[1]}\tnode 2 ×1, node 3 ×1"]


def test_the_flaky_tests_kept_are_bounded_per_build_and_per_repository(tmp_path):
    records = BuildRecords(tmp_path / "builds.sqlite")
    try:
        many = [{"test": f"t{index:03}", "passed_on": ["0"], "failed_on": ["1"]} for index in range(150)]
        records.flaky.keep("example", 1, many)
        assert len(records.flaky.of("example")) == MAX_TESTS_PER_BUILD
        for build_id in range(2, MAX_BUILDS + 5):
            records.flaky.keep("example", build_id, many[:1])
        kept = records.flaky.of("example")
        assert kept[0] == {"test": "t000", "builds": MAX_BUILDS, "last_build": str(MAX_BUILDS + 4),
                           "failed_on": {"1": MAX_BUILDS}}
        assert len(kept) == 1, "build 1, the oldest, went with its 100 tests"
        records.flaky.keep("other", 7, many[:2])
        assert [test["test"] for test in records.flaky.of("other")] == ["t000", "t001"]
    finally:
        records.close()


async def test_the_client_gathers_an_accepted_branch_builds_flaky_tests_once_its_nodes_have_them(
        network, aiohttp_client):
    cluster, served = network
    client = await start_client(aiohttp_client, cluster)
    records = client.app[RECORDS_KEY]
    every = add_build(client, cluster)  # every node replied: its records are all written
    three = add_build(client, cluster, replied=3)  # node 3 still building
    pull = add_build(client, cluster, pull_ref="refs/pull/7/head")
    collector = FlakyCollector(records, lambda: artifact_source(client.app), lambda: N)
    verdict_s = int(three) / 1e6 + 0.012

    assert await collector.step(verdict_s + 1) == [every], "the other waits for node 3, the pull request ever"
    assert await collector.step(verdict_s + SETTLE_S + 1) == [three], "node 3 had its time"
    assert await collector.step(verdict_s + SETTLE_S + 2) == [], "each is asked about once"
    assert pull not in [test["last_build"] for test in records.flaky.of("example")]
    assert records.flaky.of("example") == [
        {"test": "app::races", "builds": 2, "last_build": three, "failed_on": {"3": 2}}]
    late = FlakyCollector(records, lambda: artifact_source(client.app), lambda: N)
    assert await late.step(verdict_s + WINDOW_S + 1) == [], "builds that old are left to whoever asks"
