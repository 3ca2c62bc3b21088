"""Checkpoints, state transfer and crash recovery of the pure replica (OSDI'99 §4.3, §5.3)."""

from pbft.ledger import MemoryLedger
from pbft.build import Result
from pbft.checkpoints import Checkpoints
from pbft.messages import Checkpoint, Fetch, ViewChange, signed
from tests.support.cluster import Cluster

T_VIEW_CHANGE = 4.0  # ReplicaSettings.view_change_timeout_s
SMALL = {"checkpoint_interval": 2, "log_window": 4, "pipeline_depth": 2, "batch_max": 1}


def submit(cluster, count, branch="master"):
    requests = []
    for _ in range(count):
        request = cluster.request(branch)
        requests.append(request)
        cluster.deliver_to(cluster.replicas[1].primary(), request)
        cluster.run()
    return requests


def test_a_node_that_missed_stable_checkpoints_catches_up_by_state_transfer():
    cluster = Cluster(settings=SMALL)
    cluster.crashed.add(3)  # cut off: receives nothing
    requests = submit(cluster, 7)
    assert cluster.replicas[0].low_watermark == 6 and cluster.executed_seqs(3) == []
    cluster.crashed.discard(3)
    submit(cluster, 1)  # node 3 now sees traffic far beyond its window
    assert cluster.replicas[3].catch_up.target_seq() > cluster.replicas[3].last_executed
    cluster.tick(10.0)  # no progress for longer than fetch_interval_s: it asks
    cluster.run()
    replica = cluster.replicas[3]
    assert replica.last_executed == 8 and replica.low_watermark == 8
    assert cluster.ledger(3) == cluster.ledger(0)
    assert replica.state_digest == cluster.replicas[0].state_digest
    # Batches learnt below the stable checkpoint are not built again here.
    assert [len(effect.requests) for effect in cluster.executed[3][:6]] == [0] * 6
    assert all(request.key in replica.clients.executed for request in requests)


def test_a_proof_counts_a_senders_vote_that_it_contradicted_before():
    # A faulty node 2 first tells node 3 a wrong digest at seq 2, then signs the right one into
    # the proof a state transfer carries. A node that joins at seq 2 has no vote of its own
    # there, so all 2f+1 of the proof must count.
    cluster = Cluster(settings=SMALL)
    submit(cluster, 2)
    proof = cluster.replicas[1].stable_proof
    assert 2 in {vote.sender for vote in proof}
    checkpoints = Checkpoints(interval=2, log_window=4)
    checkpoints.quorum = 3
    wrong = signed(Checkpoint(2, "b" * 64, 2), cluster.replicas[2].auth.sign)
    assert checkpoints.add(wrong, last_executed=0) is None
    checkpoints.computed(2, proof[0].vouches())
    checkpoints.adopt_proof(2, proof)
    assert checkpoints.try_stable(2) and set(checkpoints.stable_proof) == set(proof)


def test_state_that_does_not_hash_to_the_checkpoint_is_refused():
    cluster = Cluster(settings=SMALL)
    cluster.crashed.add(3)
    submit(cluster, 6)
    helper = cluster.replicas[1]
    # Node 1 answers with two batches swapped: the chain no longer matches the proof.
    forged = MemoryLedger()
    forged.batches = dict(cluster.ledgers[1].batches)
    forged.batches[1], forged.batches[2] = forged.batches[2], forged.batches[1]
    helper.answer_fetch(signed(Fetch(1, 0, 3), cluster.replicas[3].auth.sign), forged)
    (state_message,) = [effect.message for effect in helper.take_effects()]
    cluster.crashed.discard(3)
    assert cluster.deliver_to(3, state_message) == "ignore_state_entries_do_not_match_checkpoint"
    assert cluster.replicas[3].last_executed == 0


def test_commit_certificates_carry_a_node_across_a_gap_above_the_checkpoint():
    cluster = Cluster(settings={"checkpoint_interval": 100, "log_window": 200})
    cluster.crashed.add(3)
    submit(cluster, 3)
    cluster.crashed.discard(3)
    submit(cluster, 1)  # seq 4: node 3 takes part but cannot execute past its gap
    assert cluster.replicas[3].last_executed == 0 and cluster.replicas[3].slots[4].committed
    cluster.tick(10.0)
    cluster.run()
    assert cluster.executed_seqs(3) == [1, 2, 3, 4]
    # Above the checkpoint there is no proof of past builds: the node builds them itself.
    assert [len(effect.requests) for effect in cluster.executed[3]] == [1, 1, 1, 1]


