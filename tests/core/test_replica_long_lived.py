"""Failure modes of long-lived networks: lagging nodes, idle gaps, restarts (OSDI'99 §4.3-§4.5, §5.3)."""

from pbft.build import Result
from pbft.messages import Checkpoint, Commit, Fetch, ResultVote, ViewChange, batch_bytes, signed
from tests.support.cluster import CLIENT, Cluster

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
        assert [effect.seq for effect in cluster.executed[node] if request in effect.batch] == [5], node
        assert not any(effect.batch for effect in cluster.executed[node][5:])  # then verdicts for the log alone
        assert cluster.ledger(node) == cluster.ledger(2)
        assert cluster.builds(node)[-1:] == [request]
    # Node 1 learnt seqs 1-4 by state transfer and built none of them.
    assert [len(effect.requests) for effect in cluster.executed[1]][:5] == [0, 0, 0, 0, 1]


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
    or learnt by state transfer: a retransmission after a restart orders nothing again.
    A learnt request its client still asks about is built here once, after all (its
    client lacks matching replies), and answered from the store after that."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1}, store_dir=tmp_path)
    cluster.crashed.add(3)
    requests = submit(cluster, 6)
    cluster.crashed.discard(3)
    latest = submit(cluster, 1)
    cluster.tick(10.0)
    cluster.run()
    # Seqs 1-6 came with the stable checkpoint's proof; seq 7 with a commit certificate.
    assert cluster.replicas[3].last_executed == 7 and cluster.builds(3) == latest
    before = dict(cluster.replicas[3].clients.executed)
    cluster.crashed.add(3)
    cluster.restart(3, now=20.0)
    restored = cluster.replicas[3]
    assert restored.clients.executed.keys() == before.keys()
    assert all(request.key in restored.clients.executed for request in requests)
    cluster.network.clear()
    replies_before = len(cluster.replies)
    for request in requests:  # the client lost its replies and sends to every node, twice
        assert cluster.deliver_to(3, request) is None
        assert cluster.deliver_to(3, request) is None
    assert cluster.builds(3) == latest  # nothing executed again
    assert [reply.timestamp for reply in cluster.replies[replies_before:]] == [
        request.timestamp for request in requests for _ in range(2)]  # built once, then resent
    assert restored.views.timer_deadline is None and not restored.clients.waiting
    assert not [m for _, m in cluster.network if m.TYPE in ("view-change", "request")]


