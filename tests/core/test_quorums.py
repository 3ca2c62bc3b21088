"""Quorums when n is more than 3f+1 (a network grown from four nodes to five keeps f = 1).

Two certificates must share f+1 nodes, one of them honest: a quorum is ⌈(n+f+1)/2⌉ nodes,
which is 2f+1 only when n = 3f+1. With 2f+1 = 3 of five, a primary that sends one batch to
two backups and another to the other two makes both halves commit at the same sequence
number.
"""

from pbft.messages import Commit, PrePrepare, batch_digest, signed
from pbft.quorum import commit_quorum, prepare_quorum, verdict
from tests.support.cluster import Cluster


def test_a_quorum_of_five_nodes_with_f_one_is_four():
    assert [commit_quorum(n, 1) for n in (4, 5, 6, 7)] == [3, 4, 4, 5]
    assert [commit_quorum(n, 2) for n in (7, 8, 9, 10)] == [5, 6, 6, 7]
    assert prepare_quorum(5, 1) == 3
    for f in range(4):
        for n in range(3 * f + 1, 3 * f + 9):
            quorum = commit_quorum(n, f)
            assert 2 * quorum - n >= f + 1, (n, f)  # two quorums share an honest node
            assert quorum <= n - f, (n, f)  # and the honest nodes alone make one


def test_an_equivocating_primary_of_five_nodes_gets_no_two_batches_committed_at_one_sequence_number():
    cluster = Cluster(n=5, f=1)
    cluster.crashed.add(0)  # node 0, the primary of view 0, speaks only as written here
    sign = cluster.replicas[0].auth.sign
    halves = {(1, 2): cluster.request("master"), (3, 4): cluster.request("feature")}
    for backups, request in halves.items():
        digest = batch_digest((request,))
        preprepare = signed(PrePrepare(0, 1, digest, 0, (request,)), sign)
        commit = signed(Commit(0, 1, digest, 0), sign)
        for backup in backups:
            cluster.deliver_to(backup, preprepare)
            cluster.deliver_to(backup, commit)
    cluster.run()
    executed = {node: cluster.ledger(node) for node in range(1, 5) if cluster.ledger(node)}
    assert len(set(map(tuple, executed.values()))) <= 1, executed


def test_a_node_proven_to_sign_two_results_counts_for_any_result_and_is_left_out_of_the_picked_builders_agreement():
    # Node 0 signed "bad" to node 3 and "ok" to the others (`pbft.votes` holds the proof): node 3
    # reaches the quorum the others did, node 0 counting with the two honest "ok" votes.
    votes = {0: ("bad", None), 2: ("ok", None), 3: ("ok", None)}
    assert verdict(votes, 4, 1) == ("pending", None)
    assert verdict(votes, 4, 1, proven=frozenset({0})) == ("certified", ("ok", None))
    # Whatever else it signed: it counts for the result the others agree on, never alone.
    assert verdict({0: ("bad", None), 2: ("ok", None)}, 4, 1, proven=frozenset({0})) == ("pending", None)
    # Picked builders 1 and 2, node 2 proven: node 1's result alone is the picked builders' agreement.
    picked = {1: ("ok", None), 2: ("bad", None)}
    assert verdict(picked, 4, 1, chosen=(1, 2)) == ("pending", None)
    assert verdict(picked, 4, 1, chosen=(1, 2), proven=frozenset({2})) == ("certified", ("ok", None))
    # A result with artifacts still needs the members' quorum.
    with_files = {1: ("ok", "sha256:a"), 2: ("bad", "sha256:b")}
    assert verdict(with_files, 4, 1, chosen=(1, 2), proven=frozenset({2})) == ("pending", None)
    # Where honest nodes disagree (a flaky build) it counts with the larger side, which alone
    # could still have been made the quorum: the limit docs/faults.md names.
    split = {0: ("a", None), 1: ("a", None), 2: ("b", None), 3: ("b", None)}
    assert verdict(split, 4, 1) == ("disputed", None)
    assert verdict(split, 4, 1, proven=frozenset({0})) == ("certified", ("b", None))
