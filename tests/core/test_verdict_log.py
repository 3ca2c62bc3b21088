"""The verdict log (pbft/ci/verdictlog.py): certified verdicts ride beside batches, and every
node appends the same leaves where the batch executes, executed, learnt or restored."""

from dataclasses import replace

from hypothesis import given, strategies as st

from pbft.ci.verdictlog import MAX_PENDING, VERDICT_DELAY_S, VerdictLog, leaf_data, proof_problem
from pbft.merkle import EMPTY_ROOT, Frontier, inclusion_proof, leaf_hash, root, verify_inclusion
from pbft.build import Result
from pbft.messages import MAX_BATCH_BYTES, Checkpoint, PrePrepare, ResultVote, VerdictProof, batch_digest, signed
from tests.support.cluster import Cluster


def certified(cluster: Cluster, *branches: str) -> list:
    """Requests ordered by all four nodes, built, and their verdicts certified everywhere."""
    requests = []
    for branch in branches:
        request = cluster.request(branch)
        cluster.deliver_to(0, request)
        cluster.run()
        requests.append(request)
    cluster.send_results()
    return requests


def heads(cluster: Cluster) -> set[tuple[int, str]]:
    return {replica.verdicts.log.head() for replica in cluster.replicas}


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_a_frontier_gives_the_root_of_every_prefix_in_logarithmic_memory(data):
    leaves = [leaf_hash(item) for item in data]
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for index, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == root(leaves[: index + 1])
        assert len(frontier._roots) == bin(index + 1).count("1")


def test_a_certified_verdict_is_logged_on_every_node_once_a_batch_carries_it():
    cluster = Cluster()
    request, = certified(cluster, "master")
    assert heads(cluster) == {(0, "")}  # certified, pending at every node: no batch carried it yet
    assert all(request.key in replica.verdicts.log.pending for replica in cluster.replicas)
    cluster.tick(VERDICT_DELAY_S / 2)
    cluster.run()
    assert heads(cluster) == {(0, "")}, "a lone verdict waits for a batch of requests to ride beside"
    cluster.tick(VERDICT_DELAY_S)
    cluster.run()
    vote = next(m for m in cluster.stored[1] if m.TYPE == "result" and m.key == request.key)
    data = leaf_data(1, request.client, request.timestamp, vote.result.agreed())
    assert heads(cluster) == {(1, leaf_hash(data).hex())}
    assert all(not replica.verdicts.log.pending for replica in cluster.replicas)
    assert [len(effect.leaves) for effect in cluster.executed[3]] == [0, 1]
    assert cluster.executed[3][1].leaves[0].data == data and not cluster.executed[3][1].batch


def test_verdicts_ride_beside_the_next_batch_of_requests():
    cluster = Cluster()
    first, second = certified(cluster, "master", "feature")
    third = cluster.request("third")
    cluster.deliver_to(0, third)
    cluster.run()
    carried = cluster.executed[2][-1]
    assert carried.batch == (third,) and [leaf.key for leaf in carried.leaves] == [first.key, second.key]
    assert len(heads(cluster)) == 1 and next(iter(heads(cluster)))[0] == 2


def test_a_checkpoint_signs_the_log_head_and_2f_plus_1_alike_make_it_stable():
    cluster = Cluster(settings={"checkpoint_interval": 4, "log_window": 8})
    certified(cluster, "a", "b", "c")
    cluster.tick(VERDICT_DELAY_S)  # seq 4: the three verdicts, and the checkpoint
    cluster.run()
    signed_by = {node: next(m for m in cluster.stored[node] if isinstance(m, Checkpoint) and m.seq == 4 and m.sender == node)
                 for node in range(4)}  # each node's own, as it signed it
    assert {(c.log_size, c.log_root) for c in signed_by.values()} == {cluster.replicas[0].verdicts.log.head()}
    assert all(c.seq == 4 and c.state_digest == cluster.replicas[0].checkpoints.stable_proof[0].state_digest
               for c in signed_by.values())
    assert all(replica.low_watermark == 4 for replica in cluster.replicas)
    log = cluster.replicas[0].verdicts.log
    assert log.head()[0] == 3
    leaves = [leaf.data for effect in cluster.executed[0] for leaf in effect.leaves]
    proof = inclusion_proof([leaf_hash(data) for data in leaves], 1)
    assert verify_inclusion(leaf_hash(leaves[1]), 1, 3, proof, bytes.fromhex(log.head()[1]))


