"""The node's SQLite store: certified and disputed verdicts from RESULT votes (n = 4, f = 1)."""

from dataclasses import replace

from pbft.effects import Execute, RecordVerdict, SendReply, Store
from pbft.build import Result
from pbft.messages import Reply, ResultVote, batch_digest, signed
from pbft.quorum import verdict
from pbft.membership import Membership
from pbft.votes import ResultVotes
from node.storage import NodeStore
from tests.support.cluster import Cluster

PASS = Result("success", 0, "a" * 40)
FAIL = Result("failure", 3, "a" * 40)


def test_verdict_rule():
    assert verdict({0: "ok", 1: "ok", 2: "ok"}, 4, 1) == ("certified", "ok")
    assert verdict({0: "ok", 1: "ok", 3: "bad"}, 4, 1) == ("pending", None)  # node 2 may still make it 3
    assert verdict({0: "ok", 1: "ok", 2: "bad", 3: "bad"}, 4, 1) == ("disputed", None)
    assert verdict({}, 4, 1) == ("pending", None)


def cast(cluster, request, votes):
    return [
        signed(ResultVote(1, request.client, request.timestamp, result, sender), cluster.replicas[sender].auth.sign)
        for sender, result in votes
    ]


def tally(votes, n=4, f=1):
    """Feed votes to the core's vote table as they arrive; return what was kept and what was decided."""
    table = ResultVotes(lambda seq: Membership.of(((node, "") for node in range(n)), f, 256), retry_s=1.0)
    table.ordered(votes[0].key, 1)
    kept, decided = [], []
    for vote in votes:
        counted = table.add(vote)
        kept += [vote.sender] if counted.kept else []
        decided += [counted.decided] if counted.decided else []
    return kept, decided


def test_three_matching_votes_certify_and_a_repeated_vote_counts_once():
    cluster = Cluster()
    votes = cast(cluster, cluster.request(), [(0, PASS), (1, PASS), (1, FAIL), (3, FAIL), (2, PASS)])
    kept, decided = tally(votes)
    assert kept == [0, 1, 3, 2]  # node 1's second vote is not its first: ignored
    assert decided == [("certified", PASS.agreed())]  # decided once, by the third PASS


def test_honest_nodes_that_disagree_make_a_disputed_build():
    cluster = Cluster()
    votes = cast(cluster, cluster.request(), [(0, PASS), (1, FAIL), (2, PASS), (3, FAIL)])
    assert tally(votes)[1] == [("disputed", None)]


def test_the_store_keeps_votes_and_the_verdict_the_replica_decided(tmp_path):
    cluster = Cluster()
    request = cluster.request()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    execute = Execute(0, 1, batch_digest((request,)), (request,), (request,), "0" * 64)
    votes = cast(cluster, request, [(0, PASS), (1, PASS), (2, PASS)])
    verdict_effect = RecordVerdict(1, request.client, request.timestamp, "certified", PASS.agreed())
    store.save(executed_by(cluster, request), [execute, *map(Store, votes), verdict_effect])
    (record,) = store.build_records(1)
    assert record["verdict"] == {"state": "certified", "result": PASS.agreed()}
    assert [vote["node"] for vote in record["votes"]] == [0, 1, 2]
    loaded = store.load()
    assert loaded.executed == {request.key: (1, False)}
    assert sorted(vote.sender for vote in loaded.messages if isinstance(vote, ResultVote)) == [0, 1, 2]


def executed_by(cluster, *requests):
    """Node 0's durable state as it is once `requests` executed: their clients' newest timestamps."""
    latest = {request.client: request.timestamp for request in sorted(requests, key=lambda r: r.timestamp)}
    return replace(cluster.replicas[0].durable_state(), client_latest=latest)


def test_a_restart_reads_only_the_builds_and_votes_above_each_clients_floor(tmp_path):
    cluster = Cluster()
    old, live = cluster.request(), cluster.request()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    effects = []
    for seq, request in enumerate((old, live), start=1):
        effects += [Execute(0, seq, batch_digest((request,)), (request,), (request,), "0" * 64)]
        effects += map(Store, cast(cluster, request, [(0, PASS), (1, PASS), (2, PASS)]))
    state = replace(executed_by(cluster, old, live), client_floor={old.client: old.timestamp})
    store.save(state, effects)
    loaded = store.load()
    assert loaded.executed == {live.key: (2, False)} and loaded.unfinished == [(2, live)]
    assert {vote.key for vote in loaded.messages if isinstance(vote, ResultVote)} == {live.key}
    assert [record["client"] for record in store.build_records(1)] == [old.client], "the record stays on disk"


