"""Normal-case operation of the pure replica (OSDI'99 §4.2)."""

from dataclasses import replace

from pbft.effects import Execute
from pbft.build import Result
from pbft.messages import Commit, PrePrepare, Prepare, ResultVote, batch_digest, signed
from pbft.networkchange import document_digest
from pbft.networks import NetworkClaims
from tests.support.cluster import Cluster


def test_a_request_commits_and_executes_on_every_node():
    cluster = Cluster()
    request = cluster.request("master")
    cluster.deliver_to(0, request)
    cluster.run()
    for node in range(4):
        assert cluster.executed_seqs(node) == [1]
        assert cluster.builds(node) == [request]
        assert cluster.replicas[node].last_executed == 1
    assert sorted(reply.sender for reply in cluster.replies) == [0, 1, 2, 3]
    assert {reply.result.agreed()["status"] for reply in cluster.replies} == {"success"}
    assert cluster.drops == []


def test_requests_execute_in_sequence_order_everywhere():
    cluster = Cluster()
    requests = [cluster.request(branch) for branch in ("master", "feature", "master", "feature", "x")]
    for request in requests:
        cluster.deliver_to(0, request)
    cluster.run()
    for node in range(4):
        assert cluster.executed_seqs(node) == [1, 2, 3, 4, 5]
        assert cluster.builds(node) == requests


def test_primary_batches_requests_beyond_its_pipeline():
    cluster = Cluster(settings={"pipeline_depth": 1, "batch_max": 8})
    requests = [cluster.request() for _ in range(5)]
    for request in requests:
        cluster.deliver_to(0, request)  # seq 1 goes out at once; the rest wait for it
    cluster.run()
    for node in range(4):
        assert [len(effect.requests) for effect in cluster.executed[node]] == [1, 4]
        assert cluster.builds(node) == requests


def test_a_backup_forwards_a_client_request_to_the_primary():
    cluster = Cluster()
    request = cluster.request()
    cluster.deliver_to(2, request)
    cluster.run()
    assert all(cluster.builds(node) == [request] for node in range(4))


def test_a_prepare_that_arrives_before_its_preprepare_is_buffered():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    # Hold back every pre-prepare to node 3 until all other traffic has been delivered.
    held = []

    def keep(node, message):
        if node == 3 and isinstance(message, PrePrepare):
            held.append(message)
            return False
        return True

    cluster.run(keep)
    assert cluster.executed_seqs(3) == []
    assert cluster.replicas[3].slots[1].prepares  # prepares it could not use yet
    cluster.deliver_to(3, held[0])
    cluster.run()
    assert cluster.executed_seqs(3) == [1]


def test_a_later_sequence_number_waits_for_the_earlier_one():
    cluster = Cluster()
    first, second = cluster.request("master"), cluster.request("feature")
    cluster.deliver_to(0, first)
    cluster.deliver_to(0, second)
    held = []

    def keep(node, message):
        # Node 2 sees nothing of sequence number 1 until sequence number 2 has committed.
        if node == 2 and message.seq == 1:
            held.append(message)
            return False
        return True

    cluster.run(keep)
    assert cluster.replicas[2].slots[2].committed
    assert cluster.executed_seqs(2) == []
    for message in held:
        cluster.deliver_to(2, message)
    cluster.run()
    assert cluster.executed_seqs(2) == [1, 2]
    assert cluster.builds(2) == [first, second]


def test_matching_votes_from_one_sender_count_once():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    preprepare = next(m for node, m in cluster.network if node == 1)
    cluster.network.clear()
    # The primary sends no prepare of its own, so it needs 2f = 2 from distinct backups.
    prepare = signed(Prepare(0, 1, preprepare.digest, 2), cluster.replicas[2].auth.sign)
    for _ in range(3):
        cluster.deliver_to(0, prepare)
    assert not cluster.replicas[0].slots[1].prepared
    cluster.deliver_to(0, signed(Prepare(0, 1, preprepare.digest, 3), cluster.replicas[3].auth.sign))
    assert cluster.replicas[0].slots[1].prepared


def test_commit_needs_two_f_plus_one_distinct_nodes():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    # Only nodes 0, 1, 2 take part: node 3 is unreachable. 2f+1 = 3 commits still suffice.
    cluster.crashed.add(3)
    cluster.run()
    assert [cluster.executed_seqs(node) for node in range(3)] == [[1], [1], [1]]
    # With a second node gone no quorum forms and nothing executes.
    cluster = Cluster()
    cluster.crashed.update({2, 3})
    cluster.deliver_to(0, cluster.request())
    cluster.run()
    assert all(cluster.executed_seqs(node) == [] for node in range(4))
    assert not any(isinstance(effect, Execute) for effect in cluster.replicas[0].take_effects())


def test_checkpoints_become_stable_and_the_window_moves_on():
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "pipeline_depth": 4, "batch_max": 1})
    requests = [cluster.request() for _ in range(11)]
    for request in requests:
        cluster.deliver_to(0, request)
        cluster.run()
    for replica in cluster.replicas:
        assert replica.last_executed == 11
        assert replica.low_watermark == 10
        assert set(replica.slots) <= {11}  # everything at or below the stable checkpoint is gone
        assert set(replica.checkpoints.votes) == {10}
    assert len({replica.state_digest for replica in cluster.replicas}) == 1


