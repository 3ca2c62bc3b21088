"""`builders: f+1` (pbft/builders.py): the order picks f+1 members to build a request, the
others stand by and build only when those disagree, keep artifacts or one is late; the
verdict is certified once every picked builder agrees, and the client settles at once."""

import dataclasses

from pbft.build import Result
from pbft.builders import builders_of, chosen_builders
from pbft.messages import Relay, Reply, ResultVote, decode, encode, signed
from pbft.replies import ReplyCollector
from tests.support.cluster import CLIENT, Cluster

COMMIT = "c" * 40
F_PLUS_1 = {"f": 1, "nodes": [{"id": node, "public_key": ""} for node in range(4)],
            "repositories": [{"name": "example", "builders": "f+1"}]}


def verdict(cluster: Cluster, node: int, request) -> str | None:
    return cluster.replicas[node].verdicts.result_votes.decided.get(request.key)


def built_by(cluster: Cluster, request) -> list[int]:
    """The nodes whose build of `request` reported a result (a reply for it)."""
    return sorted(reply.sender for reply in cluster.replies if reply.timestamp == request.timestamp)


def submit(cluster: Cluster):
    """A request ordered by all four nodes (node 0 its primary), and its builds started."""
    request = cluster.request()
    cluster.deliver_to(0, request)
    cluster.run()
    return request


def test_the_order_picks_f_plus_1_members_that_rotate_with_the_sequence_number():
    assert [chosen_builders(seq, (0, 1, 2, 3), 1) for seq in (1, 2, 3, 4)] == [(1, 2), (2, 3), (0, 3), (0, 1)]
    assert chosen_builders(5, (2, 4, 7, 9, 11, 12, 20), 2) == (2, 12, 20)  # from the 6th of 7, wrapping round
    assert builders_of(F_PLUS_1, "example") == "f+1" and builders_of(F_PLUS_1, "other") == "all"


def test_the_picked_builders_alone_build_and_their_agreement_certifies_the_verdict():
    cluster = Cluster(document=F_PLUS_1)
    request = submit(cluster)
    cluster.send_results()

    assert built_by(cluster, request) == [1, 2]  # seq 1: the members from index 1 on
    assert all(verdict(cluster, node, request) == "certified" for node in range(4))
    replies = [reply for reply in cluster.replies if reply.timestamp == request.timestamp]
    assert {reply.builders for reply in replies} == {(1, 2)}
    collector = ReplyCollector(CLIENT, request.timestamp, f=1, n=4)
    for reply in replies:
        collector.add(reply)
    assert collector.accepted and collector.settled and collector.ledger_verdict == "certified"


def test_a_picked_builder_that_lies_makes_the_others_build_and_the_members_quorum_decides():
    cluster = Cluster(document=F_PLUS_1)
    cluster.slow.add(2)  # node 2's build reports what the test says, below
    request = submit(cluster)
    cluster.send_results()
    assert built_by(cluster, request) == [1]
    lie = Result("success", 0, "f" * 40)
    cluster.running[2] = []
    cluster.interpreter(2).step(cluster.replicas[2].execution_finished, request, lie, 1)
    cluster._end_turn(2)
    cluster.send_results()

    assert built_by(cluster, request) == [0, 1, 2, 3]  # the two standing by built it
    honest = cluster.build(request.operation)
    for node in (0, 1, 3):
        assert verdict(cluster, node, request) == "certified"
        assert cluster.replicas[node].verdicts.result_votes.certified[request.key] == hash(honest.agreed_key())


def test_a_silent_picked_builder_costs_standby_s_after_the_first_result_then_the_others_build():
    cluster = Cluster(document=F_PLUS_1, settings={"standby_s": 30.0})
    cluster.slow.add(2)  # its build never ends
    request = submit(cluster)
    cluster.send_results(now=1.0)  # node 1's result comes at 1 s
    assert built_by(cluster, request) == [1]
    cluster.send_results(now=30.9)
    assert built_by(cluster, request) == [1]  # still waiting for node 2
    cluster.send_results(now=31.0)

    assert built_by(cluster, request) == [0, 1, 3]
    assert all(verdict(cluster, node, request) == "certified" for node in (0, 1, 3))


