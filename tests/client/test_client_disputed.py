"""Disputed verdicts: once f+1 replies agree the client waits up to client_settle_s for 2f+1
to agree (certified, as the ledgers will say) or for replies that leave no result a way there
(disputed: the nodes disagree, as a flaky test makes them). The service's tests use in-memory
links and real signatures; the last ones go through the client's HTTP interface and fake
nodes, two of which see the build fail."""

import asyncio
import json
import sqlite3

from client.outcome import Accepted, Disputed
from client.records import BuildRecords
from client.tables.schema import SCHEMA, SCHEMA_VERSION
from pbft.build import Operation, Result
from pbft.messages import encode, signed
from pbft.replies import ReplyCollector
from tests.client.collector_fakes import GOOD, T, attested, reply, service_with_memory_links
from tests.client.fake_nodes import CLIENT, F, N, honest_result, post, start_client
from tests.client.status_api import PUBLIC_URL, with_statuses

FAILED = Result("failure", 1, GOOD.commit)
ERROR = Result("error", None, GOOD.commit, "the step's image is not on this node's engine")


def collect(*answers: tuple[int, Result]) -> ReplyCollector:
    replies = ReplyCollector(CLIENT, T, F, N)
    for sender, result in answers:
        replies.add(reply(sender, result))
    return replies


def test_the_collector_says_what_the_ledgers_will():
    assert collect((0, GOOD), (1, GOOD)).ledger_verdict == "pending"  # accepted, not yet certified
    assert collect((0, GOOD), (1, GOOD), (2, FAILED), (3, GOOD)).ledger_verdict == "certified"
    split = collect((0, GOOD), (1, GOOD), (2, FAILED), (3, FAILED))
    assert split.accepted and split.disputed and split.settled
    assert split.split == {0: GOOD, 1: GOOD, 2: FAILED, 3: FAILED}
    # Three answers that differ decide nothing at f+1, and already make the build disputed.
    three = collect((0, GOOD), (1, FAILED), (2, ERROR))
    assert not three.decided and three.disputed
    # One node down and one lying: nothing is settled; only the f+1 can be answered.
    assert not collect((0, GOOD), (1, GOOD), (2, FAILED)).settled


async def submitted(service, links):
    task = asyncio.create_task(service.verbs.submit.wait(Operation("example", "main")))
    while not links.sent:
        await asyncio.sleep(0)
    return task, json.loads(links.sent[0][1])["timestamp"]


def replier(service, node_auths, timestamp):
    def send(sender: int, result: Result) -> None:
        message = attested(reply(sender, result, timestamp=timestamp), node_auths[sender])
        service.core.on_frame(sender, json.dumps(encode(signed(message, node_auths[sender].sign))))
    return send


async def test_two_passes_and_two_failures_are_disputed_with_each_nodes_result(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path, settle_s=60)
    task, t = await submitted(service, links)
    send = replier(service, node_auths, t)
    send(0, GOOD)
    send(1, GOOD)
    send(2, FAILED)
    await asyncio.sleep(0.01)
    assert not task.done(), "f+1 agree, and the client waits for the rest to settle the verdict"
    send(3, FAILED)
    verdict = await asyncio.wait_for(task, 1)

    assert isinstance(verdict.outcome, Disputed)
    assert verdict.outcome.split == {0: GOOD, 1: GOOD, 2: FAILED, 3: FAILED}
    assert verdict.outcome.quorum_ms <= verdict.elapsed_ms
    record = records.builds.get(t)
    assert record["state"] == "disputed"
    assert record["result"] == {
        "status": "disputed", "exit_code": None, "commit": GOOD.commit,
        "reason": "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)",
        "split": {"0": {"status": "success", "exit_code": 0, "commit": GOOD.commit},
                  "1": {"status": "success", "exit_code": 0, "commit": GOOD.commit},
                  "2": {"status": "failure", "exit_code": 1, "commit": GOOD.commit},
                  "3": {"status": "failure", "exit_code": 1, "commit": GOOD.commit}},
    }
    records.close()


