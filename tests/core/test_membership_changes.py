"""Changes of the membership through the order (`pbft.epochs`): add a node, remove one, change f.

A change that gives the network other members executes at s like any request; s is a
checkpoint, made stable by the old members; then every node enters the next epoch, in its
view 0, where only the new members' messages count and quorums are the new f's. A node
that is not a member follows the votes and signs none.
"""

import dataclasses

from pbft.build import Operation
from pbft.effects import ServeVotes
from pbft.encoding import canonical
from pbft.messages import Request, VoteFetch, signed
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from shared.crypto import Ed25519Authenticator, generate_private_key, public_key_hex, sign_bytes
from tests.support.cluster import CLIENT, Cluster, authenticator, keys

OWNER = generate_private_key()


def document(node_ids, f: int, count: int) -> dict:
    node_keys, _ = keys(count)
    return {
        "f": f,
        "nodes": [{"id": node, "public_key": public_key_hex(node_keys[node])} for node in node_ids],
        "owners": {"threshold": 1, "keys": [{"name": "ada", "public_key": public_key_hex(OWNER)}]},
    }


def change(base: dict, new: dict) -> NetworkChange:
    unsigned = NetworkChange(document_digest(base), canonical(new).decode())
    return dataclasses.replace(unsigned, signatures=(
        OwnerSignature("ada", sign_bytes(OWNER, canonical(unsigned.signed_payload()))),))


def cluster_of(count: int, first: dict) -> Cluster:
    return Cluster(n=count, document=first, settings={"changes_membership": True})


def order(cluster: Cluster, message, via: int = 0) -> None:
    cluster.deliver_to(via, message)
    cluster.run()


def executed(cluster: Cluster, request) -> set[int]:
    return {node for node in range(cluster.n) if request in cluster.builds(node)}


def test_an_added_node_is_a_member_from_the_checkpoint_of_its_change_and_its_votes_count():
    four, five = document(range(4), 1, 5), document(range(5), 1, 5)
    cluster = cluster_of(5, four)
    assert not cluster.replicas[4].member
    order(cluster, cluster.change(change(four, five)))
    for replica in cluster.replicas:
        assert (replica.epoch, replica.view, replica.last_executed, replica.low_watermark) == (1, 0, 1, 1)
        assert replica.members.ids == (0, 1, 2, 3, 4) and replica.member
    # One of five down: the four left (a quorum of five with f = 1) make one only with the
    # node that joined.
    cluster.crashed.add(3)
    request = cluster.request()
    order(cluster, request)
    assert executed(cluster, request) == {0, 1, 2, 4}
    cluster.crashed.add(2)
    stalled = cluster.request()
    order(cluster, stalled)
    assert executed(cluster, stalled) == set()


def removed(down: set[int]) -> tuple[Cluster, set[int]]:
    """Node 3 removed from five; then `down` crashed and one request: where it executed."""
    five, four = document(range(5), 1, 5), document((0, 1, 2, 4), 1, 5)
    cluster = cluster_of(5, five)
    order(cluster, cluster.change(change(five, four)))
    cluster.crashed |= down
    request = cluster.request()
    order(cluster, request)
    return cluster, executed(cluster, request)


def test_a_removed_nodes_votes_stop_counting_at_the_checkpoint_of_its_change():
    cluster, where = removed({2, 4})
    assert not cluster.replicas[3].member and all(replica.epoch == 1 for replica in cluster.replicas)
    # Counted, the removed node 3's votes would make nodes 0, 1 and 3 a quorum of four members
    # (three); of the members they are two.
    assert where == set()
    signed_by_3 = [message for message in cluster.stored[3] if getattr(message, "sender", None) == 3]
    assert signed_by_3 and all(message.seq <= 1 for message in signed_by_3)  # nothing past its removal
    _, where = removed({4})
    assert {0, 1, 2} <= where


def test_f_grows_from_one_to_two_with_three_nodes_more():
    four, seven = document(range(4), 1, 7), document(range(7), 2, 7)
    cluster = cluster_of(7, four)
    order(cluster, cluster.change(change(four, seven)))
    assert all((replica.members.n, replica.f) == (7, 2) for replica in cluster.replicas)
    cluster.crashed |= {5, 6}  # f = 2 down: 2f+1 = 5 remain
    request = cluster.request()
    order(cluster, request)
    assert executed(cluster, request) == {0, 1, 2, 3, 4}
    cluster.crashed.add(4)  # three down: no quorum of five
    stalled = cluster.request()
    order(cluster, stalled)
    assert executed(cluster, stalled) == set()


