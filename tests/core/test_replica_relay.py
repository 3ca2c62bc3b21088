"""Votes relayed through the primary (ReplicaSettings.relay_votes): same outcomes, fewer frames."""

from dataclasses import replace

import pytest

from pbft.messages import Commit, MessageError, Prepare, Relay, ResultVote, decode, encode
from tests.support.cluster import Cluster

RELAY = {"relay_votes": True, "relay_fallback_s": 0.5}


def frames_by_kind(cluster: Cluster, run_keep=lambda node, message: True) -> dict[int, list[str]]:
    """Run the cluster to quiet; return the kinds of message each node was handed."""
    seen: dict[int, list[str]] = {node: [] for node in range(cluster.n)}

    def keep(node, message):
        if not run_keep(node, message):
            return False
        seen[node].append(message.TYPE)
        return True

    cluster.run(keep)
    return seen


def test_a_relaying_network_orders_builds_and_certifies_verdicts_with_a_few_frames_per_backup():
    cluster = Cluster(n=7, f=2, settings=RELAY)
    request = cluster.request("master")
    cluster.deliver_to(0, request)
    seen = frames_by_kind(cluster)
    assert all(cluster.builds(node) == [request] for node in range(7))
    for backup in range(1, 7):
        # A pre-prepare, the prepares' relay, the commits' relay; its RESULT waits for the tick.
        assert seen[backup] == ["preprepare", "relay", "relay"]
    # Without relaying, a backup takes in n-1 prepares (less its own) and commits each.
    assert sorted(set(seen[0])) == ["commit", "prepare"]
    cluster.tick(0.1)  # every node sends the RESULTs it queued: a backup to the primary, the primary to all
    first = [(node, message) for node, message in cluster.network if isinstance(message, Relay)]
    assert all(len(relay.votes) == 1 for _, relay in first) and len(first) == 12
    after_first = frames_by_kind(cluster)
    cluster.tick(0.2)  # the primary passes on the RESULTs it kept
    passed = [message for node, message in cluster.network if isinstance(message, Relay)]
    # The 2f+1 votes that certified it, less the primary's own, sent at the last tick; a later
    # one that agrees is not kept, so not passed on.
    assert len(passed) == 6 and {len(relay.votes) for relay in passed} == {4}
    assert all(0 not in {vote.sender for vote in relay.votes} for relay in passed)
    after_second = frames_by_kind(cluster)
    for node in range(7):
        assert cluster.replicas[node].verdicts.result_votes.decided[request.key] == "certified"
        assert bin(cluster.replicas[node].verdicts.result_votes.voters[request.key]).count("1") >= 5
    for backup in range(1, 7):
        assert after_first[backup] == ["relay"] and after_second[backup] == ["relay"]
    assert after_first[0] == ["relay"] * 6 and after_second[0] == []
    assert cluster.drops == []


def test_without_relaying_every_vote_goes_to_everyone():
    cluster = Cluster(n=7, f=2)
    cluster.deliver_to(0, cluster.request())
    seen = frames_by_kind(cluster)
    assert seen[3].count("prepare") == 5 and seen[3].count("commit") == 6
    assert "relay" not in seen[3] and "result" not in seen[3]
    # RESULTs are not on the client's path: each node sends its own at the tick, in one frame to all.
    cluster.tick(0.1)
    assert frames_by_kind(cluster)[3] == ["relay"] * 6


def test_a_backup_that_lost_the_prepares_relay_commits_from_the_commits_relay():
    cluster = Cluster(n=4, f=1, settings=RELAY)
    request = cluster.request()
    cluster.deliver_to(0, request)
    lost = []

    def keep(node, message):
        if node == 3 and isinstance(message, Relay) and not lost:
            lost.append(message)
            return False
        return True

    cluster.run(keep)
    assert lost and all(isinstance(vote, (Prepare, Commit)) for vote in lost[0].votes)
    assert cluster.builds(3) == [request]
    assert cluster.replicas[3].slots[1].prepared


def test_when_the_primary_relays_nothing_backups_fall_back_to_all_to_all_without_a_view_change():
    cluster = Cluster(n=4, f=1, settings=RELAY)
    request = cluster.request()
    cluster.deliver_to(0, request)
    no_relays = lambda node, message: not isinstance(message, Relay)  # noqa: E731
    cluster.run(no_relays)
    assert all(cluster.executed_seqs(node) == [] for node in range(4))
    cluster.tick(0.4)  # not yet overdue
    cluster.run(no_relays)
    assert all(cluster.executed_seqs(node) == [] for node in range(4))
    cluster.tick(0.6)
    cluster.run(no_relays)
    for node in range(4):
        assert cluster.builds(node) == [request]
        assert cluster.replicas[node].view == 0
    assert all(cluster.replicas[node].slots[1].all_to_all for node in (1, 2, 3))


def test_a_relay_checks_every_vote_against_its_own_signer():
    cluster = Cluster(n=4, f=1, settings=RELAY)
    cluster.deliver_to(0, cluster.request())
    preprepares, _ = list(cluster.network), cluster.network.clear()
    for node, message in preprepares:
        cluster.deliver_to(node, message)  # each backup prepares, to the primary alone
    assert {node for node, message in cluster.network} == {0}
    prepares = {message.sender: message for node, message in cluster.network}
    cluster.network.clear()
    forged = replace(prepares[1], digest="f" * 64)
    cluster.deliver_to(3, Relay((forged, prepares[2])))
    assert sorted(cluster.replicas[3].slots[1].prepares) == [2, 3]
    assert cluster.drops == [(3, "ignore_prepare_bad_signature")]


def test_the_relay_codec_takes_only_votes():
    cluster = Cluster(n=4, f=1, settings=RELAY)
    request = cluster.request()
    cluster.deliver_to(0, request)
    cluster.run()
    vote = next(message for message in cluster.stored[2] if isinstance(message, ResultVote))
    prepare = next(message for message in cluster.stored[2] if isinstance(message, Prepare))
    relay = Relay((prepare, vote))
    assert decode(encode(relay)) == relay
    with pytest.raises(MessageError):
        decode({"type": "relay", "votes": [encode(request)]})
    with pytest.raises(MessageError):
        decode({"type": "relay", "votes": [encode(relay)]})
    with pytest.raises(MessageError):
        decode({"type": "relay", "votes": []})
