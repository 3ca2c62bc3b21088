"""One build per delivery, decided by the order (pbft.deliveries): the first request that
names a (repository, delivery) builds, the others are answered `skipped` on every node,
whichever node executed, restarted or forgot what."""

from pbft.build import Operation
from pbft.deliveries import duplicate_result
from pbft.messages import Request, signed
from tests.support.cluster import CLIENT, Cluster

DELIVERY = "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"


def delivered(cluster: Cluster, delivery: str | None = DELIVERY, branch: str = "master") -> Request:
    """A request for `delivery`, executed by every node, its builds finished."""
    cluster._timestamp += 1
    operation = Operation("example", branch, delivery=delivery)
    request = signed(Request(CLIENT, cluster._timestamp, operation), cluster.client_auth.sign)
    cluster.deliver_to(0, request)
    cluster.run()
    return request


def answers(cluster: Cluster, request: Request) -> dict[int, str]:
    return {reply.sender: reply.result.status for reply in cluster.replies if reply.timestamp == request.timestamp}


def built(cluster: Cluster, request: Request) -> set[int]:
    return {node for node in range(cluster.n) if request in cluster.builds(node)}


def test_the_first_request_of_a_delivery_builds_and_another_is_answered_skipped_without_a_build():
    cluster = Cluster()
    first = delivered(cluster)
    again = delivered(cluster)
    assert built(cluster, first) == {0, 1, 2, 3}
    assert answers(cluster, first) == {node: "success" for node in range(4)}
    assert built(cluster, again) == set()
    assert answers(cluster, again) == {node: "skipped" for node in range(4)}
    reasons = {reply.result.reason for reply in cluster.replies if reply.timestamp == again.timestamp}
    assert reasons == {duplicate_result(DELIVERY).reason}


def test_a_delivery_is_one_per_repository_and_requests_without_one_all_build():
    cluster = Cluster()
    first = delivered(cluster)
    other_repository = signed(Request(CLIENT, 50, Operation("other", "master", delivery=DELIVERY)),
                              cluster.client_auth.sign)
    cluster._timestamp = 50
    cluster.deliver_to(0, other_repository)
    cluster.run()
    plain = [delivered(cluster, delivery=None) for _ in range(2)]
    for request in (first, other_repository, *plain):
        assert built(cluster, request) == {0, 1, 2, 3}


def test_two_requests_of_one_delivery_sent_together_build_the_one_the_order_put_first():
    cluster = Cluster()
    requests = [
        signed(Request(CLIENT, timestamp, Operation("example", "master", delivery=DELIVERY)), cluster.client_auth.sign)
        for timestamp in (8, 7)
    ]
    for request in requests:
        cluster.deliver_to(0, request)
    cluster.run()
    for node in range(4):
        ordered = [request for effect in cluster.executed[node] for request in effect.batch]
        assert sorted(ordered, key=lambda request: request.timestamp) == requests[::-1]
        assert cluster.builds(node) == ordered[:1]
    assert answers(cluster, ordered[1]) == {node: "skipped" for node in range(4)}


def test_a_restarted_node_decides_the_next_delivery_as_the_others_even_when_the_first_was_forgotten(tmp_path):
    kept = 4
    cluster = Cluster(store_dir=tmp_path, settings={"max_requests_per_client": kept, "checkpoint_interval": 2})
    first = delivered(cluster)
    delivered(cluster, delivery="other")
    duplicate = delivered(cluster)
    for index in range(kept - 1):  # the checkpoint after them keeps the newest `kept`
        delivered(cluster, delivery=f"other-{index}")
    for replica in cluster.replicas:
        # The client table forgot the first request, not its duplicate: the delivery is still taken.
        assert first.key not in replica.clients.executed and duplicate.key in replica.clients.executed
    cluster.crashed.add(1)
    cluster.restart(1)
    again = delivered(cluster)
    assert answers(cluster, again) == {node: "skipped" for node in range(4)}
    assert built(cluster, again) == set()


def test_a_delivery_every_request_of_which_was_forgotten_builds_again_on_every_node_and_the_table_stays_bounded(
    tmp_path,
):
    kept = 4
    cluster = Cluster(store_dir=tmp_path, settings={"max_requests_per_client": kept, "checkpoint_interval": 2})
    delivered(cluster)
    for index in range(2 * kept):
        delivered(cluster, delivery=f"other-{index}")
    for replica in cluster.replicas:
        assert len(replica.answers.deliveries) <= kept + 2  # what the table remembers, and one checkpoint's worth
    cluster.crashed.add(2)
    cluster.restart(2)
    again = delivered(cluster)
    assert built(cluster, again) == {0, 1, 2, 3}
    assert answers(cluster, again) == {node: "success" for node in range(4)}