def _proof(cluster: Cluster, request) -> VerdictProof:
    votes = [m for m in cluster.stored[0] if m.TYPE == "result" and m.key == request.key]
    return VerdictProof(tuple(sorted({vote.sender: vote for vote in votes}.values(), key=lambda vote: vote.sender)))


def test_a_proof_certifies_only_with_2f_plus_1_signed_votes_of_members():
    cluster = Cluster()
    request, = certified(cluster, "master")
    replica = cluster.replicas[1]
    members_at, auth = replica.verdicts.ports.members_at, replica.auth
    proof = _proof(cluster, request)
    assert len(proof.votes) >= 3
    assert proof_problem(proof, members_at, auth, ())[0] is None
    assert proof_problem(VerdictProof(proof.votes[:2]), members_at, auth, ()) == ("not_certified", b"")
    forged = replace(proof.votes[0], result=replace(proof.votes[0].result, exit_code=7))
    assert proof_problem(VerdictProof((forged, *proof.votes[1:])), members_at, auth, ())[0] == "vote_not_signed_by_a_member"
    assert proof_problem(VerdictProof((proof.votes[0], *proof.votes)), members_at, auth, ())[0] == "votes_repeated"
    other = _proof(cluster, certified(cluster, "other")[0])
    assert proof_problem(VerdictProof((*proof.votes[:2], other.votes[0])), members_at, auth, ())[0] == "votes_for_two_builds"


def test_a_primary_that_proposes_a_bad_or_repeated_proof_adds_nothing_anywhere():
    """Proofs are checked where the batch executes, by rules of the order alone: every node
    skips the same ones, so the heads stay alike."""
    cluster = Cluster()
    request, = certified(cluster, "master")
    cluster.tick(VERDICT_DELAY_S)
    cluster.run()
    head = cluster.replicas[0].verdicts.log.head()
    proof = _proof(cluster, request)
    short = VerdictProof(proof.votes[:2])
    primary = cluster.replicas[0]
    for proofs in ((proof,), (short,)):  # logged already; too few votes
        seq = primary.last_executed + 1
        preprepare = signed(PrePrepare(0, seq, batch_digest((), proofs), 0, (), verdicts=proofs), primary.auth.sign)
        primary.next_seq = seq
        for node in (1, 2, 3):
            cluster.deliver_to(node, preprepare)
        cluster.deliver_to(0, preprepare)
        cluster.run()
    assert all(replica.last_executed == 4 for replica in cluster.replicas)
    assert heads(cluster) == {head}


def test_a_pre_prepare_whose_proofs_do_not_match_its_digest_is_refused():
    cluster = Cluster()
    request, = certified(cluster, "master")
    proof = _proof(cluster, request)
    primary = cluster.replicas[0]
    preprepare = signed(PrePrepare(0, 2, batch_digest(()), 0, (), verdicts=(proof,)), primary.auth.sign)
    assert cluster.deliver_to(1, preprepare) == "ignore_preprepare_wrong_digest"


def test_a_restarted_node_restores_its_log_and_logs_nothing_twice(tmp_path):
    cluster = Cluster(store_dir=tmp_path)
    first, second = certified(cluster, "master", "feature")
    cluster.tick(VERDICT_DELAY_S)
    cluster.run()
    head = cluster.replicas[3].verdicts.log.head()
    cluster.crashed.add(3)
    cluster.restart(3, now=VERDICT_DELAY_S)
    restored = cluster.replicas[3].verdicts.log
    assert restored.head() == head and set(restored.logged) == {first.key, second.key} and not restored.pending
    third, = certified(cluster, "third")
    cluster.tick(3 * VERDICT_DELAY_S)
    cluster.run()
    assert len(heads(cluster)) == 1 and next(iter(heads(cluster)))[0] == 3