def test_a_restarted_node_resumes_from_its_store_and_catches_up(tmp_path):
    cluster = Cluster(settings=SMALL, store_dir=tmp_path)
    submit(cluster, 3)
    before = cluster.replicas[2]
    cluster.crashed.add(2)  # kill -9: whatever it had in memory is gone
    submit(cluster, 4)
    cluster.restart(2, now=20.0)
    restored = cluster.replicas[2]
    assert restored is not before
    assert (restored.view, restored.last_executed) == (before.view, before.last_executed)
    assert restored.state_digest == before.state_digest
    cluster.tick(25.0)
    cluster.run()
    assert cluster.replicas[2].last_executed == 7
    assert cluster.replicas[2].state_digest == cluster.replicas[0].state_digest
    executed_seqs = cluster.executed_seqs(2)
    assert len(executed_seqs) == len(set(executed_seqs))  # nothing executed twice across the restart


def test_a_restarted_primary_does_not_reuse_sequence_numbers(tmp_path):
    cluster = Cluster(settings={"checkpoint_interval": 100, "log_window": 200}, store_dir=tmp_path)
    submit(cluster, 2)
    cluster.crashed.add(0)
    cluster.restart(0, now=1.0)
    assert cluster.replicas[0].next_seq == 2
    third = submit(cluster, 1)[0]
    assert [effect.seq for effect in cluster.executed[1]] == [1, 2, 3]
    assert cluster.builds(1)[-1] == third


def test_exactly_once_memory_forgets_requests_older_than_the_expiry():
    cluster = Cluster(settings={**SMALL, "request_expiry_s": 1.0})
    early = cluster.request(timestamp=1_000)
    cluster.deliver_to(0, early)
    cluster.run()
    for step in range(1, 6):
        cluster.deliver_to(0, cluster.request(timestamp=1_000 + step * 1_000_000))
        cluster.run()
    replica = cluster.replicas[1]
    assert early.key not in replica.clients.executed
    assert len(replica.clients.executed) <= 3
    # The forgotten request can never run again: it is below the client's floor.
    assert cluster.deliver_to(0, early) == "ignore_request_expired"
    assert cluster.builds(1).count(early) == 1


def test_a_node_restarted_into_an_old_view_learns_the_new_view_from_its_peers(tmp_path):
    cluster = Cluster(settings={"checkpoint_interval": 100, "log_window": 200}, store_dir=tmp_path)
    submit(cluster, 1)
    cluster.crashed.add(0)  # the primary dies; the others move to view 1 without it
    request = cluster.request("feature")
    for node in (1, 2, 3):
        cluster.deliver_to(node, request)
    cluster.run()
    cluster.tick(4.0)
    cluster.run()
    assert [cluster.replicas[n].view for n in (1, 2, 3)] == [1, 1, 1]
    assert [cluster.replicas[n].view_confirmed for n in (1, 2, 3)] == [True] * 3  # entered by a NEW-VIEW
    cluster.restart(0, now=10.0)
    assert cluster.replicas[0].view == 0
    assert not cluster.replicas[0].view_confirmed  # its store's view: the others may have left it
    submit(cluster, 1)  # view-1 traffic reaches node 0, which buffers it and asks for state
    assert not cluster.replicas[0].view_confirmed  # f+1 peers show view 1, not its own
    cluster.tick(20.0)
    cluster.run()
    assert (cluster.replicas[0].view, cluster.replicas[0].changing_view) == (1, False)
    assert cluster.replicas[0].view_confirmed
    assert cluster.ledger(0)[-1] == cluster.ledger(1)[-1]
    assert cluster.replicas[0].state_digest == cluster.replicas[1].state_digest


def test_a_node_that_only_waits_for_a_stalled_sequence_number_backs_off(tmp_path):
    cluster = Cluster()
    replica = cluster.replicas[3]
    replica.catch_up.proven(5)  # a verified checkpoint proof beyond us, and nobody answers
    replica.tick(0.0)
    asks = []
    for second in range(1, 40):
        replica.tick(float(second))
        asks += [second for effect in replica.take_effects() if effect.message.TYPE == "fetch"]
    assert asks[:4] == [1, 2, 4, 8]
    assert len(asks) <= 6


