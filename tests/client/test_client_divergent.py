"""Results with artifacts: 2f+1 matching replies, or `divergent` (pbft.replies).

The collector tests are pure (n = 4, f = 1, unsigned replies). The last
tests drive the service with in-memory links and real signatures, and open
build records written before `divergent` existed.
"""

import asyncio
import json
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from pbft.replies import ReplyCollector, agreed_part
from client.outcome import Divergent
from client.records import BuildRecords
from client.tables.schema import SCHEMA_VERSION
from pbft.build import Operation, Result
from pbft.messages import encode, signed
from tests.client.collector_fakes import T, attested, reply, service_with_memory_links
from tests.client.fake_nodes import CLIENT, F, N

COMMIT = "a" * 40


def built(digit: str) -> Result:
    """A successful build whose artifact manifest has the digest sha256:<digit * 64>."""
    return Result("success", 0, COMMIT, artifacts="sha256:" + digit * 64)


A, B, C, D = built("a"), built("b"), built("c"), built("d")
FAILED = Result("failure", 1, COMMIT)


def collect(*answers: tuple[int, Result]) -> tuple[ReplyCollector, list[bool]]:
    replies = ReplyCollector(CLIENT, T, F, N)
    return replies, [replies.add(reply(sender, result)) for sender, result in answers]


def test_a_result_with_artifacts_needs_2f_plus_1_matching_replies():
    replies, fired = collect((0, A), (1, A))
    assert fired == [False, False] and not replies.decided
    assert replies.add(reply(2, A)) is True
    assert replies.accepted and not replies.divergent
    assert replies.result == A and replies.agreed_by == [0, 1, 2]


def test_a_result_without_artifacts_still_needs_f_plus_1():
    replies, fired = collect((3, A), (0, FAILED), (1, FAILED))
    assert fired == [False, False, True]
    assert replies.result == FAILED and replies.agreed_by == [0, 1]


def test_one_node_reporting_other_bytes_cannot_make_a_build_divergent():
    replies, fired = collect((3, B), (0, A), (1, A))
    assert fired == [False, False, False] and not replies.decided
    assert replies.add(reply(2, A)) is True
    assert replies.accepted and replies.result == A and replies.agreed_by == [0, 1, 2]


def test_a_build_is_divergent_once_no_digest_can_reach_2f_plus_1():
    replies, fired = collect((0, A), (1, B))
    assert fired == [False, False]
    # A third digest leaves each at one reply with one node to come: none can reach three.
    assert replies.add(reply(2, C)) is True
    assert replies.divergent and replies.decided and not replies.accepted
    assert replies.result is None and replies.agreed_by == [] and replies.certificate == []
    assert replies.divergent_outcome == Result("success", 0, COMMIT)
    # Replies after the verdict are kept, so that the record shows every node's digest.
    assert replies.add(reply(3, D)) is False
    assert replies.artifacts_by_node == {0: A.artifacts, 1: B.artifacts, 2: C.artifacts, 3: D.artifacts}


def test_two_nodes_alike_keep_a_build_open_until_the_last_reply():
    replies, _ = collect((0, A), (1, A), (2, B))
    assert not replies.decided, "node 3 may still make A's third reply"
    assert replies.add(reply(3, C)) is True and replies.divergent


def test_a_failure_that_can_still_reach_f_plus_1_is_waited_for():
    replies, _ = collect((0, A), (1, B), (2, FAILED))
    assert not replies.decided
    assert replies.add(reply(3, FAILED)) is True
    assert replies.accepted and replies.result == FAILED


def test_without_f_plus_1_successes_with_artifacts_nothing_is_divergent():
    # One node built artifacts; the others disagree on everything: no verdict, but not divergent.
    replies, _ = collect((0, A), (1, FAILED), (2, Result("failure", 2, COMMIT)), (3, Result("timeout", None, COMMIT)))
    assert not replies.decided and not replies.divergent and replies.divergent_outcome is None


with_artifacts = st.sampled_from([A, B, C, D, FAILED, Result("error", None, None, "x")])