def test_a_picked_builders_artifacts_make_the_others_build_since_artifacts_need_2f_plus_1():
    with_artifacts = Result("success", 0, COMMIT, artifacts="sha256:" + "a" * 64)
    cluster = Cluster(document=F_PLUS_1, build=lambda operation: with_artifacts)
    request = submit(cluster)
    cluster.send_results()

    assert built_by(cluster, request) == [0, 1, 2, 3]
    assert all(verdict(cluster, node, request) == "certified" for node in range(4))


def test_every_member_builds_a_repository_without_the_setting():
    cluster = Cluster(document={**F_PLUS_1, "repositories": [{"name": "example"}]})
    request = submit(cluster)
    cluster.send_results()
    assert built_by(cluster, request) == [0, 1, 2, 3]
    assert all(reply.builders == () for reply in cluster.replies)


def test_a_picked_builder_that_tells_the_client_another_result_than_its_peers_is_outvoted_once_the_client_asks_again():
    cluster = Cluster(document=F_PLUS_1)
    request = submit(cluster)
    cluster.send_results()
    assert all(verdict(cluster, node, request) == "certified" for node in range(4))
    # Node 1's reply said something else to the client (forged here as it would be): the
    # client has one matching reply of two, and sends the request again to every node.
    cluster.replies = [reply for reply in cluster.replies if reply.sender != 1]
    for node in range(4):
        cluster.deliver_to(node, request)
    cluster.run()

    assert sorted(set(built_by(cluster, request))) == [0, 1, 2, 3]  # 0 and 3, standing by, built it after all


def test_a_client_resending_a_build_that_runs_long_makes_nobody_standing_by_build_it():
    cluster = Cluster(document=F_PLUS_1)
    cluster.slow.update({1, 2})  # the picked builders still build
    request = submit(cluster)
    for node in range(4):  # client_retransmit_s passed: the client sends it to every node
        cluster.deliver_to(node, request)
    cluster.run()
    cluster.send_results()
    assert all(request.key in cluster.replicas[node].verdicts.standby for node in (0, 3))
    assert built_by(cluster, request) == []  # 0 and 3 started no build; 1 and 2 are still at it


def test_a_reply_names_its_picked_builders_on_the_wire_and_a_reply_of_all_builders_keeps_its_old_form():
    cluster = Cluster()
    picked = signed(Reply(0, 1, CLIENT, 1, Result("success", 0, COMMIT), builders=(1, 2)), cluster.replicas[1].auth.sign)
    assert encode(picked)["builders"] == [1, 2]  # a list, as it is read, also without a JSON round trip
    assert decode(encode(picked)) == picked
    assert "builders" not in encode(dataclasses.replace(picked, builders=()))


def test_a_cancel_answers_a_build_stood_by_for_as_cancelled_and_it_is_never_built_there():
    cluster = Cluster(document=F_PLUS_1)
    cluster.slow.update({1, 2})  # the picked builders still run it when the cancel comes
    request = submit(cluster)
    assert all(request.key in cluster.replicas[node].verdicts.standby for node in (0, 3))
    cluster.deliver_to(0, cluster.cancel(request))
    cluster.run()
    for node in (0, 3):
        assert request.key not in cluster.replicas[node].verdicts.standby
        assert verdict(cluster, node, request) == "cancelled"
    cluster.deliver_to(3, request)  # its client asking again builds nothing now
    cluster.run()
    answered = {reply.sender: reply.result.status for reply in cluster.replies if reply.timestamp == request.timestamp}
    assert answered == {0: "cancelled", 3: "cancelled"}


def test_a_restart_keeps_who_the_order_picked_so_the_verdict_is_counted_and_stood_by_as_before(tmp_path):
    cluster = Cluster(document=F_PLUS_1, store_dir=tmp_path)
    cluster.slow.add(2)  # node 2's build ends after the restarts
    request = submit(cluster)
    cluster.send_results(now=1.0)  # node 1's result only
    for node in (1, 3):  # a picked builder that built it, and a member standing by
        cluster.crashed.add(node)
        cluster.restart(node, now=2.0)
    assert cluster.replicas[1].verdicts.result_votes.chosen[request.key] == (1, 2)
    assert request.key in cluster.replicas[3].verdicts.standby
    cluster.running[2] = []
    cluster.interpreter(2).step(cluster.replicas[2].execution_finished, request, cluster.build(request.operation), 2)
    cluster._end_turn(2)
    cluster.send_results(now=3.0)

    assert built_by(cluster, request) == [1, 2]  # the two picked builders agreed: nobody else built it
    assert all(verdict(cluster, node, request) == "certified" for node in range(4))