def test_requests_that_never_execute_are_forgotten_with_their_client_floor():
    """A request a client sent to a backup that never got ordered (the client gave up)
    does not stay in memory for ever: it goes when its timestamp falls below the floor."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1, "request_expiry_s": 1.0})
    stray = cluster.request(timestamp=1_000)
    cluster.replicas[2].receive(stray)
    cluster.replicas[2].take_effects()  # forwarded to the primary, but that message is lost
    assert stray.key in cluster.replicas[2].clients.waiting
    for step in range(1, 5):
        cluster.deliver_to(0, cluster.request(timestamp=1_000 + step * 2_000_000))
        cluster.run()
    assert stray.key not in cluster.replicas[2].clients.waiting
    assert stray.key not in cluster.replicas[2].clients.forwarded


def test_a_build_forgotten_while_it_waits_for_a_slot_is_answered_when_it_ends_and_again_when_resent(tmp_path):
    """A client whose builds queue for minutes may have max_requests_per_client newer ones
    executed at a checkpoint: its floor rises past a build that has not ended yet on a slow
    node. When that build ends the node still replies (its client may wait for it, needing
    one more matching reply), stores that reply, and sends it again to a retransmission,
    though the request stays forgotten and is never built again."""
    kept = 2
    cluster = Cluster(store_dir=tmp_path, settings={"max_requests_per_client": kept, "checkpoint_interval": 2,
                                                    "log_window": 4, "batch_max": 1})
    cluster.slow.add(3)  # node 3's builds queue until finish_builds
    first, *later = submit(cluster, 1 + 2 * kept)
    slow = cluster.replicas[3]
    assert slow.clients.expired(first.key) and first.key not in slow.clients.executed
    assert 3 not in {reply.sender for reply in cluster.replies if reply.timestamp == first.timestamp}

    cluster.finish_builds(3)
    late = [reply for reply in cluster.replies if reply.timestamp == first.timestamp and reply.sender == 3]
    assert [reply.result.status for reply in late] == ["success"]
    assert cluster.stores[3].reply(CLIENT, first.timestamp) == late[0]
    assert first.key not in slow.clients.executed, "the table does not grow back"

    cluster.replies.clear()
    assert cluster.deliver_to(3, first) == "ignore_request_expired"
    assert [(reply.sender, reply.result.status) for reply in cluster.replies] == [(3, "success")]
    assert first not in cluster.running.get(3, []) and cluster.builds(3).count(first) == 1


def test_a_cancel_of_a_build_forgotten_while_it_waits_for_a_slot_stops_it_and_it_is_answered_cancelled():
    """The cancel executes after its target was forgotten on every node (its client had newer
    ones executed at a checkpoint), while the target still waits on node 3: node 3 is told to
    stop it, and the build, ending as it finishes, is answered `cancelled`, as its cancel is
    still remembered."""
    kept = 2
    cluster = Cluster(settings={"max_requests_per_client": kept, "checkpoint_interval": 2, "log_window": 4,
                                "batch_max": 1})
    cluster.slow.add(3)
    first, *later = submit(cluster, 1 + 2 * kept)
    assert all(replica.clients.expired(first.key) for replica in cluster.replicas)
    cancel = cluster.cancel(first)
    cluster.deliver_to(0, cancel)
    cluster.run()
    assert first.key in cluster.stopped[3]
    cluster.finish_builds(3)  # the stop lands: the build ends, its result replaced
    late = [reply for reply in cluster.replies if reply.timestamp == first.timestamp and reply.sender == 3]
    assert [reply.result.status for reply in late] == ["cancelled"]


def test_view_changes_are_kept_one_per_sender_whatever_views_a_faulty_node_invents():
    """§4.4 needs only each node's latest VIEW-CHANGE; keeping one per view it names
    would let one faulty node grow every honest node's memory without bound."""
    cluster = Cluster()
    liar = cluster.replicas[3]
    target = cluster.replicas[1]
    for view in range(1, 2_001):
        spam = signed(ViewChange(view, 0, (), (), 3), liar.auth.sign)
        target.receive(spam)
    assert len(target.views.latest.by_sender) <= cluster.n
    assert (target.view, target.changing_view) == (0, False)  # one node alone moves nobody
    target.take_effects()
    honest = signed(ViewChange(1, 0, (), (), 2), cluster.replicas[2].auth.sign)
    assert target.receive(honest) is None  # f+1 = 2 senders beyond view 0: join the smallest (view 1)
    assert (target.view, target.changing_view) == (1, True)


def test_one_commit_with_an_absurd_sequence_number_starts_no_catch_up():
    cluster = Cluster()
    idle = cluster.replicas[1]
    absurd = signed(Commit(0, 10**12, "d" * 64, 3), cluster.replicas[3].auth.sign)
    idle.receive(absurd)
    idle.take_effects()
    for second in range(1, 120):
        idle.tick(float(second))
    assert [effect for effect in idle.take_effects() if isinstance(effect.message, Fetch)] == []


def test_a_flood_of_result_votes_from_one_node_cannot_evict_another_nodes_early_vote():
    cluster = Cluster(settings={"max_buffered": 64, "checkpoint_interval": 4, "log_window": 8})  # 16 per sender
    request = cluster.request()
    result = Result("success", 0, "a" * 40)
    early = signed(ResultVote(1, CLIENT, request.timestamp, result, 2), cluster.replicas[2].auth.sign)
    node1 = cluster.replicas[1]
    assert node1.receive(early) is None
    for timestamp in range(10_000, 10_500):  # builds nobody ordered
        node1.receive(signed(ResultVote(1, CLIENT, timestamp, result, 3), cluster.replicas[3].auth.sign))
    assert sum(len(votes) for votes in node1.verdicts.early_votes.values()) <= 64
    cluster.deliver_to(0, request)
    cluster.run()
    assert early in cluster.stored[1]


