"""Testing layer 1: the client table's exactly-once memory and what a checkpoint makes it forget."""

from pbft.clients import ClientTable
from pbft.build import Operation
from pbft.messages import Request
from pbft.membership import Membership
from pbft.votes import ResultVotes

FOUR_NODES = lambda seq: Membership.of(((node, "") for node in range(4)), f=1, log_window=256)  # noqa: E731


def request(client: str, timestamp: int) -> Request:
    return Request(client, timestamp, Operation("example", "master"))


def test_a_checkpoint_forgets_exactly_the_requests_below_each_clients_floor():
    table = ClientTable(expiry_us=10)
    # Out of order on purpose: a client's requests may be ordered in any order.
    for client, timestamp in [("a", 5), ("a", 1), ("b", 3), ("a", 20), ("a", 9), ("a", 10), ("b", 4)]:
        assert table.execute(request(client, timestamp))
    assert not table.execute(request("a", 5)), "a request executes once"

    forgotten = table.forget_expired()

    # Floors: a at 20 - 10 = 10, b at 4 - 10 < 0.
    assert sorted(forgotten) == [("a", 1), ("a", 5), ("a", 9), ("a", 10)]
    assert set(table.executed) == {("a", 20), ("b", 3), ("b", 4)}
    assert not table.execute(request("a", 7)), "below the floor is done, or never will be"
    assert table.forget_expired() == [], "a second checkpoint with no newer request forgets nothing"


def test_requests_restored_from_disk_are_forgotten_like_live_ones():
    table = ClientTable(expiry_us=10)
    for timestamp in (30, 2, 15):
        table.remember(("a", timestamp), None)
    table.remember(("a", 2), None)  # a reply recorded later for the same request
    table.latest["a"] = 30
    assert sorted(table.forget_expired()) == [("a", 2), ("a", 15)]
    assert set(table.executed) == {("a", 30)}


def test_result_votes_drop_the_builds_the_client_table_forgot():
    table, votes = ClientTable(expiry_us=10), ResultVotes(FOUR_NODES, retry_s=2.0)
    for seq, timestamp in enumerate((1, 50), start=1):
        table.execute(request("a", timestamp))
        votes.ordered(("a", timestamp), seq)
        votes.expect(("a", timestamp), now=0.0)
    votes.forget(table.forget_expired())
    assert ("a", 1) not in votes and ("a", 1) not in votes.asks and ("a", 1) not in votes.seq
    assert ("a", 50) in votes and ("a", 50) in votes.asks


def test_a_client_that_counts_its_timestamps_from_one_keeps_at_most_max_kept_requests():
    # An hour of microseconds expires nothing when timestamps are 1, 2, 3, ...
    table = ClientTable(expiry_us=3_600_000_000, max_kept=3)
    for timestamp in range(1, 8):
        assert table.execute(request("greedy", timestamp))
    table.execute(request("other", 1))
    assert sorted(table.forget_expired()) == [("greedy", t) for t in (1, 2, 3, 4)]
    assert sorted(table.executed) == [("greedy", 5), ("greedy", 6), ("greedy", 7), ("other", 1)]
    assert table.floor["greedy"] == 4 and table.expired(("greedy", 4)) and not table.expired(("greedy", 5))
    assert not table.execute(request("greedy", 2)), "a forgotten request never runs again"


def test_a_node_keeps_at_most_max_open_requests_of_one_client_waiting():
    table = ClientTable(expiry_us=10, max_open=2)
    assert table.wait(request("a", 1)) and table.wait(request("a", 2))
    assert table.wait(request("a", 2)), "a retransmission of a waiting request is no new one"
    assert not table.wait(request("a", 3))
    assert table.wait(request("b", 1)), "the bound is per client"
    table.execute(request("a", 1))
    assert table.wait(request("a", 3))
    assert set(table.waiting) == {("a", 2), ("a", 3), ("b", 1)}


def test_a_build_forgotten_before_its_verdict_is_reported_undecided():
    table, votes = ClientTable(expiry_us=10, max_kept=1), ResultVotes(FOUR_NODES, retry_s=2.0)
    for seq, timestamp in enumerate((1, 2), start=1):
        table.execute(request("a", timestamp))
        votes.ordered(("a", timestamp), seq)
    assert votes.forget(table.forget_expired()) == [(("a", 1), 1)]


def test_a_view_change_does_not_make_a_node_wait_for_queued_requests_that_executed_meanwhile():
    """A primary's queue may hold requests that executed in another primary's batch or by state
    transfer; waiting for one of them after the view change, a node suspected every primary in
    turn (simulator seed 2252: node 0 alone in view 5 of 4)."""
    table = ClientTable(expiry_us=10)
    queued = [request("a", 1), request("a", 2)]
    for queued_request in queued:
        table.wait(queued_request)
        table.queue(queued_request)
    table.execute(queued[0])
    table.unqueue_all()
    assert list(table.waiting) == [("a", 2)] and not table.pending
