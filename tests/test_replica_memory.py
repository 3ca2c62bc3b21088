"""What a replica keeps in memory per executed build, so that an hour of builds does not
fill it: decided verdicts drop their signed votes, replies live in the store, and both
are served from there (ResendReply, ServeVotes)."""

from pbft.effects import ResendReply, SendReply, ServeVotes
from pbft.messages import VoteFetch, signed
from tests.cluster import Cluster


def run_builds(cluster: Cluster, count: int) -> list:
    requests = [cluster.request() for _ in range(count)]
    for request in requests:
        cluster.deliver_to(0, request)
    cluster.run()
    return requests


def test_a_decided_verdict_keeps_who_voted_not_the_signed_votes():
    cluster = Cluster()
    requests = run_builds(cluster, 20)
    for replica in cluster.replicas:
        votes = replica.result_votes
        assert all(votes.decided[request.key] == "certified" for request in requests)
        assert votes.votes == {}, "no signed vote stays in memory once its verdict is decided"
        assert all(votes.voters[request.key] == 0b1111 for request in requests)
        assert all(replica.clients.executed[request.key] is True for request in requests)


def test_a_late_duplicate_vote_for_a_decided_build_is_refused():
    cluster = Cluster()
    (request,) = run_builds(cluster, 1)
    own_vote = next(m for m in cluster.stored[2] if getattr(m, "key", None) == request.key and m.sender == 2)
    assert cluster.deliver_to(1, own_vote) == "ignore_result_not_first_vote"


def test_a_retransmitted_request_is_answered_with_the_stored_reply():
    cluster = Cluster()
    (request,) = run_builds(cluster, 1)
    replica = cluster.replicas[1]
    assert replica.receive(request) is None
    assert replica.take_effects() == [ResendReply(request.client, request.timestamp)]
    # The driver sends the reply it saved: the same signed reply, byte for byte.
    first = [r for r in cluster.replies if r.sender == 1]
    cluster.deliver_to(1, request)
    again = [r for r in cluster.replies if r.sender == 1]
    assert len(again) == 2 and again[0] == again[1] == first[0]
    assert not any(isinstance(effect, SendReply) for effect in replica.take_effects())


def test_a_vote_fetch_is_served_from_the_store_for_builds_executed_here():
    cluster = Cluster()
    (request,) = run_builds(cluster, 1)
    asker = cluster.replicas[3]
    unknown = ("client", 10**12)
    fetch = signed(VoteFetch((request.key, unknown), 3), asker.auth.sign)
    # Only builds executed here are looked up, and in the store, not in memory.
    assert cluster.replicas[2].receive(fetch) is None
    assert cluster.replicas[2].take_effects() == [ServeVotes(3, (request.key,))]
    # Carried out from what node 1 stored: every vote but the asker's own.
    cluster.deliver_to(1, fetch)
    served = [(destination, message) for destination, message in cluster.network if destination == 3]
    assert sorted(message.sender for _, message in served) == [0, 1, 2]


def test_memory_per_build_stays_small_after_a_restart(tmp_path):
    cluster = Cluster(store_dir=tmp_path)
    requests = run_builds(cluster, 10)
    cluster.restart(2)
    replica = cluster.replicas[2]
    assert replica.result_votes.votes == {}
    assert all(replica.result_votes.voters[request.key] == 0b1111 for request in requests)
    assert all(replica.clients.executed[request.key] is True for request in requests)