def test_state_digest_differs_when_history_differs():
    one, other = Cluster(), Cluster()
    one.deliver_to(0, one.request("master"))
    other.deliver_to(0, other.request("feature"))
    one.run()
    other.run()
    assert one.replicas[1].state_digest != other.replicas[1].state_digest


def test_a_preprepare_reissued_with_the_same_digest_is_harmless():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    preprepare = next(m for node, m in cluster.network if node == 1)
    cluster.run()
    assert cluster.deliver_to(1, preprepare) == "ignore_preprepare_duplicate"
    assert cluster.executed_seqs(1) == [1]


def test_batch_digest_binds_every_request():
    cluster = Cluster()
    a, b = cluster.request("master"), cluster.request("feature")
    assert batch_digest((a, b)) != batch_digest((b, a))
    assert batch_digest((a,)) != batch_digest((replace(a, sig=b.sig),))


def test_commit_for_an_unknown_sequence_number_is_kept_until_its_preprepare():
    cluster = Cluster()
    request = cluster.request()
    cluster.deliver_to(0, request)
    preprepare = next(m for node, m in cluster.network if node == 1)
    commits = {
        sender: signed(Commit(0, 1, preprepare.digest, sender), cluster.replicas[sender].auth.sign)
        for sender in (2, 3)
    }
    for commit in commits.values():
        assert cluster.deliver_to(1, commit) is None
    assert cluster.replicas[1].slots[1].commits == commits


def test_a_result_vote_for_a_build_not_yet_ordered_waits_for_it():
    cluster = Cluster()
    request = cluster.request()
    early = signed(ResultVote(1, request.client, request.timestamp, Result("success", 0, "a" * 40), 2),
                   cluster.replicas[2].auth.sign)
    assert cluster.replicas[1].receive(early) is None
    assert cluster.replicas[1].buffered(cluster.replicas[1].verdicts.early_votes) == [early]
    assert cluster.replicas[1].take_effects() == []
    cluster.deliver_to(0, request)
    cluster.run()
    cluster.send_results()
    assert early in cluster.stored[1] and not cluster.replicas[1].buffered(cluster.replicas[1].verdicts.early_votes)
    votes = [m for m in cluster.stored[1] if isinstance(m, ResultVote)]
    # The 2f+1 RESULTs that certified it, the early one among them; one agreeing after that is not kept.
    senders = [vote.sender for vote in votes]
    assert len(senders) == len(set(senders)) >= 3 and {1, 2} <= set(senders)
    # A forged vote against the verdict is checked, and refused (one for it changes nothing).
    forged = replace(early, sender=3, result=Result("failure", 1, "a" * 40))
    assert cluster.replicas[1].receive(forged) == "ignore_result_bad_signature"


def test_a_vote_for_a_slot_past_its_phase_is_neither_checked_nor_kept():
    cluster = Cluster()
    cluster.deliver_to(0, cluster.request())
    cluster.run()
    replica = cluster.replicas[1]
    slot = replica.slots[1]
    assert slot.prepared and slot.committed
    stored = len(cluster.stored[1])
    forged = [kind(0, 1, slot.preprepare.digest, 3, "00" * 64) for kind in (Prepare, Commit)]
    # Past its phase a vote can change nothing: dropped before its signature is checked.
    assert [cluster.deliver_to(1, vote) for vote in forged] == [None, None]
    assert len(cluster.stored[1]) == stored
    # Before it, the same forgery is checked and refused.
    slot.committed = False
    assert cluster.deliver_to(1, forged[1]) == "ignore_commit_bad_signature"


def test_a_node_that_runs_another_network_document_is_named_and_its_checkpoints_never_match():
    ours, other = "a" * 64, {"build": {"memory_mb": 512}}
    theirs = document_digest(other)
    cluster = Cluster(settings={"checkpoint_interval": 2, "network": ours})
    cluster.replicas[3].run_network(other)  # its operator's file differs (shared/networkdoc.py)
    for _ in range(2):
        cluster.deliver_to(0, cluster.request())
        cluster.run()
    for node in range(3):
        replica = cluster.replicas[node]
        assert (replica.last_executed, replica.low_watermark) == (2, 2)  # three matching checkpoints: 2f+1
        assert replica.networks.foreign() == {3: theirs}
        assert {vote.sender for vote in replica.stable_proof} == {0, 1, 2}
    assert (cluster.replicas[3].last_executed, cluster.replicas[3].low_watermark) == (2, 0)
    assert cluster.replicas[3].networks.foreign() == {0: ours, 1: ours, 2: ours}
    assert {reply.sender: reply.network for reply in cluster.replies if reply.timestamp == 2} == {
        0: ours, 1: ours, 2: ours, 3: theirs}


def test_a_peer_is_named_once_per_network_document_it_names():
    claims, ours = NetworkClaims(), "a" * 64
    assert claims.claim(1, ours, ours) is False
    assert [claims.claim(2, "b" * 64, ours), claims.claim(2, "b" * 64, ours), claims.claim(2, "c" * 64, ours)] == [
        True, False, True]
    assert claims.foreign() == {2: "c" * 64}
    assert claims.claim(3, "b" * 64, None) is False and 3 not in claims.foreign()  # a point we have not reached
    assert claims.claim(2, ours, ours) is False and claims.foreign() == {}  # fixed and restarted: no longer named