def test_state_learnt_during_a_view_change_keeps_the_view_change_timer():
    cluster = Cluster(settings=SMALL)
    cluster.crashed.add(3)
    requests = submit(cluster, 6)
    cluster.crashed.discard(3)
    lagging = cluster.replicas[3]
    # A client retransmits to node 3 directly: its timer starts, and the request's
    # batch is among those the state transfer brings, so nothing else keeps it waiting.
    lagging.receive(requests[-1], now=0.0)
    lagging.tick(100.0)
    assert lagging.changing_view and lagging.view == 1
    lagging.take_effects()
    for sender in (1, 2):  # 2f+1 nodes want view 1: the wait for NEW-VIEW is timed
        vote = signed(ViewChange(1, 0, (), (), sender), cluster.replicas[sender].auth.sign)
        assert lagging.receive(vote, now=100.0) is None
    assert lagging.views.timer_deadline is not None
    helper = cluster.replicas[1]
    helper.answer_fetch(signed(Fetch(1, 1, 3), lagging.auth.sign), cluster.ledgers[1])
    (state_message,) = [effect.message for effect in helper.take_effects()]
    assert lagging.receive(state_message, now=100.5) is None
    assert lagging.last_executed == 6
    assert lagging.changing_view and lagging.views.timer_deadline is not None


def test_a_node_restarted_in_a_view_change_says_its_view_change_again(tmp_path):
    cluster = Cluster(store_dir=tmp_path)
    cluster.crashed.add(0)
    for node in (1, 2, 3):
        cluster.deliver_to(node, cluster.request())
    cluster.network.clear()
    cluster.tick(T_VIEW_CHANGE, nodes=(3,))
    cluster.network.clear()  # its VIEW-CHANGE is lost, then it is killed
    cluster.crashed.add(3)
    cluster.restart(3, now=50.0)
    resent = [message for node, message in cluster.network if message.TYPE == "view-change"]
    assert {(message.view, message.sender) for message in resent} == {(1, 3)}
    assert cluster.replicas[3].changing_view


def adopted_by_transfer(slow: int) -> tuple[Cluster, list]:
    """Seven builds with artifacts (2f+1 = 3 matching votes certify one) ordered while node 3
    was cut off, `slow`'s builds unfinished; then node 3 adopts batches 1..8 by state transfer."""
    artifacts = Result("success", 0, "a" * 40, artifacts="sha256:" + "1" * 64)
    cluster = Cluster(settings=SMALL, build=lambda operation: artifacts)
    cluster.crashed.add(3)
    cluster.slow.add(slow)
    requests = submit(cluster, 7)
    cluster.send_results()
    cluster.crashed.discard(3)
    submit(cluster, 1)
    cluster.tick(10.0)  # node 3 asks for the ledger and adopts batches 1..8 by transfer
    cluster.run()
    return cluster, requests


def test_a_node_that_adopted_builds_by_state_transfer_builds_those_whose_verdict_is_still_open():
    """A build with artifacts is certified by 2f+1 matching votes. With node 2's builds stuck,
    nodes 0 and 1 cannot make up that quorum alone, and node 3, which learnt the batches
    by state transfer, must build them too once the peers' votes leave them open."""
    cluster, requests = adopted_by_transfer(slow=2)  # node 2 orders and checkpoints, but its builds do not finish
    node3 = cluster.replicas[3]
    assert node3.last_executed == 8 and cluster.builds(3)[:6] == []
    assert all(node3.clients.executed[request.key] is None for request in requests[:6])
    for now in (10.0, 12.0, 14.0, 18.0, 22.0):  # it asks for the votes, twice, and still lacks a quorum
        cluster.send_results(now)
    replied = {reply.timestamp for reply in cluster.replies if reply.sender == 3}
    assert {request.timestamp for request in requests[:6]} <= replied
    records = cluster.stores[3].build_records(1)
    assert records[0]["verdict"]["state"] == "certified" and records[0]["own_result"] is not None


def test_a_peer_asking_for_the_ledger_again_and_again_is_answered_once_per_half_interval():
    """A faulty peer that raises `from_seq` by one with each FETCH (or asks from an old view
    beyond our ledger) gets one answer per half fetch interval; an honest laggard's ask for
    the chunk after the one it got is still answered at once."""
    cluster = Cluster(settings={**SMALL, "transfer_chunk": 2})
    submit(cluster, 8)
    helper = cluster.replicas[1]
    assert helper.low_watermark == 8

    def ask(from_seq, view=0):
        cluster.deliver_to(1, signed(Fetch(from_seq, view, 3), cluster.replicas[3].auth.sign))
        sent = [message for node, message in cluster.network if node == 3 and message.TYPE == "state"]
        cluster.network.clear()
        return sent

    [first] = ask(1)
    assert first.stable_seq < 8  # a chunk: the next one is asked for at once, and answered
    assert [len(ask(seq)) for seq in range(2, first.stable_seq + 1)] == [0] * (first.stable_seq - 1)
    assert len(ask(first.stable_seq + 1)) == 1
    assert [len(ask(seq)) for seq in range(9, 14)] == [0] * 5  # nothing newer
    cluster.tick(helper.settings.fetch_interval_s / 2)
    assert len(ask(2)) == 1


