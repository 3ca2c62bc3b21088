"""The client's acceptance rule (OSDI'99 §4.1): f+1 matching replies from distinct nodes.

The collector tests are pure (n = 4, f = 1, unsigned replies: the collector
trusts its caller to have checked signatures). The last tests drive the
service layer with in-memory links and real signatures, to show that it
verifies and routes replies before anything is counted.
"""

import asyncio
import json
import sqlite3
import time

from hypothesis import given
from hypothesis import strategies as st

from client.outcome import Accepted
from pbft.replies import ReplyCollector, agreed_part, vouched_view
from pbft.build import Operation, Result
from pbft.messages import encode, signed
from tests.client.collector_fakes import GOOD, T, attested, reply, service_with_memory_links

F = 1
N = 3 * F + 1
CLIENT = "ci"
BAD = Result("failure", 1, "b" * 40)


def collector() -> ReplyCollector:
    return ReplyCollector(CLIENT, T, F)


def test_f_plus_one_matching_replies_suffice():
    replies = collector()
    assert replies.add(reply(0)) is False
    assert replies.add(reply(2)) is True
    assert replies.accepted
    assert replies.result == GOOD
    assert replies.agreed_by == [0, 2]
    assert [r.sender for r in replies.certificate] == [0, 2]


def test_f_matching_replies_are_not_enough():
    replies = collector()
    replies.add(reply(1))
    assert not replies.accepted
    assert replies.result is None and replies.agreed_by == [] and replies.certificate == []


def test_one_liar_never_gets_its_result_accepted():
    replies = collector()
    replies.add(reply(3, BAD))
    replies.add(reply(0, GOOD))
    assert not replies.accepted
    assert replies.add(reply(1, GOOD)) is True
    assert replies.result == GOOD and 3 not in replies.agreed_by


def test_repeated_sender_counts_once():
    replies = collector()
    replies.add(reply(3, BAD))
    assert replies.add(reply(3, BAD)) is False
    assert replies.add(reply(3, BAD, view=1)) is False
    assert not replies.accepted
    assert [r.sender for r in replies.replies] == [3]


def test_first_reply_per_sender_is_kept():
    # A node that changes its answer does not get a second vote.
    replies = collector()
    replies.add(reply(0, BAD))
    replies.add(reply(0, GOOD))
    replies.add(reply(1, GOOD))
    assert not replies.accepted
    assert replies.replies[0].result == BAD


def test_acceptance_fires_exactly_once():
    replies = collector()
    fired = [replies.add(reply(sender)) for sender in range(N)]
    assert fired == [False, True, False, False]
    assert replies.agreed_by == [0, 1]
    assert len(replies.replies) == N


def test_replies_for_another_request_are_ignored():
    replies = collector()
    assert replies.add(reply(0, timestamp=T + 1)) is False
    assert replies.add(reply(1, client="mallory")) is False
    replies.add(reply(2, timestamp=T + 1))
    assert not replies.accepted and replies.replies == []


def test_reason_is_not_part_of_the_agreement():
    replies = collector()
    replies.add(reply(0, Result("error", None, None, "no such branch")))
    replies.add(reply(1, Result("error", None, None, "fatal: couldn't find remote ref")))
    assert replies.accepted and replies.result.reason == "no such branch"


results = st.builds(
    Result,
    status=st.sampled_from(["success", "failure", "error", "timeout"]),
    exit_code=st.one_of(st.none(), st.integers(-1, 3)),
    commit=st.sampled_from([None, "a" * 40, "b" * 40]),
)


@given(
    honest=results,
    lies=st.lists(results, min_size=F, max_size=F),
    order=st.permutations(range(N)),
    liar_ids=st.sets(st.integers(0, N - 1), min_size=F, max_size=F),
)
def test_any_f_liars_in_any_order_never_win(honest, lies, order, liar_ids):
    answers = dict(zip(sorted(liar_ids), lies))
    replies = collector()
    for sender in order:
        # Liars may also repeat themselves; only their first reply counts.
        for _ in range(2 if sender in answers else 1):
            replies.add(reply(sender, answers.get(sender, honest)))
    assert replies.accepted
    assert agreed_part(replies.result) == agreed_part(honest)
    assert len(replies.agreed_by) == F + 1


def test_vouched_view_needs_f_plus_one_reports():
    assert vouched_view({}, F) == 0
    assert vouched_view({3: 1000}, F) == 0
    assert vouched_view({3: 1000, 0: 2}, F) == 2
    assert vouched_view({3: 1000, 0: 2, 1: 5}, F) == 5


# --- the service layer: verification and routing before counting ---------


