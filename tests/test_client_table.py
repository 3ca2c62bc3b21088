"""Testing layer 1: the client table's exactly-once memory and what a checkpoint makes it forget."""

from pbft.clients import ClientTable
from pbft.messages import Operation, Request
from pbft.votes import ResultVotes


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
    table, votes = ClientTable(expiry_us=10), ResultVotes(n=4, f=1, retry_s=2.0)
    for seq, timestamp in enumerate((1, 50), start=1):
        table.execute(request("a", timestamp))
        votes.ordered(("a", timestamp), seq)
        votes.expect(("a", timestamp), now=0.0)
    votes.forget(table.forget_expired())
    assert ("a", 1) not in votes and ("a", 1) not in votes.asks and ("a", 1) not in votes.seq
    assert ("a", 50) in votes and ("a", 50) in votes.asks