@given(
    honest=st.sampled_from([A, B, FAILED]),
    lies=st.lists(with_artifacts, min_size=F, max_size=F),
    order=st.permutations(range(N)),
    liar_ids=st.sets(st.integers(0, N - 1), min_size=F, max_size=F),
)
def test_f_liars_in_any_order_never_win_nor_make_a_reproducible_build_divergent(honest, lies, order, liar_ids):
    answers = dict(zip(sorted(liar_ids), lies))
    replies = ReplyCollector(CLIENT, T, F, N)
    for sender in order:
        replies.add(reply(sender, answers.get(sender, honest)))
    assert replies.accepted and not replies.divergent
    assert agreed_part(replies.result) == agreed_part(honest)


@given(digests=st.lists(st.sampled_from([A, B, C, D]), min_size=N, max_size=N))
def test_divergent_exactly_when_no_digest_has_2f_plus_1(digests):
    replies = ReplyCollector(CLIENT, T, F, N)
    for sender, result in enumerate(digests):
        replies.add(reply(sender, result))
    best = max(digests.count(result) for result in digests)
    assert replies.accepted == (best >= 2 * F + 1)
    assert replies.divergent == (best < 2 * F + 1)


# --- the service and its records ------------------------------------------


async def test_a_divergent_build_is_recorded_with_every_nodes_digest(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path)
    task = asyncio.create_task(service.verbs.submit.wait(Operation("example", "main")))
    while not links.sent:
        await asyncio.sleep(0)
    t = json.loads(links.sent[0][1])["timestamp"]

    def send(sender: int, result: Result) -> None:
        message = attested(reply(sender, result, timestamp=t), node_auths[sender])
        service.core.on_frame(sender, json.dumps(encode(signed(message, node_auths[sender].sign))))

    for sender, result in [(0, A), (1, B), (2, C)]:
        send(sender, result)
    await asyncio.sleep(0.01)
    assert not task.done(), "decided divergent, the service still waits for node 3's digest"
    send(3, D)
    verdict = await asyncio.wait_for(task, 1)

    assert isinstance(verdict.outcome, Divergent)
    assert verdict.outcome.artifacts_by_node == {0: A.artifacts, 1: B.artifacts, 2: C.artifacts, 3: D.artifacts}
    record = records.builds.get(t)
    assert record["state"] == "divergent"
    assert record["result"] == {
        "status": "divergent", "exit_code": 0, "commit": COMMIT, "reason": "",
        "artifacts_by_node": {"0": A.artifacts, "1": B.artifacts, "2": C.artifacts, "3": D.artifacts},
    }
    assert [reply["sender"] for reply in record["replies"]] == [0, 1, 2, 3]
    records.close()


V0_SCHEMA = """
CREATE TABLE builds (
    build_id INTEGER PRIMARY KEY, repository TEXT NOT NULL, branch TEXT NOT NULL, commit_requested TEXT,
    submitted_at TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'timeout')),
    result TEXT, agreed_by TEXT NOT NULL DEFAULT '[]', elapsed_ms INTEGER, request TEXT NOT NULL,
    replies TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE client_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO builds VALUES (7, 'example', 'master', NULL, '2026-01-01T00:00:00+00:00', 'accepted',
    '{"status": "success", "exit_code": 0, "commit": null, "reason": ""}', '[0, 1]', 12, '{}', '[]');
INSERT INTO client_state VALUES ('last_timestamp', 7);
"""


def test_records_written_before_divergent_existed_are_kept_and_can_record_one(tmp_path):
    path = tmp_path / "builds.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(V0_SCHEMA)

    records = BuildRecords(path)
    assert records.builds.get(7)["state"] == "accepted" and records.builds.get(7)["agreed_by"] == [0, 1]
    assert records.store.next_timestamp(0) == 16  # past build 7, in lane 0
    records.verdicts.diverge(7, Result("success", 0, None), {0: A.artifacts, 1: B.artifacts}, 30, [])
    records.close()

    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert reopened.execute("SELECT state FROM builds WHERE build_id = 7").fetchone()[0] == "divergent"
        names = {row[0] for row in reopened.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"builds", "client_state", "deliveries", "approvals", "reruns", "schedules", "matrix_builds",
                     "actions", "tokens", "sessions", "ledger_members", "ledger_found", "flaky_tests", "deploy_approvals",
                     "sqlite_sequence"}