def test_a_restarted_node_replays_the_change_into_the_same_epoch():
    four, five = document(range(4), 1, 5), document(range(5), 1, 5)
    cluster = Cluster(n=5, document=four, settings={"changes_membership": True}, store_dir=None)
    order(cluster, cluster.change(change(four, five)))
    order(cluster, cluster.request())
    cluster.crashed.add(1)
    cluster.restart(1)
    restored = cluster.replicas[1]
    assert (restored.epoch, restored.members.ids, restored.f) == (1, (0, 1, 2, 3, 4), 1)
    request = cluster.request()
    cluster.crashed.add(3)
    order(cluster, request)
    assert executed(cluster, request) == {0, 1, 2, 4}


def test_a_second_change_of_the_membership_in_the_same_batch_is_refused():
    four, five = document(range(4), 1, 6), document(range(5), 1, 6)
    six = document((0, 1, 2, 3, 5), 1, 6)
    cluster = Cluster(n=6, document=four, settings={"changes_membership": True, "pipeline_depth": 1, "batch_max": 8})
    cluster.deliver_to(0, cluster.request())  # seq 1 goes out; the two changes wait for it, and batch
    first, second = cluster.change(change(four, five)), cluster.change(change(four, six))
    cluster.deliver_to(0, first)
    cluster.deliver_to(0, second)
    cluster.run()
    replies = {reply.timestamp: reply.result for reply in cluster.replies if reply.sender == 0}
    assert replies[first.timestamp].status == "success"
    assert replies[second.timestamp].reason.startswith("network change refused: the change applies to network")
    assert all(replica.members.ids == (0, 1, 2, 3, 4) for replica in cluster.replicas)


def test_without_the_setting_a_change_of_the_membership_is_refused():
    four, five = document(range(4), 1, 5), document(range(5), 1, 5)
    cluster = Cluster(n=5, document=four)
    request = cluster.change(change(four, five))
    order(cluster, request)
    assert {reply.result.reason for reply in cluster.replies if reply.timestamp == request.timestamp} == {
        "network change refused: changes nodes, which change only at a restart of every node"}


def rekeyed(holds_new_key: bool) -> tuple[Cluster, set[int]]:
    """Node 2's key replaced (its operator made the next key on its host); node 3 then down."""
    four = document(range(4), 1, 4)
    next_key = generate_private_key()
    new = {**four, "nodes": [dict(node, public_key=public_key_hex(next_key)) if node["id"] == 2 else node
                             for node in four["nodes"]]}
    cluster = cluster_of(4, four)
    if holds_new_key:
        cluster.replicas[2].auth = authenticator(cluster.node_keys, cluster.client_key, cluster.node_keys[2], (next_key,))
    order(cluster, cluster.change(change(four, new)))
    cluster.crashed.add(3)
    request = cluster.request()
    order(cluster, request)
    return cluster, executed(cluster, request)


def test_a_node_whose_key_is_replaced_signs_with_its_next_key_from_the_checkpoint_of_the_change():
    cluster, where = rekeyed(holds_new_key=True)
    assert where == {0, 1, 2}  # 2f+1 only with node 2, whose votes are checked against its new key
    _, where = rekeyed(holds_new_key=False)
    assert where == set()  # still signing with the replaced key: nothing it signs counts


def test_a_node_started_with_a_document_that_names_its_next_key_signs_with_it():
    four = document(range(4), 1, 4)
    next_key = generate_private_key()
    rekeyed_four = {**four, "nodes": [dict(node, public_key=public_key_hex(next_key)) if node["id"] == 2 else node
                                      for node in four["nodes"]]}
    cluster = Cluster(n=4, document=rekeyed_four)
    node_keys, client_key = keys(4)
    settings, network = cluster.replicas[2].settings, cluster.replicas[2].network.document
    cluster.replicas[2] = type(cluster.replicas[2])(
        settings, authenticator(node_keys, client_key, node_keys[2], (next_key,)), network)
    cluster.crashed.add(3)
    request = cluster.request()
    order(cluster, request)
    assert executed(cluster, request) == {0, 1, 2}


