"""Messages a replica must refuse (OSDI'99 §4.2 acceptance rules), each with its reason."""

from dataclasses import replace

from pbft.build import Operation
from pbft.checkpoints import Checkpoints
from pbft.clients import ClientTable
from pbft.messages import (
    MAX_BATCH_BYTES, MAX_REQUEST_BYTES, Checkpoint, Commit, PrePrepare, Prepare, Request, batch_bytes, batch_digest, signed,
)
from tests.support.cluster import Cluster, authenticator, keys


def preprepare_for(cluster, request, *, view=0, seq=1, sender=0, digest=None):
    batch = (request,)
    message = PrePrepare(view, seq, digest or batch_digest(batch), sender, batch)
    return signed(message, cluster.replicas[sender].auth.sign)


def test_a_preprepare_with_a_bad_signature_is_refused():
    cluster = Cluster()
    message = preprepare_for(cluster, cluster.request())
    tampered = replace(message, sig=("0" if message.sig[0] != "0" else "1") + message.sig[1:])
    assert cluster.deliver_to(1, tampered) == "ignore_preprepare_bad_signature"
    assert cluster.replicas[1].slots == {}
    assert list(cluster.network) == []


def test_a_preprepare_from_a_backup_is_refused():
    cluster = Cluster()
    message = preprepare_for(cluster, cluster.request(), sender=2)
    assert cluster.deliver_to(1, message) == "ignore_preprepare_not_from_primary"


def test_a_forged_sender_is_refused():
    cluster = Cluster()
    good = preprepare_for(cluster, cluster.request())
    cluster.deliver_to(1, good)
    # Node 3 signs a prepare that claims to come from node 2.
    forged = signed(Prepare(0, 1, good.digest, 2), cluster.replicas[3].auth.sign)
    assert cluster.deliver_to(1, forged) == "ignore_prepare_bad_signature"
    assert 2 not in cluster.replicas[1].slots[1].prepares
    forged_commit = signed(Commit(0, 1, good.digest, 2), cluster.replicas[3].auth.sign)
    assert cluster.deliver_to(1, forged_commit) == "ignore_commit_bad_signature"


def test_a_vote_from_an_unknown_node_is_refused():
    cluster = Cluster()
    vote = signed(Prepare(0, 1, "a" * 64, 7), cluster.replicas[3].auth.sign)
    assert cluster.deliver_to(1, vote) == "ignore_prepare_unknown_sender"


def test_a_preprepare_whose_digest_is_not_its_batch_is_refused():
    cluster = Cluster()
    message = preprepare_for(cluster, cluster.request("master"), digest="f" * 64)
    assert cluster.deliver_to(1, message) == "ignore_preprepare_wrong_digest"
    assert cluster.replicas[1].slots == {}


def test_a_request_signed_by_nobody_we_know_is_refused():
    cluster = Cluster()
    _, client_key = keys(4)
    stranger = authenticator(cluster.node_keys, client_key, cluster.node_keys[3])  # signs with a node key
    forged = signed(Request("client", 1, Operation("example", "master")), stranger.sign)
    assert cluster.deliver_to(0, forged) == "ignore_request_bad_signature"
    assert cluster.deliver_to(1, preprepare_for(cluster, forged)) == "ignore_preprepare_bad_request_signature"
    unknown = replace(cluster.request(), client="mallory")
    assert cluster.deliver_to(0, unknown) == "ignore_request_bad_signature"


def test_a_conflicting_preprepare_for_the_same_view_and_sequence_is_refused():
    cluster = Cluster()
    first = preprepare_for(cluster, cluster.request("master"))
    second = preprepare_for(cluster, cluster.request("feature"))
    assert cluster.deliver_to(1, first) is None
    assert cluster.deliver_to(1, second) == "ignore_preprepare_conflicting_digest"
    assert cluster.replicas[1].slots[1].preprepare == first