async def test_service_counts_only_verified_replies_for_its_own_requests(tmp_path, caplog):
    service, links, node_auths, records = service_with_memory_links(tmp_path)
    task = asyncio.create_task(service.verbs.submit.wait(Operation("example", "main")))
    while not links.sent:
        await asyncio.sleep(0)
    t = json.loads(links.sent[0][1])["timestamp"]

    def frame(sender: int, *, signer: int | None = None, **changes) -> str:
        auth = node_auths[sender if signer is None else signer]
        message = attested(reply(sender, **{"timestamp": t, **changes}), auth)
        return json.dumps(encode(signed(message, auth.sign)))

    service.core.on_frame(1, frame(1, timestamp=t + 1))  # another request: not counted
    service.core.on_frame(1, frame(1, client="other"))  # another client
    service.core.on_frame(3, frame(0, signer=3))  # node 3 forging node 0's reply
    service.core.on_frame(3, frame(3, result=BAD))  # node 3 lying under its own name
    unattested = signed(reply(1, timestamp=t), node_auths[1].sign)
    service.core.on_frame(1, json.dumps(encode(unattested)))  # no attestation signatures: not counted
    service.core.on_frame(2, "{not json")
    service.core.on_frame(2, json.dumps({"type": "prepare"}))
    await asyncio.sleep(0.01)
    assert not task.done()
    service.core.on_frame(0, frame(0))
    await asyncio.sleep(0.01)
    assert not task.done()
    service.core.on_frame(2, frame(2))
    verdict = await asyncio.wait_for(task, 1)

    assert verdict.outcome == Accepted(GOOD, [0, 2], verdict.outcome.quorum_ms)
    assert [r.sender for r in verdict.replies] == [3, 0, 2]
    assert {node_id for node_id, _ in links.sent} == {0}, "first send goes to the primary only"
    for reason in ("ignore_reply_other_client", "ignore_reply_bad_signature", "ignore_frame_malformed",
                   "ignore_reply_bad_attestation"):
        assert reason in caplog.text
    assert records.builds.get(t)["state"] == "accepted"
    records.close()


async def test_requests_begun_together_go_out_and_then_share_one_commit(tmp_path):
    service, links, node_auths, records = service_with_memory_links(tmp_path)
    # A client that ran before has its timestamps' ceiling on disk (tests/test_client_timestamps.py):
    # its requests need no commit before they leave.
    records.store.next_timestamp(time.time_ns() // 1000)
    commits: list[int] = []  # frames sent before each commit
    real_commit = records.store.commit

    def counting_commit() -> None:
        commits.append(len(links.sent))
        real_commit()

    records.store.commit = counting_commit
    tasks = [asyncio.create_task(service.verbs.submit.wait(Operation("example", "main"))) for _ in range(5)]
    while not commits:
        await asyncio.sleep(0)
    assert commits == [5], "the five requests left, then one commit recorded them all"
    # What the client wrote is on disk: another connection sees every pending build.
    with sqlite3.connect(tmp_path / "builds.sqlite") as other:
        assert other.execute("SELECT count(*) FROM builds WHERE state = 'pending'").fetchone()[0] == 5
    for node_id in (0, 1):
        for _, text in links.sent[:5]:
            request = json.loads(text)
            answer = attested(reply(node_id, timestamp=request["timestamp"]), node_auths[node_id])
            service.core.on_frame(node_id, json.dumps(encode(signed(answer, node_auths[node_id].sign))))
    verdicts = await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert all(isinstance(verdict.outcome, Accepted) for verdict in verdicts)
    assert commits == [5, 5], "the five verdicts, accepted in one turn, are committed together"
    with sqlite3.connect(tmp_path / "builds.sqlite") as other:
        assert other.execute("SELECT count(*) FROM builds WHERE state = 'accepted'").fetchone()[0] == 5
    records.close()


async def test_a_request_goes_to_every_node_at_once_when_the_primarys_link_is_down(tmp_path):
    # client_retransmit_s is 60 s here: nothing but the link's state sends it on.
    service, links, _, _ = service_with_memory_links(tmp_path)
    links.down.add(0)
    task = asyncio.create_task(service.verbs.submit.wait(Operation("example", "main")))
    while len(links.sent) < N - 1:
        await asyncio.sleep(0)
    assert sorted(node for node, _ in links.sent) == [1, 2, 3]
    service.core.abandon_all()
    await task


async def test_requests_waiting_for_a_primary_whose_link_goes_down_go_to_every_node(tmp_path):
    service, links, _, _ = service_with_memory_links(tmp_path)
    task = asyncio.create_task(service.verbs.submit.wait(Operation("example", "main")))
    while not links.sent:
        await asyncio.sleep(0)
    assert [node for node, _ in links.sent] == [0]
    service.core.on_down(2)  # a backup: nothing to do
    await asyncio.sleep(0)
    assert len(links.sent) == 1
    links.down.add(0)
    service.core.on_down(0)
    while len(links.sent) < N:
        await asyncio.sleep(0)
    assert sorted(node for node, _ in links.sent[1:]) == [1, 2, 3]
    service.core.on_down(0)  # sent to all already: not again
    await asyncio.sleep(0)
    assert len(links.sent) == N
    service.core.abandon_all()
    await task