def test_a_removed_nodes_result_counts_for_a_build_ordered_before_its_removal():
    five, four = document(range(5), 1, 5), document((0, 1, 2, 4), 1, 5)
    cluster = cluster_of(5, five)
    cluster.slow |= {2, 3, 4}
    request = cluster.request()
    order(cluster, request)
    cluster.send_results()
    order(cluster, cluster.change(change(five, four)))
    assert not cluster.replicas[3].member and cluster.replicas[0].epoch == 2
    for node in (3, 4):
        cluster.finish_builds(node)
    cluster.send_results()
    # Ordered among five, it needs four votes: nodes 0, 1, 4 and the removed node 3.
    assert not [drop for drop in cluster.drops if drop[1].startswith("ignore_result")]
    assert cluster.replicas[0].verdicts.result_votes.decided.get(request.key) == "certified"


def test_a_removed_node_gets_the_votes_of_a_build_ordered_before_its_removal_when_it_asks():
    """Standing by, a removed node still owes its reply (sim seed 13767): it asks for the votes
    as a member of the epoch the build was ordered in, and is answered."""
    five, four = document(range(5), 1, 5), document((0, 1, 2, 4), 1, 5)
    cluster = cluster_of(5, five)
    request = cluster.request()
    order(cluster, request)
    order(cluster, cluster.change(change(five, four)))
    assert not cluster.replicas[3].member and cluster.replicas[0].epoch == 2
    fetch = signed(VoteFetch((request.key,), 3), cluster.replicas[3].auth.sign)
    assert cluster.replicas[0].receive(fetch) is None
    assert cluster.replicas[0].take_effects() == [ServeVotes(3, (request.key,))]
    # A stranger's is not, whatever it asks.
    stranger = signed(VoteFetch((request.key,), 7), Ed25519Authenticator(generate_private_key(), {}, {}).sign)
    assert cluster.replicas[0].receive(stranger) == "ignore_vote-fetch_unknown_sender"


def test_a_node_that_lost_the_checkpoints_beginning_the_epoch_begins_it_from_a_view_change_of_the_epoch():
    # Node 3 executes the change but loses every other CHECKPOINT there (simulator seed 15772:
    # a blackout), so it waits in the old epoch while 0, 1, 2 and 4 went on in the new one, and
    # no one signs that checkpoint again. A VIEW-CHANGE of the new epoch carries its proof.
    four, five = document(range(4), 1, 5), document(range(5), 1, 5)
    cluster = cluster_of(5, four)
    cluster.deliver_to(0, cluster.change(change(four, five)))
    cluster.run(keep=lambda node, message: not (node == 3 and message.TYPE == "checkpoint"))
    lagging = cluster.replicas[3]
    assert (lagging.epoch, lagging.last_executed, lagging.epochs.pending.start) == (0, 1, 1)
    assert all(cluster.replicas[node].epoch == 1 for node in (0, 1, 2, 4))
    # The new epoch's primary dies with a request waiting: the others ask for a view change.
    cluster.crashed.add(0)
    request = cluster.request()
    for node in (1, 2, 4):
        cluster.deliver_to(node, request)
    cluster.network.clear()
    cluster.tick(100.0, nodes=(1, 2, 4))
    cluster.run(keep=lambda node, message: node == 3 and message.TYPE == "view-change")
    assert (lagging.epoch, lagging.low_watermark, lagging.members.ids) == (1, 1, (0, 1, 2, 3, 4))


def test_a_removed_node_restarted_builds_nothing_the_order_answered_where_it_was_no_member(tmp_path):
    """Sim seed 1441: a duplicate of a delivery, ordered after node 3's removal, has no reply in
    node 3's store (no word of a non-member counts, so none is signed); restarted, node 3 took
    it for an unfinished build and built it."""
    five, four = document(range(5), 1, 5), document((0, 1, 2, 4), 1, 5)
    cluster = Cluster(n=5, document=five, settings={"changes_membership": True}, store_dir=tmp_path)
    order(cluster, cluster.change(change(five, four)))
    first, again = (signed(Request(CLIENT, timestamp, Operation("example", "master", delivery="github:d")),
                           cluster.client_auth.sign) for timestamp in (50, 51))
    cluster._timestamp = 51
    for request in (first, again):
        order(cluster, request)
    assert executed(cluster, first) == {0, 1, 2, 4} and executed(cluster, again) == set()
    cluster.crashed.add(3)
    cluster.slow.add(3)  # what the restarted node builds stays running, to be seen
    cluster.restart(3)
    assert cluster.running[3] == []