def test_sequence_numbers_outside_the_watermarks_are_refused_or_kept_for_the_next_window():
    cluster = Cluster(settings={"log_window": 4, "checkpoint_interval": 2})
    request = cluster.request()
    assert cluster.deliver_to(1, preprepare_for(cluster, request, seq=0)) == "ignore_preprepare_out_of_window"
    vote = signed(Prepare(0, 9, "a" * 64, 2), cluster.replicas[2].auth.sign)
    assert cluster.deliver_to(1, vote) == "ignore_prepare_out_of_window"  # beyond H + L
    # Beyond H but within the next window: kept, not used, until a checkpoint moves the window.
    above = preprepare_for(cluster, request, seq=5)
    assert cluster.deliver_to(1, above) is None
    replica = cluster.replicas[1]
    assert 5 not in replica.slots and replica.buffered(replica.admission.future) == [above]
    assert cluster.deliver_to(1, preprepare_for(cluster, request, seq=4)) is None


def test_a_prepare_from_the_primary_is_refused():
    cluster = Cluster()
    vote = signed(Prepare(0, 1, "a" * 64, 0), cluster.replicas[0].auth.sign)
    assert cluster.deliver_to(1, vote) == "ignore_prepare_from_primary"


def test_a_sender_cannot_change_its_vote():
    cluster = Cluster()
    first = signed(Prepare(0, 1, "a" * 64, 2), cluster.replicas[2].auth.sign)
    second = signed(Prepare(0, 1, "b" * 64, 2), cluster.replicas[2].auth.sign)
    assert cluster.deliver_to(1, first) is None
    assert cluster.deliver_to(1, second) == "ignore_prepare_sender_changed_digest"
    assert cluster.replicas[1].slots[1].prepares == {2: first}


def test_messages_of_a_future_view_are_buffered_not_applied():
    # 16 per sender at n = 4: a share of max_buffered, and a window's PREPAREs and COMMITs.
    cluster = Cluster(settings={"max_buffered": 64, "checkpoint_interval": 4, "log_window": 8})
    node1 = cluster.replicas[1]
    other = signed(Prepare(1, 1, "a" * 64, 3), cluster.replicas[3].auth.sign)
    assert cluster.deliver_to(1, other) is None
    # Node 0 is the primary of view 0 but a backup in view 1: its votes for view 1 are valid and
    # buffered, up to one window beyond H.
    flood = [signed(kind(1, seq, "a" * 64, 0), cluster.replicas[0].auth.sign)
             for kind in (Prepare, Commit) for seq in range(1, 17)] * 2
    for vote in flood:
        assert cluster.deliver_to(1, vote) is None
    assert node1.slots == {}
    # Bounded per sender: node 0's oldest made room for its newest, and node 3's stayed.
    assert node1.buffered(node1.admission.future) == flood[-16:] + [other]


def test_a_replayed_request_is_built_once_and_answered_from_the_stored_reply():
    cluster = Cluster()
    request = cluster.request("feature")
    cluster.deliver_to(0, request)
    cluster.run()
    replies_before = len(cluster.replies)
    for node in range(4):
        cluster.deliver_to(node, request)
    cluster.run()
    assert all(len(cluster.builds(node)) == 1 for node in range(4))
    resent = cluster.replies[replies_before:]
    assert sorted(reply.sender for reply in resent) == [0, 1, 2, 3]
    assert all(reply.result.exit_code == 3 for reply in resent)


def test_a_request_ordered_twice_by_the_primary_is_built_once():
    cluster = Cluster()
    request = cluster.request()
    for seq in (1, 2):
        message = preprepare_for(cluster, request, seq=seq)
        for node in (1, 2, 3):
            cluster.deliver_to(node, message)
    cluster.run()
    for node in (1, 2, 3):
        assert cluster.executed_seqs(node) == [1, 2]
        assert [len(effect.requests) for effect in cluster.executed[node]] == [1, 0]


def test_checkpoints_with_bad_signatures_or_off_interval_are_refused():
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4})
    forged = signed(Checkpoint(2, "a" * 64, 2), cluster.replicas[3].auth.sign)
    assert cluster.deliver_to(1, forged) == "ignore_checkpoint_bad_signature"
    # Off the interval beyond what it executed, a checkpoint may be at a change of the network
    # document it has not reached (pbft.networks): kept. Once executed past it, refused.
    odd = signed(Checkpoint(3, "a" * 64, 2), cluster.replicas[2].auth.sign)
    assert cluster.deliver_to(1, odd) is None
    assert cluster.replicas[1].checkpoints.add(odd, last_executed=3) == "not_at_interval"
    # Two matching checkpoints from others do not make a state stable that this node has not reached.
    for sender in (2, 3):
        vote = signed(Checkpoint(2, "a" * 64, sender), cluster.replicas[sender].auth.sign)
        assert cluster.deliver_to(1, vote) is None
    assert cluster.replicas[1].low_watermark == 0


