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


def test_requests_learnt_by_state_transfer_stay_executed_across_a_restart(tmp_path):
    """Exactly-once (§4.1) is rebuilt from disk the same whether a batch was built here
    or learnt by state transfer: a retransmission after a restart starts nothing."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1}, store_dir=tmp_path)
    cluster.crashed.add(3)
    requests = submit(cluster, 6)
    cluster.crashed.discard(3)
    latest = submit(cluster, 1)
    cluster.tick(10.0)
    cluster.run()
    # Seqs 1-6 came with the stable checkpoint's proof; seq 7 with a commit certificate.
    assert cluster.replicas[3].last_executed == 7 and cluster.builds(3) == latest
    before = dict(cluster.replicas[3].executed)
    cluster.crashed.add(3)
    cluster.restart(3, now=20.0)
    restored = cluster.replicas[3]
    assert restored.executed.keys() == before.keys()
    assert all(request.key in restored.executed for request in requests)
    cluster.network.clear()
    for request in requests:  # the client lost its replies and sends to every node
        assert cluster.deliver_to(3, request) == "ignore_request_no_reply_yet"
    assert restored.timer_deadline is None and not restored.waiting
    assert not [m for _, m in cluster.network if m.TYPE in ("view-change", "request")]


def test_requests_that_never_execute_are_forgotten_with_their_client_floor():
    """A request a client sent to a backup that never got ordered (the client gave up)
    does not stay in memory for ever: it goes when its timestamp falls below the floor."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1, "request_expiry_s": 1.0})
    stray = cluster.request(timestamp=1_000)
    cluster.replicas[2].receive(stray)
    cluster.replicas[2].take_effects()  # forwarded to the primary, but that message is lost
    assert stray.key in cluster.replicas[2].waiting
    for step in range(1, 5):
        cluster.deliver_to(0, cluster.request(timestamp=1_000 + step * 2_000_000))
        cluster.run()
    assert stray.key not in cluster.replicas[2].waiting
    assert stray.key not in cluster.replicas[2].forwarded