def test_the_store_finds_one_build_by_its_request_for_a_client_that_knows_no_sequence_number(tmp_path):
    cluster = Cluster()
    request, other = cluster.request(), cluster.request()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    execute = Execute(0, 1, batch_digest((request, other)), (request, other), (request, other), "0" * 64)
    votes = cast(cluster, other, [(1, FAIL), (0, PASS)])
    store.save(cluster.replicas[0].durable_state(), [execute, *map(Store, votes)])

    record = store.build_record(other.client, other.timestamp)
    assert record == store.build_records(1)[1]  # the second of the batch, not the first
    assert (record["seq"], record["timestamp"]) == (1, other.timestamp)
    assert [vote["node"] for vote in record["votes"]] == [0, 1]
    assert store.build_record(other.client, other.timestamp + 1000) is None
    assert store.build_record("someone-else", other.timestamp) is None


def test_the_store_gives_back_a_reply_and_a_builds_votes_to_send_again(tmp_path):
    cluster = Cluster()
    request, other = cluster.request(), cluster.request()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    execute = Execute(0, 1, batch_digest((request, other)), (request, other), (request, other), "0" * 64)
    reply = signed(Reply(0, request.timestamp, request.client, 0, PASS), cluster.replicas[0].auth.sign)
    votes = cast(cluster, request, [(2, PASS), (0, PASS)]) + cast(cluster, other, [(1, FAIL)])
    assert store.reply(request.client, request.timestamp) is None
    store.save(cluster.replicas[0].durable_state(), [execute, SendReply(reply), *map(Store, votes)])
    assert store.reply(request.client, request.timestamp) == reply
    assert store.reply(other.client, other.timestamp) is None  # executed, not answered yet
    assert [vote.sender for vote in store.votes((request.key,))] == [0, 2]
    assert store.votes((request.key, other.key)) == [votes[1], votes[0], votes[2]]
    assert store.votes((("nobody", 1),)) == []
    store.close()


def test_a_store_from_before_learnt_builds_were_recorded_opens_and_reruns_its_unfinished_builds(tmp_path):
    import sqlite3

    path = tmp_path / "node.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE builds (client TEXT NOT NULL, timestamp INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " request TEXT NOT NULL, reply TEXT, PRIMARY KEY (client, timestamp))"
    )
    old.commit()
    old.close()
    cluster = Cluster()
    built, learnt = cluster.request(), cluster.request()
    store = NodeStore(path, n=4, f=1)
    execute = Execute(0, 1, batch_digest((built, learnt)), (built, learnt), (built,), "0" * 64, learnt=(learnt,))
    store.save(executed_by(cluster, built, learnt), [execute])
    loaded = store.load()
    assert loaded.executed == {built.key: (1, False), learnt.key: (1, False)}  # both count for exactly-once
    assert loaded.learnt == [(1, learnt)]  # built only if its verdict stays open (Replica.restore)
    assert loaded.unfinished == [(1, built)]  # only what this node built is built again


def test_stable_checkpoint_proofs_are_kept_for_state_transfer_chunks(tmp_path):
    from pbft.effects import KeepStableProof
    from pbft.messages import Checkpoint

    cluster = Cluster()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    proofs = {
        seq: tuple(signed(Checkpoint(seq, f"{seq:064x}", i), cluster.replicas[i].auth.sign) for i in range(3))
        for seq in (128, 256, 384)
    }
    store.save(cluster.replicas[0].durable_state(), [KeepStableProof(seq, proof) for seq, proof in proofs.items()])
    assert store.stable_proof_seqs(129, 384) == [256, 384]
    assert store.stable_proof(256) == proofs[256]
    assert store.stable_proof(200) is None


def test_the_store_keeps_the_document_the_ledger_starts_from_once_the_order_changed_it(tmp_path):
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    first, edited, made = {"f": 1, "nodes": []}, {"f": 1, "nodes": [], "repositories": []}, {"f": 2}
    assert store.first_document(first, changed=False) == first
    # No change in the ledger: the file's document is the first one (a network without owners
    # changes it at a restart of every node).
    assert store.first_document(edited, changed=False) == edited
    store.close()
    store = NodeStore(tmp_path / "node.sqlite", n=4, f=1)
    # A change in the ledger: the file's document (here, the one the order made) is not it.
    assert store.first_document(made, changed=True) == edited