def test_a_sender_holds_one_checkpoint_off_the_interval_ahead_of_what_a_node_executed():
    cluster = Cluster(settings={"checkpoint_interval": 4, "log_window": 8})
    checkpoints = cluster.replicas[1].checkpoints

    def vote(seq):
        return signed(Checkpoint(seq, "a" * 64, 2), cluster.replicas[2].auth.sign)

    for seq in (1, 2, 3, 5, 6, 7):  # a faulty sender's flood off the interval
        assert cluster.deliver_to(1, vote(seq)) is None
    # Each newer one replaced the one before: one entry, however many were sent.
    assert {seq: set(votes) for seq, votes in checkpoints.votes.items()} == {7: {2}}
    assert cluster.deliver_to(1, vote(6)) == "ignore_checkpoint_behind_its_newer_one"
    # At the interval, votes are kept beside it (the window bounds those).
    assert cluster.deliver_to(1, vote(4)) is None and cluster.deliver_to(1, vote(8)) is None
    assert sorted(checkpoints.votes) == [4, 7, 8]
    # A vote at a boundary this node executed stays when the sender's next one comes.
    checkpoints.boundary(7)
    assert cluster.deliver_to(1, vote(9)) is None
    assert sorted(checkpoints.votes) == [4, 7, 8, 9]


def test_a_restart_keeps_a_senders_latest_checkpoint_off_the_interval_not_every_one_it_stored():
    # The store keeps what was taken, also the votes a newer one replaced since: a restart
    # takes them again by the same rules.
    cluster = Cluster(settings={"checkpoint_interval": 4, "log_window": 8})
    stored = [signed(Checkpoint(seq, "a" * 64, 2), cluster.replicas[2].auth.sign) for seq in (7, 1, 2, 4, 5, 9)]
    checkpoints = Checkpoints(interval=4, log_window=8)
    checkpoints.boundary(2)  # a change executed at 2 before the stop: its checkpoint counts
    checkpoints.restore(0, (), stored, me=1, last_executed=3)
    assert sorted(checkpoints.votes) == [2, 4, 9]


def test_a_restart_knows_the_checkpoints_it_signed_off_the_interval():
    # A batch of verdicts alone is a checkpoint where it executes; only our own stored vote tells
    # a restart so. Without it the peers' votes there were refused and a later proof found us unaware.
    cluster = Cluster(settings={"checkpoint_interval": 4, "log_window": 8})

    def vote(seq, sender):
        return signed(Checkpoint(seq, "a" * 64, sender), cluster.replicas[sender].auth.sign)

    checkpoints = Checkpoints(interval=4, log_window=8)
    checkpoints.restore(4, (), [vote(6, 1), vote(6, 2), vote(3, 2), vote(7, 2)], me=1, last_executed=6)
    assert checkpoints.due(6) and not checkpoints.due(7) and not checkpoints.due(3)
    assert set(checkpoints.votes[6]) == {1, 2} and checkpoints.own[6] == vote(6, 1).vouches()
    # One of ours above what the store says we executed (a power cut took that step) proves nothing.
    ahead = Checkpoints(interval=4, log_window=8)
    ahead.restore(4, (), [vote(9, 1)], me=1, last_executed=6)
    assert not ahead.due(9)


def test_a_client_with_too_many_open_requests_is_refused_until_some_execute():
    cluster = Cluster(settings={"max_open_per_client": 2})
    cluster.crashed.add(0)  # nothing executes: every request stays open at the backup
    first, second, third = (cluster.request() for _ in range(3))
    assert cluster.deliver_to(1, first) is None and cluster.deliver_to(1, second) is None
    assert cluster.deliver_to(1, third) == "ignore_request_client_has_too_many_open"
    assert set(cluster.replicas[1].clients.waiting) == {first.key, second.key}


