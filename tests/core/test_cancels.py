"""Cancels as a function of the order (pbft.cancels): what a cancel does to its target on
every node, wherever the target's build was, and how long the replica remembers it.
The text scenarios (cancel-race, cancel-restart, cancel-learnt) play the three ways a
node meets a cancel; these tests check the rules one at a time."""

from pbft.build import Operation, Result
from pbft.cancels import cancelled_result
from pbft.effects import RecordVerdict
from pbft.messages import Request, signed
from tests.support.cluster import CLIENT, Cluster


def verdict_state(cluster: Cluster, node: int, timestamp: int) -> str | None:
    store = cluster.stores[node]
    record = store.build_record(CLIENT, timestamp)
    return record["verdict"]["state"] if record is not None else None


def test_a_build_whose_result_comes_after_its_cancel_executed_ends_cancelled_whatever_it_found():
    cluster = Cluster(store_dir=None)
    cluster.slow.add(3)
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    cluster.deliver_to(0, cluster.cancel(target))
    cluster.run()
    assert cluster.stopped[3] == [(CLIENT, target.timestamp)]
    cluster.finish_builds(3)  # the kill never landed: the build reports its own success
    replies = [reply for reply in cluster.replies if reply.sender == 3 and reply.timestamp == target.timestamp]
    assert [reply.result.status for reply in replies] == ["cancelled"]
    assert replies[0].result.agreed_key() == cancelled_result().agreed_key()


def test_a_certified_verdict_becomes_cancelled_when_the_cancel_executes_and_the_votes_stay_as_evidence():
    cluster = Cluster()
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    cluster.send_results()
    assert {verdict_state(cluster, node, target.timestamp) for node in range(4)} == {"certified"}
    cluster.deliver_to(0, cluster.cancel(target))
    cluster.run()
    for node in range(4):
        record = cluster.stores[node].build_record(CLIENT, target.timestamp)
        assert record["verdict"] == {"state": "cancelled", "result": cancelled_result().agreed()}
        assert {vote["vote"]["result"]["status"] for vote in record["votes"]} == {"success"}
        assert len(record["votes"]) >= 3
    assert not any(cluster.stopped)  # nothing ran any more: nothing to stop


def test_the_results_that_came_before_the_cancel_stay_in_every_ledger_as_evidence():
    cluster = Cluster()
    cluster.slow.update({2, 3})
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    cluster.send_results()  # nodes 0 and 1 voted success: two of the 2f+1 a verdict needs
    cluster.deliver_to(0, cluster.cancel(target))
    cluster.run()
    for node in (2, 3):
        cluster.finish_builds(node)
    cluster.send_results()
    for node in range(4):
        assert cluster.replicas[node].verdicts.result_votes.decided[target.key] == "cancelled"
        record = cluster.stores[node].build_record(CLIENT, target.timestamp)
        statuses = {vote["node"]: vote["vote"]["result"]["status"] for vote in record["votes"]}
        # Success votes dissent from the verdict and are kept everywhere; a cancelled one
        # confirms it, and only its own sender keeps it.
        assert {0: "success", 1: "success"}.items() <= statuses.items()
        assert statuses.get(node, "cancelled") == ("success" if node < 2 else "cancelled")


def test_a_cancel_of_another_clients_build_or_of_a_later_timestamp_cancels_nothing():
    cluster = Cluster()
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    # Naming its own timestamp or a later one: refused as a cancel, answered alike everywhere.
    odd = signed(Request(CLIENT, 50, Operation("example", "master", cancels=60)), cluster.client_auth.sign)
    cluster.deliver_to(0, odd)
    cluster.run()
    answers = {reply.result.agreed_key() for reply in cluster.replies if reply.timestamp == 50}
    assert answers == {Result("error", None, None).agreed_key()}
    assert all(target.key not in replica.answers.cancels for replica in cluster.replicas)
    assert not any(cluster.stopped)


def test_a_restart_rebuilds_the_cancels_and_the_cancelled_verdicts_from_the_store(tmp_path):
    cluster = Cluster(store_dir=tmp_path)
    cluster.slow.add(1)
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    cluster.deliver_to(0, cluster.cancel(target))
    cluster.run()
    before = cluster.replicas[1]
    cluster.crashed.add(1)
    cluster.restart(1)
    after = cluster.replicas[1]
    assert after is not before
    assert after.answers.cancels.by_target == before.answers.cancels.by_target == {target.key: (CLIENT, target.timestamp + 1)}
    assert after.verdicts.result_votes.decided[target.key] == "cancelled"
    assert cluster.running[1] == []  # not run again
    assert [reply.result.status for reply in cluster.replies if reply.sender == 1 and reply.timestamp == 1] == [
        "cancelled"
    ]


def test_cancels_are_forgotten_with_their_requests_so_a_client_cannot_grow_the_table():
    kept = 4
    cluster = Cluster(settings={"max_requests_per_client": kept, "checkpoint_interval": 2})
    for _ in range(20):
        target = cluster.request()
        cluster.deliver_to(0, target)
        cluster.run()
        cluster.deliver_to(0, cluster.cancel(target))
        cluster.run()
    for replica in cluster.replicas:
        assert len(replica.answers.cancels) <= kept
        assert all(cancel in replica.clients.executed for cancel in replica.answers.cancels.by_target.values())


def test_the_cancelled_verdict_is_recorded_once_per_node():
    cluster = Cluster()
    seen: list[tuple[int, RecordVerdict]] = []
    cluster.saw = lambda node, effects: seen.extend(
        (node, effect) for effect in effects if isinstance(effect, RecordVerdict) and effect.state == "cancelled"
    )
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    first = cluster.cancel(target)
    cluster.deliver_to(0, first)
    cluster.run()
    second = cluster.cancel(target)  # a second cancel of the same build
    cluster.deliver_to(0, second)
    cluster.run()
    cluster.send_results()
    assert sorted(node for node, _ in seen) == [0, 1, 2, 3]


def test_a_node_that_learnt_the_build_by_state_transfer_answers_its_cancel_at_once():
    """Found by the simulator (seed 232): a node that adopted a build by state transfer, never
    built it, and then executed its cancel gave no reply at all, and a client whose other replies
    were split (artifacts that differ, and one `cancelled`) waited for it for ever."""
    cluster = Cluster(settings={"checkpoint_interval": 2, "log_window": 4})
    cluster.crashed.add(3)  # cut off: receives nothing
    target = cluster.request()
    cluster.deliver_to(0, target)
    cluster.run()
    for _ in range(3):
        cluster.deliver_to(0, cluster.request("feature"))
        cluster.run()
    cluster.crashed.discard(3)
    cluster.deliver_to(0, cluster.request("feature"))
    cluster.run()
    cluster.tick(10.0)
    cluster.run()
    assert target.key in cluster.replicas[3].transfer.learnt_unbuilt  # adopted, never built
    cluster.deliver_to(0, cluster.cancel(target))
    cluster.run()
    replies = [reply.result.status for reply in cluster.replies if reply.sender == 3 and reply.timestamp == 1]
    assert replies == ["cancelled"]
    assert target.key not in cluster.replicas[3].transfer.learnt_unbuilt
    assert cluster.stopped[3] == []  # nothing ran here to stop