def test_a_backup_that_missed_the_new_view_is_sent_it_when_it_repeats_its_view_change():
    cluster = Cluster()
    cluster.crashed.add(0)
    request = cluster.request()
    for node in (1, 2, 3):
        cluster.deliver_to(node, request)
    cluster.run()
    cluster.tick(T)
    cluster.run(lambda node, message: not (node == 3 and message.TYPE == "new-view"))
    late = cluster.replicas[3]
    assert late.changing_view and late.view == 1
    assert (cluster.replicas[1].view, cluster.replicas[1].changing_view) == (1, False)
    cluster.tick(2 * T)  # node 3 says its VIEW-CHANGE again; the new primary answers with NEW-VIEW
    cluster.run()
    assert (late.view, late.changing_view) == (1, False)
    assert cluster.builds(3) == [request]


def rejoin_after_a_gap(settings):
    """Node 3 misses 40 requests (batches of one, a checkpoint every two) and rejoins at
    seq 41: the cluster, the requests it missed, the one it builds, the STATEs it got."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1, **settings})
    cluster.crashed.add(3)
    missed = submit(cluster, 40)
    cluster.crashed.discard(3)
    latest = submit(cluster, 1)  # seq 41, above the last stable checkpoint (40)
    chunks = []

    def keep(node, message):
        if node == 3 and message.TYPE == "state":
            chunks.append(message)
        return True

    cluster.tick(10.0)
    cluster.run(keep)
    replica = cluster.replicas[3]
    assert replica.last_executed == 41 and replica.state_digest == cluster.replicas[0].state_digest
    assert cluster.ledger(3) == cluster.ledger(0)
    return cluster, missed, latest, chunks


def test_a_long_gap_is_transferred_in_chunks_each_proven_by_a_kept_checkpoint():
    """§5.3.2: a gap longer than one answer may carry comes in chunks, each ending at a
    stable checkpoint whose 2f+1 proof the sender kept, so each is checked on its own."""
    cluster, requests, latest, chunks = rejoin_after_a_gap({"transfer_chunk": 4})
    assert max(len(chunk.entries) for chunk in chunks) <= 4
    assert sum(len(chunk.entries) for chunk in chunks if chunk.sender == chunks[-1].sender) >= 40
    # Nothing below the checkpoints is built again; what it was sent certificates for, it builds.
    assert cluster.builds(3) == latest
    assert all(request.key in cluster.replicas[3].clients.executed for request in requests)


def test_a_long_gap_comes_in_chunks_of_bounded_bytes_however_many_batches_one_may_hold():
    """The asker checks a whole answer in one step of its loop: answers end at the furthest kept
    checkpoint within `transfer_bytes`, not only within `transfer_chunk` batches."""
    chunks = rejoin_after_a_gap({"transfer_chunk": 256, "transfer_bytes": 5_000})[3]
    weights = [sum(batch_bytes(entry.batch, entry.verdicts) for entry in chunk.entries) for chunk in chunks]
    assert len([weight for weight in weights if weight]) >= 4 and max(weights) <= 5_000, weights


def test_a_node_killed_during_a_build_ends_with_the_certified_verdict_of_its_peers(tmp_path):
    """Votes that reached a node while it was down are lost to it; it asks its peers for
    them, and every honest node's ledger ends with the same certified verdict."""
    cluster = Cluster(store_dir=tmp_path)
    cluster.slow.add(3)
    request = submit(cluster, 1, keep=lambda node, message: not (node == 3 and message.TYPE == "result"))[0]
    assert cluster.replicas[3].clients.executed == {request.key: None}  # ordered, still building
    cluster.crashed.add(3)  # kill -9 in the middle of the build
    cluster.slow.discard(3)
    cluster.restart(3, now=30.0)  # the build runs again and node 3 votes; nobody else's vote is here
    cluster.run()
    assert cluster.stores[3].build_records(1)[0]["verdict"]["state"] == "pending"
    cluster.tick(30.0 + cluster.replicas[3].settings.vote_retry_s)
    cluster.run()
    records = [cluster.stores[node].build_records(1)[0] for node in range(4)]
    assert {record["verdict"]["state"] for record in records} == {"certified"}
    assert all(record["verdict"] == records[0]["verdict"] for record in records)
    # Each ledger holds the 2f+1 votes that certified the verdict, its own among them; a
    # later vote that agrees is not kept (`ResultVotes.confirms`).
    for node, record in enumerate(records):
        voters = {vote["node"] for vote in record["votes"]}
        assert len(voters) >= 3 and node in voters, (node, voters)