def _request_of(cluster, timestamp, chars, value="€"):
    """A signed request whose manual-run inputs make it about `chars` * 6 bytes (each € is \\u20ac)."""
    inputs = tuple((f"input_{i}", value * min(1024, chars - 1024 * i)) for i in range(-(-chars // 1024)))
    operation = Operation("example", "master", inputs=inputs)
    return signed(Request("client", timestamp, operation), cluster.client_auth.sign)


def test_a_request_over_the_size_a_batch_of_one_must_hold_is_refused():
    cluster = Cluster()
    large = _request_of(cluster, 1, 16 * 1024)
    assert large.size > MAX_REQUEST_BYTES
    assert cluster.deliver_to(0, large) == "ignore_request_too_large"
    assert cluster.deliver_to(1, preprepare_for(cluster, large)) == "ignore_preprepare_request_too_large"
    assert cluster.replicas[1].slots == {}
    fits = _request_of(cluster, 2, MAX_REQUEST_BYTES // 6 - 200)
    assert MAX_REQUEST_BYTES - 2000 < fits.size <= MAX_REQUEST_BYTES
    assert cluster.deliver_to(1, preprepare_for(cluster, fits)) is None


def test_a_preprepare_a_primary_padded_is_refused():
    # A faulty primary's padding, which every VIEW-CHANGE of the window would then carry.
    cluster = Cluster()
    request = cluster.request()
    batch = (request, cluster.request("feature"), request)
    twice = signed(PrePrepare(0, 1, batch_digest(batch), 0, batch), cluster.replicas[0].auth.sign)
    assert cluster.deliver_to(1, twice) == "ignore_preprepare_request_twice"
    halves = tuple(_request_of(cluster, timestamp, MAX_BATCH_BYTES // 12 + 100) for timestamp in (10, 11))
    assert all(request.size <= MAX_REQUEST_BYTES for request in halves) and batch_bytes(halves) > MAX_BATCH_BYTES
    large = signed(PrePrepare(0, 1, batch_digest(halves), 0, halves), cluster.replicas[0].auth.sign)
    assert cluster.deliver_to(1, large) == "ignore_preprepare_batch_too_large"
    assert cluster.replicas[1].slots == {}


def test_a_primary_stops_a_batch_at_its_byte_bound_and_a_request_waits_for_room():
    table = ClientTable(expiry_us=10**9)
    cluster = Cluster()
    third = MAX_BATCH_BYTES // 3 // 6
    requests = [_request_of(cluster, timestamp, third) for timestamp in (1, 2, 3)]
    for request in requests:
        assert table.wait(request) and table.queue(request)
    first = table.next_batch(64, MAX_BATCH_BYTES)
    assert first == tuple(requests[:2]) and batch_bytes(first) <= MAX_BATCH_BYTES
    assert table.next_batch(64, requests[2].size - 1) == (), "it waits for room in the window"
    assert table.next_batch(64, requests[2].size) == (requests[2],)


def test_a_backup_takes_batches_above_what_it_executed_up_to_its_window_bytes():
    # A faulty primary that leaves seq 1 out and fills 2, 3, ... keeps them all from executing:
    # each VIEW-CHANGE would carry them. The backup takes them up to `window_bytes`.
    cluster = Cluster(settings={"window_bytes": MAX_BATCH_BYTES})
    requests = [_request_of(cluster, timestamp, MAX_BATCH_BYTES // 6 // 3) for timestamp in range(1, 5)]
    taken = [cluster.deliver_to(1, preprepare_for(cluster, request, seq=seq)) for seq, request in enumerate(requests, 2)]
    assert taken == [None, None, "ignore_preprepare_window_bytes", "ignore_preprepare_window_bytes"]
    assert sorted(cluster.replicas[1].slots) == [2, 3]
    assert 0 <= cluster.replicas[1].log.room(0, MAX_BATCH_BYTES) < MAX_BATCH_BYTES // 3


def test_a_primary_assigns_into_the_room_its_window_bytes_leave_and_the_rest_waits():
    cluster = Cluster(settings={"window_bytes": MAX_BATCH_BYTES, "pipeline_depth": 8, "batch_max": 1})
    requests = [_request_of(cluster, timestamp, MAX_BATCH_BYTES // 6 // 3) for timestamp in range(1, 5)]
    for request in requests:
        cluster.deliver_to(0, request)
    primary = cluster.replicas[0]
    assert sorted(primary.slots) == [1, 2], "two fit the room, two wait"
    assert len(primary.clients.pending) == 2
    cluster.run()  # the two commit and execute: room again, for the rest
    assert [execute.seq for execute in cluster.executed[0]] == [1, 2, 3, 4]