def test_a_node_that_learns_the_batches_by_state_transfer_has_the_same_log():
    cluster = Cluster(settings={"checkpoint_interval": 4, "log_window": 8})
    behind = 3
    cluster.crashed.add(behind)
    certified(cluster, "a", "b", "c")
    cluster.tick(VERDICT_DELAY_S)
    cluster.run()
    certified(cluster, "d", "e", "f", "g")
    cluster.crashed.discard(behind)
    now = VERDICT_DELAY_S
    for _ in range(10):
        now += 1.0
        cluster.tick(now)
        cluster.run()
    assert cluster.replicas[behind].last_executed == cluster.replicas[0].last_executed
    assert len(heads(cluster)) == 1 and next(iter(heads(cluster)))[0] == 7


def test_pending_verdicts_are_bounded_and_forgotten_with_their_builds():
    log = VerdictLog()
    proof = VerdictProof((ResultVote(1, "c", 1, Result("success", 0, "c" * 40), 0, "0" * 128),))
    for timestamp in range(MAX_PENDING + 5):
        log.certified(("c", timestamp), proof, 0.0)
    assert len(log.pending) == MAX_PENDING and ("c", 0) not in log.pending
    assert log.due(0.0) and len(log.propose(MAX_BATCH_BYTES)) == 8
    log.unpropose()
    # A batch's room left by its requests bounds the proofs beside them, oldest first.
    assert log.propose(3 * proof.encoded[1] + 1) == (proof,) * 3 and len(log.proposed) == 3
    assert log.propose(proof.encoded[1] - 1) == ()
    log.unpropose()
    assert len(log.pending) == MAX_PENDING
    log.forget([("c", MAX_PENDING)])
    assert ("c", MAX_PENDING) not in log.pending


def test_a_backup_times_a_verdict_it_holds_and_sees_not_logged_as_it_times_a_request():
    log = VerdictLog()
    proof = VerdictProof((ResultVote(1, "c", 1, Result("success", 0, "c" * 40), 0, "0" * 128),))
    log.certified(("c", 1), proof, 10.0)
    log.certified(("c", 2), proof, 11.0)
    grace_s = 2.0
    assert log.overdue(10.0 + VERDICT_DELAY_S + grace_s - 0.01, grace_s) is None, "the primary had no chance yet"
    assert log.overdue(10.0 + VERDICT_DELAY_S + grace_s, grace_s) == ("c", 1), "the oldest first"
    log.withdraw(("c", 1))  # its cancel executed: the order settled it otherwise
    assert log.overdue(20.0, grace_s) == ("c", 2)
    log.propose(MAX_BATCH_BYTES)
    assert log.overdue(20.0, grace_s) is None, "proposed, as primary: nothing to wait for"


def test_the_backups_replace_a_primary_that_leaves_a_certified_verdict_unlogged():
    cluster = Cluster()
    request, = certified(cluster, "master")
    cluster.crashed.add(0)  # the network is idle: no request waits, and so no timer ran before
    settings = cluster.replicas[1].settings
    overdue_s = VERDICT_DELAY_S + settings.vote_retry_s
    cluster.tick(overdue_s)
    cluster.run()
    assert all(cluster.replicas[node].views.timer_request == request.key for node in (1, 2, 3))
    cluster.tick(overdue_s + settings.view_change_timeout_s)
    cluster.run()
    cluster.tick(overdue_s + settings.view_change_timeout_s + VERDICT_DELAY_S)  # the new primary's batch of verdicts
    cluster.run()
    assert {cluster.replicas[node].view for node in (1, 2, 3)} == {1}
    assert {cluster.replicas[node].verdicts.log.head()[0] for node in (1, 2, 3)} == {1}