def test_a_node_that_missed_the_last_batches_of_a_now_idle_network_learns_it_from_status():
    """§5.3: nodes say STATUS when idle; f+1 of them ahead show a node it is behind,
    although no request, commit or checkpoint will ever come again."""
    cluster = Cluster(settings={"checkpoint_interval": 100, "log_window": 200})
    submit(cluster, 2)
    submit(cluster, 2, keep=lambda node, message: node != 3)  # node 3 misses seqs 3 and 4
    assert cluster.replicas[3].last_executed == 2
    now = 0.0
    for _ in range(20):  # the network stays idle
        now += 1.0
        cluster.tick(now)
        cluster.run()
    # Seqs 3 and 4, and the batch that logged the four verdicts since (`pbft.ci.verdictlog`): a
    # checkpoint, since it carries verdicts alone, so node 3 learns 3 and 4 by state transfer.
    assert cluster.replicas[3].last_executed == cluster.replicas[0].last_executed == 5
    assert cluster.ledger(3) == cluster.ledger(0)
    assert [request.key for effect in cluster.executed[3][2:4] for request in effect.learnt] == [
        request.key for request in cluster.builds(0)[-2:]]


def test_a_lagging_node_whose_timer_fires_catches_up_instead_of_changing_view_alone():
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4})
    lagging = cluster.replicas[3]
    requests = submit(cluster, 2, keep=lambda node, message: node != 3)
    lagging.receive(requests[-1], now=0.0)  # the client retransmitted to it: its timer runs
    lagging.take_effects()
    for sender in (0, 1):  # f+1 signed checkpoints show it the others executed seq 2
        vote = signed(Checkpoint(2, cluster.replicas[sender].state_digest, sender), cluster.replicas[sender].auth.sign)
        lagging.receive(vote, now=0.0)
    lagging.tick(T + 0.1)
    sent = [effect.message.TYPE for effect in lagging.take_effects() if hasattr(effect, "message")]
    assert "view-change" not in sent and not lagging.changing_view and lagging.view == 0
    assert "fetch" in sent


def test_a_node_that_executed_up_to_a_checkpoint_but_missed_its_votes_takes_the_proof_from_a_peer():
    """§4.3: a node whose window cannot move (it lacks 2f+1 CHECKPOINTs for a seq it did
    execute) takes the stable proof a state transfer carries, then the commits above it."""
    cluster = Cluster(settings=K4)
    submit(cluster, 8, keep=lambda node, message: not (node == 3 and message.TYPE == "checkpoint"))
    stuck = cluster.replicas[3]
    assert (stuck.last_executed, stuck.low_watermark) == (8, 0) and cluster.replicas[0].low_watermark == 8
    latest = submit(cluster, 3)  # seqs 9-11: above node 3's window
    assert stuck.last_executed == 8
    now = 0.0
    for _ in range(15):
        now += 1.0
        cluster.tick(now)
        cluster.run()
    # Seqs 9-11, then the verdict log's batch, a checkpoint (`pbft.ci.verdictlog`): node 3 keeps up.
    assert (stuck.last_executed, stuck.low_watermark) == (cluster.replicas[0].last_executed, 13)
    assert stuck.low_watermark == cluster.replicas[0].low_watermark
    assert cluster.builds(3)[-3:] == latest