def test_a_build_stood_by_for_that_its_early_votes_start_is_stored_as_started_and_runs_again_after_a_restart(tmp_path):
    # Node 3 lags; the picked builders' results, which differ, reach it before it executes the
    # request. Executing it, it builds it at once: the store must record the build as started
    # here, so that a restart runs it again as unfinished rather than standing by anew.
    cluster = Cluster(document=F_PLUS_1, store_dir=tmp_path)
    cluster.crashed.add(3)
    request = submit(cluster)
    cluster.crashed.discard(3)
    cluster.slow.add(3)
    for sender, commit in ((1, COMMIT), (2, "f" * 40)):
        vote = ResultVote(1, request.client, request.timestamp, Result("success", 0, commit), sender)
        assert cluster.deliver_to(3, signed(vote, cluster.replicas[sender].auth.sign)) is None
    cluster.deliver_to(0, cluster.request())  # seq 2: node 3 sees the others ahead of it
    cluster.run()
    cluster.tick(10.0)  # it asks its peers, and executes seq 1 from their commit certificates
    cluster.run()
    assert cluster.executed_seqs(3) == [1, 2] and request.key not in cluster.replicas[3].verdicts.standby
    loaded = cluster.stores[3].load()
    assert request.key in [started.key for _, started in loaded.unfinished]
    cluster.crashed.add(3)
    cluster.restart(3, now=20.0)
    assert request.key in [started.key for _, started in cluster.running[3]]
    assert request.key not in cluster.replicas[3].verdicts.standby


def test_a_picked_builder_that_signs_two_results_leaves_no_honest_ledger_open():
    # Issue 55, failure 3: picked builders 1 and 2; node 2 signs the true result to nodes 0
    # and 1 and another to node 3. Nodes 0 and 1 certify at once; node 3 builds, and its
    # peers serve it node 2's other vote when it asks: two signed results of one node for
    # one build prove that node faulty, and the picked builders left agree.
    cluster = Cluster(document=F_PLUS_1)
    cluster.slow.add(2)
    request = submit(cluster)
    cluster.send_results(now=1.0)  # node 1's result
    honest = cluster.build(request.operation)
    other = Result("failure", 1, honest.commit, "step test failed")
    cluster.running[2] = []
    cluster.interpreter(2).step(cluster.replicas[2].execution_finished, request, honest, 1)
    cluster._end_turn(2)

    lied = []

    def node_2_equivocates(node: int, message) -> bool:
        """Node 2's own vote reaches node 3 as the other result (the later copies are its
        peers' answers to node 3's asks: those carry the vote node 2 signed for them)."""
        votes = message.votes if isinstance(message, Relay) else (message,)
        if node != 3 or lied or not any(isinstance(v, ResultVote) and v.sender == 2 for v in votes):
            return True
        lied.append(signed(dataclasses.replace(votes[0], result=other), cluster.replicas[2].auth.sign))
        swapped = tuple(lied[0] if isinstance(v, ResultVote) and v.sender == 2 else v for v in votes)
        assert cluster.deliver_to(3, Relay(swapped) if isinstance(message, Relay) else swapped[0]) is None
        return False

    for now in (2.0, 3.0):
        cluster.tick(now)
        cluster.run(keep=node_2_equivocates)
    assert verdict(cluster, 0, request) == "certified" and verdict(cluster, 1, request) == "certified"
    assert 3 in built_by(cluster, request)  # the picked builders' results differed there
    for now in range(4, 700, 2):  # node 3 asks its peers for votes, with its backoff
        cluster.tick(float(now))
        cluster.run(keep=node_2_equivocates)

    for node in (0, 1, 3):
        assert verdict(cluster, node, request) == "certified", node
        assert cluster.replicas[node].verdicts.result_votes.certified[request.key] == hash(honest.agreed_key())
