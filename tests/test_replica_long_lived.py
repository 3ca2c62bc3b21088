"""Failure modes of long-lived networks: lagging nodes, idle gaps, restarts (OSDI'99 §4.3-§4.5, §5.3)."""

from tests.cluster import Cluster

T = 4.0  # ReplicaSettings.view_change_timeout_s
K4 = {"checkpoint_interval": 4, "log_window": 8, "pipeline_depth": 8, "batch_max": 1}


def submit(cluster, count, keep=lambda node, message: True, branch="master"):
    requests = []
    for _ in range(count):
        request = cluster.request(branch)
        requests.append(request)
        cluster.deliver_to(cluster.replicas[0].primary(), request)
        cluster.run(keep)
    return requests


def test_a_lagging_node_that_becomes_primary_catches_up_and_issues_above_the_checkpoint():
    """§4.4: the new primary issues from min-s, the view's stable checkpoint; one that lags
    behind that checkpoint learns it from the view-change proofs and fetches first."""
    cluster = Cluster(settings=K4)
    submit(cluster, 4, keep=lambda node, message: node != 1)  # node 1 misses seqs 1-4 and checkpoint 4
    assert cluster.replicas[0].low_watermark == 4 and cluster.replicas[1].last_executed == 0
    cluster.crashed.add(0)
    request = cluster.request("feature")
    for node in (1, 2, 3):
        cluster.deliver_to(node, request)
    cluster.run()
    now = 0.0
    for _ in range(12):  # a few view-change periods, fetch intervals included
        now += 1.0
        cluster.tick(now)
        cluster.run()
    for node in (1, 2, 3):
        replica = cluster.replicas[node]
        assert (replica.view, replica.changing_view) == (1, False), node
        assert replica.last_executed == 5, node
        assert cluster.ledger(node) == cluster.ledger(2)
        assert cluster.builds(node)[-1:] == [request]
    # Node 1 learnt seqs 1-4 by state transfer and built none of them.
    assert [len(effect.requests) for effect in cluster.executed[1]] == [0, 0, 0, 0, 1]


def test_idle_gaps_cause_no_fetch_and_every_node_builds_every_request():
    """§5.3.2: state transfer is for nodes that are behind; a node that is merely a
    message or two slower than its peers after an idle night is not."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1})
    sent = []
    now = 0.0

    def keep(node, message):
        sent.append(message.TYPE)
        cluster.tick(now)  # a tick can land between any two deliveries
        return True

    requests = []
    for gap in range(1, 8):
        now = gap * 60.0  # a minute of silence before each request
        requests += submit(cluster, 1, keep=keep)
    assert "fetch" not in sent
    for node in range(4):
        assert cluster.builds(node) == requests, node