async def test_2f_plus_1_agreeing_end_the_wait_and_one_liar_is_outvoted(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path, settle_s=60)
    task, t = await submitted(service, links)
    send = replier(service, node_auths, t)
    for sender, result in [(3, FAILED), (0, GOOD), (1, GOOD), (2, GOOD)]:
        send(sender, result)
    verdict = await asyncio.wait_for(task, 1)  # no waiting for the settle window
    assert verdict.outcome == Accepted(GOOD, [0, 1], verdict.outcome.quorum_ms)
    assert records.builds.get(t)["state"] == "accepted"
    records.close()


async def test_with_a_node_down_and_one_dissenting_the_f_plus_1_are_answered_after_the_settle_window(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path, settle_s=0.2)
    task, t = await submitted(service, links)
    send = replier(service, node_auths, t)
    for sender, result in [(0, GOOD), (1, FAILED), (2, GOOD)]:
        send(sender, result)
    await asyncio.sleep(0.05)
    assert not task.done()
    verdict = await asyncio.wait_for(task, 1)
    assert isinstance(verdict.outcome, Accepted) and verdict.outcome.agreed_by == [0, 2] and verdict.elapsed_ms >= 200
    records.close()


async def test_answers_that_all_differ_end_disputed_without_waiting_for_a_deadline(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path, settle_s=60)
    task, t = await submitted(service, links)
    send = replier(service, node_auths, t)
    for sender, result in [(0, GOOD), (1, FAILED), (2, ERROR), (3, Result("timeout", None, GOOD.commit))]:
        send(sender, result)
    verdict = await asyncio.wait_for(task, 1)
    assert isinstance(verdict.outcome, Disputed) and sorted(verdict.outcome.split) == [0, 1, 2, 3]
    assert records.builds.get(t)["result"]["reason"] == (
        "node 0: success (exit 0); node 1: failure (exit 1); node 2: error; node 3: timeout")
    records.close()


def test_records_of_the_version_before_disputed_are_kept_and_can_record_one(tmp_path):
    path = tmp_path / "builds.sqlite"
    before = SCHEMA.replace(", 'disputed'", "")
    assert before != SCHEMA
    with sqlite3.connect(path) as old:
        old.executescript(before)
        old.execute("INSERT INTO builds (build_id, repository, branch, submitted_at, state, request) VALUES"
                    " (7, 'example', 'main', '2026-01-01T00:00:00+00:00', 'pending', '{}')")
        old.execute("PRAGMA user_version = 4")

    records = BuildRecords(path)
    records.verdicts.dispute(7, {0: GOOD, 1: FAILED}, F, 30, [])
    records.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert reopened.execute("SELECT state FROM builds WHERE build_id = 7").fetchone()[0] == "disputed"


# --- through the client's HTTP interface ------------------------------------------


async def test_a_flaky_build_is_disputed_in_the_answer_the_record_the_status_and_the_metrics(
    cluster, status_server, aiohttp_client
):
    with_statuses(cluster, status_server)
    cluster.behaviour.update({2: "flaky", 3: "flaky"})  # their builds fail
    http = await start_client(aiohttp_client, cluster)
    commit = honest_result("main").commit

    status, answer = await post(http, {"branch": "main", "commit": commit})
    assert status == 200, answer
    assert (answer["status"], answer["agreed_by"], answer["commit"]) == ("disputed", [], commit)
    assert answer["reason"] == "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)"
    assert {node: said["status"] for node, said in answer["split"].items()} == {
        "0": "success", "1": "success", "2": "failure", "3": "failure"}

    listed = (await (await http.get("/builds")).json())["builds"][0]
    assert (listed["state"], listed["result"]["split"]) == ("disputed", answer["split"])
    await status_server.wait_for_calls(2)
    final = status_server.calls[-1].body
    assert (final["state"], final["description"]) == (
        "error", "disputed: nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)")
    # A disputed build has no certificate: its status links the build's page, which shows the split.
    assert final["target_url"] == f"{PUBLIC_URL}/builds/{answer['build_id']}"
    metrics = await (await http.get("/metrics")).text()
    assert 'pbft_client_verdicts_total{status="disputed"} 1.0' in metrics