def test_a_node_restarted_before_it_built_what_it_adopted_still_builds_what_stays_open():
    cluster, requests = adopted_by_transfer(slow=2)
    assert cluster.replicas[3].transfer.learnt_unbuilt  # adopted, not built yet: killed now
    cluster.crashed.add(3)
    cluster.restart(3, now=10.5)
    assert set(cluster.replicas[3].transfer.learnt_unbuilt) >= {request.key for request in requests[:6]}
    for now in (11.0, 13.0, 15.0, 19.0, 23.0, 27.0):  # asks at 13 and 19, waits for answers until 27
        cluster.send_results(now)
    replied = {reply.timestamp for reply in cluster.replies if reply.sender == 3}
    assert {request.timestamp for request in requests[:6]} <= replied


def test_a_node_that_adopted_builds_waits_for_the_answer_to_its_second_ask_before_it_builds():
    """The answers to the first VOTE-FETCH are lost (a busy node's peers drop frames that
    waited too long for it); those to the second arrive a moment after it. A node that built
    at once when it sent the second ask would rebuild hours of certified history."""
    cluster, requests = adopted_by_transfer(slow=3)  # what node 3 starts to build stays in cluster.running
    node3 = cluster.replicas[3]
    assert node3.last_executed == 8 and node3.transfer.learnt_open
    running_before = list(cluster.running.get(3, []))  # batch 8, ordered as a member
    to_node3 = lambda node, message: node != 3  # noqa: E731 - the peers' answers are lost

    cluster.tick(11.0)  # node 3's first ask
    cluster.run(keep=to_node3)
    cluster.tick(15.0)  # its second ask: the answers are on their way
    assert cluster.running.get(3, []) == running_before
    cluster.run()
    assert all(request.key in node3.verdicts.result_votes.certified for request in requests[:6])
    cluster.tick(60.0)
    assert cluster.running.get(3, []) == running_before and not node3.transfer.learnt_open


def test_a_node_whose_asks_go_unanswered_twice_asks_again_before_it_builds():
    """A busy node can lose the answers to both of its first asks (its peers drop frames
    that waited too long for it). An ask counts towards building only once a vote for the
    build came back after it: the third ask, answered, spares the rebuild."""
    cluster, requests = adopted_by_transfer(slow=3)
    node3 = cluster.replicas[3]
    running_before = list(cluster.running.get(3, []))
    to_node3 = lambda node, message: node != 3  # noqa: E731 - the peers' answers are lost

    for now in (11.0, 15.0):  # both asks go out; no answer comes back
        cluster.tick(now)
        cluster.run(keep=to_node3)
    cluster.tick(23.0)  # the second ask had its time: unanswered, it asks a third time
    assert cluster.running.get(3, []) == running_before and node3.transfer.learnt_open
    cluster.run()
    assert all(request.key in node3.verdicts.result_votes.certified for request in requests[:6])
    cluster.tick(120.0)
    assert cluster.running.get(3, []) == running_before and not node3.transfer.learnt_open


def test_a_node_that_hears_no_vote_at_all_builds_what_it_adopted_after_its_fourth_ask():
    """No peer answers with a vote: perhaps none of them built it. Asked four times and
    waited for, the node builds it itself rather than leave the verdict open for ever."""
    cluster, requests = adopted_by_transfer(slow=3)
    running_before = list(cluster.running.get(3, []))
    to_node3 = lambda node, message: node != 3  # noqa: E731

    for now in (11.0, 15.0, 23.0, 39.0, 70.0):
        cluster.tick(now)
        assert cluster.running.get(3, []) == running_before, now
        cluster.run(keep=to_node3)
    cluster.tick(71.0)  # the fourth ask (at 39) had its 32 s
    building = [request.key for build in cluster.running.get(3, []) if build not in running_before
                for _, request in [build]]
    assert building[:6] == [request.key for request in requests[:6]]


def test_a_restarted_node_confirms_its_view_once_f_plus_1_peers_show_they_work_in_it(tmp_path):
    cluster = Cluster(store_dir=tmp_path)
    assert not any(replica.view_confirmed for replica in cluster.replicas)  # nobody has heard anybody
    submit(cluster, 1)
    assert all(replica.view_confirmed for replica in cluster.replicas)
    cluster.crashed.add(2)
    cluster.restart(2, now=1.0)
    assert cluster.replicas[2].view == 0 and not cluster.replicas[2].view_confirmed
    submit(cluster, 1)  # view-0 messages of f+1 = 2 peers
    assert cluster.replicas[2].view_confirmed
