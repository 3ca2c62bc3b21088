"""What a replica keeps in memory per executed build, so that an hour of builds does not
fill it: decided verdicts drop their signed votes, replies live in the store, and both
are served from there (ResendReply, ServeVotes)."""

from dataclasses import replace

from pbft.effects import ResendReply, SendReply, ServeVotes
from pbft.messages import VoteFetch, signed
from tests.support.cluster import Cluster


def run_builds(cluster: Cluster, count: int) -> list:
    requests = [cluster.request() for _ in range(count)]
    for request in requests:
        cluster.deliver_to(0, request)
    cluster.run()
    cluster.send_results()
    return requests


def test_a_decided_verdict_keeps_who_voted_not_the_signed_votes():
    cluster = Cluster()
    requests = run_builds(cluster, 20)
    for replica in cluster.replicas:
        votes = replica.verdicts.result_votes
        assert all(votes.decided[request.key] == "certified" for request in requests)
        assert votes.votes == {}, "no signed vote stays in memory once its verdict is decided"
        # Who voted: the 2f+1 that certified it (this node among them) and any dissent;
        # a later agreeing vote is not kept (`ResultVotes.confirms`).
        assert all(
            bin(votes.voters[request.key]).count("1") >= 3 and votes.voters[request.key] & 1 << replica.id
            for request in requests
        )
        assert all(replica.clients.executed[request.key] is True for request in requests)


def test_a_late_vote_for_a_certified_build_is_kept_only_if_it_dissents():
    cluster = Cluster()
    (request,) = run_builds(cluster, 1)
    own_vote = next(m for m in cluster.stored[2] if getattr(m, "key", None) == request.key and m.sender == 2)
    stored_before = len(cluster.stored[1])
    # Agreeing with the verdict, it changes nothing: taken in unchecked, not kept.
    assert cluster.deliver_to(1, replace(own_vote, sig="00" * 64)) is None
    assert len(cluster.stored[1]) == stored_before
    # Against it: checked, and a second vote of a node whose first one is kept is refused...
    dissent = signed(replace(own_vote, result=replace(own_vote.result, exit_code=1)), cluster.replicas[2].auth.sign)
    assert cluster.deliver_to(1, replace(dissent, sig="00" * 64)) == "ignore_result_bad_signature"
    voters = cluster.replicas[1].verdicts.result_votes.voters[request.key]
    assert voters & 1 << 2
    assert cluster.deliver_to(1, dissent) == "ignore_result_not_first_vote"
    # ...and a dissent from a node whose vote it had not kept is kept, for every ledger to show.
    absent = next(node for node in range(4) if not voters & 1 << node)
    other = next(m for m in cluster.stored[absent] if getattr(m, "key", None) == request.key and m.sender == absent)
    dissent = signed(replace(other, result=replace(other.result, exit_code=1)), cluster.replicas[absent].auth.sign)
    assert cluster.deliver_to(1, dissent) is None
    assert cluster.stored[1][-1] == dissent


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
    voters = {request.key: cluster.replicas[2].verdicts.result_votes.voters[request.key] for request in requests}
    cluster.restart(2)
    replica = cluster.replicas[2]
    assert replica.verdicts.result_votes.votes == {}
    assert {request.key: replica.verdicts.result_votes.voters[request.key] for request in requests} == voters
    assert all(replica.verdicts.result_votes.decided[request.key] == "certified" for request in requests)
    assert all(replica.clients.executed[request.key] is True for request in requests)
