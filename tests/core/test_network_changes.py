"""Changes of the network document through the order (`pbft.networks`, `pbft.networkchange`).

A change is a request like a build's: every node checks it where it executes, by the same
rule, and the new document runs from that sequence number on, on every node alike — its
CHECKPOINTs, STATUS and replies name the new digest. A change signed by fewer owners than
the threshold, replayed after it applied, or made before another one is refused with its
reason; a restart replays the changes of the ledger and runs the same document.
"""

import json
from dataclasses import replace

from pbft.encoding import canonical
from pbft.messages import Request
from pbft.networkchange import NetworkChange, OwnerSignature, document_digest
from pbft.networks import applied_reason, signers_named
from shared.crypto import generate_private_key, public_key_hex, sign_bytes
from tests.support.cluster import Cluster, keys

OWNERS = {name: generate_private_key() for name in ("ada", "bob", "cy")}
NODE_KEYS, _ = keys(4)
DOCUMENT = {
    "f": 1,
    "nodes": [{"id": node, "host": "127.0.0.1", "port": 9000 + node, "public_key": public_key_hex(key)}
              for node, key in enumerate(NODE_KEYS)],
    "owners": {"threshold": 2, "keys": [{"name": name, "public_key": public_key_hex(key)}
                                        for name, key in OWNERS.items()]},
    "repositories": [{"name": "example", "url": "https://git.example.org/example.git"}],
}


def changed(document: dict, **sections) -> dict:
    return {**document, **sections}


def change(base: dict, document: dict, signers=("ada", "bob")) -> NetworkChange:
    unsigned = NetworkChange(document_digest(base), canonical(document).decode())
    payload = canonical(unsigned.signed_payload())
    return replace(unsigned, signatures=tuple(
        OwnerSignature(name, sign_bytes(OWNERS[name], payload)) for name in signers))


def submit(cluster: Cluster, network_change: NetworkChange) -> Request:
    request = cluster.change(network_change)
    cluster.deliver_to(0, request)
    cluster.run()
    return request


def answers(cluster: Cluster, request: Request) -> dict[int, tuple[str, str]]:
    return {reply.sender: (reply.result.status, reply.result.reason)
            for reply in cluster.replies if reply.timestamp == request.timestamp}


BIGGER_BUILDS = changed(DOCUMENT, build={"memory_mb": 1024})


def test_a_change_signed_by_k_owners_runs_from_its_sequence_number_on_every_node():
    cluster = Cluster(document=DOCUMENT, settings={"checkpoint_interval": 2})
    request = submit(cluster, change(DOCUMENT, BIGGER_BUILDS))
    target = document_digest(BIGGER_BUILDS)
    assert set(answers(cluster, request).values()) == {
        ("success", f"network configuration {target}, signed by ada, bob, runs from sequence number 1")}
    assert all(cluster.network_changes[node] == [(1, target)] for node in range(4))
    assert all(replica.network.document == BIGGER_BUILDS for replica in cluster.replicas)
    cluster.deliver_to(0, cluster.request())  # a build after it: its reply and the checkpoint name the new digest
    cluster.run()
    assert {reply.network for reply in cluster.replies if reply.timestamp == cluster.replies[-1].timestamp} == {target}
    for replica in cluster.replicas:
        assert replica.low_watermark == 2 and {vote.network for vote in replica.stable_proof} == {target}


def test_a_change_signed_by_fewer_owners_than_the_threshold_is_refused_with_its_reason():
    cluster = Cluster(document=DOCUMENT)
    request = submit(cluster, change(DOCUMENT, BIGGER_BUILDS, signers=("ada",)))
    assert set(answers(cluster, request).values()) == {
        ("error", "network change refused: signed by 1 of the 2 owners a change needs (ada)")}
    assert all(replica.network.document == DOCUMENT for replica in cluster.replicas)
    assert cluster.network_changes == [[], [], [], []]


def test_a_signature_by_a_key_that_is_no_owners_or_twice_by_one_owner_does_not_count():
    cluster = Cluster(document=DOCUMENT)
    forged = change(DOCUMENT, BIGGER_BUILDS, signers=("ada", "ada"))
    stranger = generate_private_key()
    stolen_name = replace(forged, signatures=(forged.signatures[0], OwnerSignature(
        "bob", sign_bytes(stranger, canonical(forged.signed_payload())))))
    for attempt in (forged, stolen_name):
        request = submit(cluster, attempt)
        assert set(answers(cluster, request).values()) == {
            ("error", "network change refused: signed by 1 of the 2 owners a change needs (ada)")}
    assert all(replica.network.document == DOCUMENT for replica in cluster.replicas)


def test_a_replayed_change_and_one_made_before_another_are_refused():
    cluster = Cluster(document=DOCUMENT)
    first = change(DOCUMENT, BIGGER_BUILDS)
    made_alongside = change(DOCUMENT, changed(DOCUMENT, build={"cpus": 2.0}))
    submit(cluster, first)
    base, running = document_digest(DOCUMENT)[:16], document_digest(BIGGER_BUILDS)[:16]
    refusal = (f"network change refused: the change applies to network configuration {base}, and the network runs "
               f"{running}: a change already applied, or one made before another")
    for stale in (first, made_alongside):
        assert set(answers(cluster, submit(cluster, stale)).values()) == {("error", refusal)}
    assert all(replica.network.document == BIGGER_BUILDS for replica in cluster.replicas)


def test_a_change_replayed_after_another_undid_it_is_refused_live_and_after_a_restart(tmp_path):
    """A document may come back (a change undone); the change that first left it stays spent."""
    cluster = Cluster(document=DOCUMENT, store_dir=tmp_path)
    first = change(DOCUMENT, BIGGER_BUILDS)
    submit(cluster, first)
    submit(cluster, change(BIGGER_BUILDS, DOCUMENT, signers=("bob", "cy")))
    assert all(replica.network.digest == document_digest(DOCUMENT) for replica in cluster.replicas)
    replayed = submit(cluster, first)
    refusal = ("network change refused: the change was applied at sequence number 1 already: a replay (to take that "
               "step again, owners sign a document that differs in some setting)")
    assert set(answers(cluster, replayed).values()) == {("error", refusal)}
    assert all(replica.network.document == DOCUMENT for replica in cluster.replicas)
    cluster.crashed.add(2)
    cluster.restart(2)
    assert cluster.replicas[2].network.digest == document_digest(DOCUMENT)
    assert cluster.replicas[2].network.steps == cluster.replicas[0].network.steps


def test_the_owners_whose_signatures_carried_a_change_are_named_alike_executed_learnt_and_replayed(tmp_path):
    """Every node names the same signers of the running document: the valid signatures of the
    replaced document's owners, not every name a change carries, whether it executed the
    change, learnt it by state transfer or replayed it from its ledger after a restart."""
    cluster = Cluster(document=DOCUMENT, store_dir=tmp_path,
                      settings={"checkpoint_interval": 2, "log_window": 4, "batch_max": 1})
    cluster.crashed.add(3)  # cut off: it learns the change by state transfer
    signed = change(DOCUMENT, BIGGER_BUILDS, signers=("cy", "ada"))
    forged = OwnerSignature("bob", sign_bytes(generate_private_key(), canonical(signed.signed_payload())))
    request = submit(cluster, replace(signed, signatures=(*signed.signatures, forged)))
    target = document_digest(BIGGER_BUILDS)
    assert set(answers(cluster, request).values()) == {("success", applied_reason(target, 1, ("ada", "cy")))}
    for _ in range(6):
        cluster.deliver_to(0, cluster.request())
        cluster.run()
    cluster.crashed.discard(3)
    cluster.deliver_to(0, cluster.request())
    cluster.run()
    assert cluster.replicas[3].last_executed == 0  # what it missed is below the others' window
    cluster.tick(10.0)  # no progress for longer than fetch_interval_s: node 3 asks
    cluster.run()
    assert cluster.replicas[3].last_executed == cluster.replicas[0].last_executed == 8
    cluster.crashed.add(2)
    cluster.restart(2)
    for replica in cluster.replicas:
        assert (replica.network.digest, replica.network.changed_at, replica.network.signed_by) == (
            target, 1, ("ada", "cy"))


def test_the_reason_of_an_applied_change_names_its_signers_and_nothing_else_parses_as_one():
    digest = "ab" * 32
    assert signers_named(applied_reason(digest, 12, ("ada", "bob"))) == ("ada", "bob")
    assert applied_reason(digest, 12, ("ada",)) == (
        f"network configuration {digest}, signed by ada, runs from sequence number 12")
    sixteen = tuple(f"{index:02d}" + "o" * 62 for index in range(16))  # the longest names a change may carry
    too_many = applied_reason(digest, 12, sixteen)
    assert len(too_many) <= 1024 and "signed by 16 owners," in too_many and signers_named(too_many) is None
    for other in ("network change refused: signed by 1 of the 2 owners a change needs (ada)",
                  f"network configuration {digest}, signed by ada, bo b, runs from sequence number 12",
                  f"network configuration {digest}, signed by ada\x1b[2J, runs from sequence number 12"):
        assert signers_named(other) is None


def test_membership_and_protocol_are_not_changed_by_a_change_yet():
    cluster = Cluster(document=DOCUMENT)
    request = submit(cluster, change(DOCUMENT, changed(DOCUMENT, f=2, protocol={"batch_max": 8})))
    assert set(answers(cluster, request).values()) == {
        ("error", "network change refused: changes f, protocol, which change only at a restart of every node")}


def test_a_network_without_owners_refuses_every_change():
    without = {key: value for key, value in DOCUMENT.items() if key != "owners"}
    cluster = Cluster(document=without)
    request = submit(cluster, change(without, BIGGER_BUILDS))
    assert set(answers(cluster, request).values()) == {
        ("error", "network change refused: this network has no owners: its configuration changes only at a restart "
                  "of every node")}


def test_a_restarted_node_replays_the_ledgers_changes_and_runs_the_same_document(tmp_path):
    cluster = Cluster(document=DOCUMENT, store_dir=tmp_path)
    submit(cluster, change(DOCUMENT, BIGGER_BUILDS, signers=("ada",)))  # refused: replayed as refused
    submit(cluster, change(DOCUMENT, BIGGER_BUILDS))
    smaller = changed(BIGGER_BUILDS, build={"memory_mb": 512})
    submit(cluster, change(BIGGER_BUILDS, smaller, signers=("bob", "cy")))
    cluster.crashed.add(2)
    cluster.restart(2)
    restored = cluster.replicas[2].network
    assert (restored.document, restored.changed_at) == (smaller, 3)
    assert restored.digest_at(2, 3) == document_digest(BIGGER_BUILDS)
    assert json.dumps(restored.document) == json.dumps(cluster.replicas[0].network.document)


def test_a_change_is_a_checkpoint_boundary_the_nodes_make_stable_under_the_new_document():
    cluster = Cluster(document=DOCUMENT)  # a checkpoint every 128 batches, and at each change
    cluster.deliver_to(0, cluster.request())
    cluster.run()
    submit(cluster, change(DOCUMENT, BIGGER_BUILDS))
    for replica in cluster.replicas:
        assert (replica.last_executed, replica.low_watermark) == (2, 2)
        assert {vote.network for vote in replica.stable_proof} == {document_digest(BIGGER_BUILDS)}
    refused = submit(cluster, change(BIGGER_BUILDS, DOCUMENT, signers=("cy",)))
    assert all(replica.low_watermark == 2 for replica in cluster.replicas)  # a refused change changes nothing
    assert {status for status, _ in answers(cluster, refused).values()} == {"error"}


def test_two_changes_in_one_batch_apply_in_its_order_live_and_after_a_restart(tmp_path):
    cluster = Cluster(document=DOCUMENT, store_dir=tmp_path, settings={"pipeline_depth": 1, "batch_max": 8})
    cluster.deliver_to(0, cluster.request())  # seq 1 goes out at once; the two changes wait for it, and batch
    smaller = changed(BIGGER_BUILDS, build={"memory_mb": 512})
    for network_change in (change(DOCUMENT, BIGGER_BUILDS), change(BIGGER_BUILDS, smaller, signers=("bob", "cy"))):
        cluster.deliver_to(0, cluster.change(network_change))
    cluster.run()
    assert [len(effect.batch) for effect in cluster.executed[0]] == [1, 2]
    assert cluster.network_changes[1] == [(2, document_digest(BIGGER_BUILDS)), (2, document_digest(smaller))]
    cluster.crashed.add(1)
    cluster.restart(1)
    assert (cluster.replicas[1].network.document, cluster.replicas[1].network.changed_at) == (smaller, 2)


def test_a_document_no_node_can_hash_is_refused_not_a_crash():
    # Any client may hand in a change: one whose document the canonical encoding cannot hash
    # (NaN, an infinite number, nesting too deep) must be refused by every node, not raise.
    cluster = Cluster(document=DOCUMENT)
    for text in ('{"f": NaN}', '{"f": 1e999}', "[" * 5000 + "]" * 5000, '{"f": ' + "[" * 3000 + "]" * 3000 + "}"):
        request = submit(cluster, NetworkChange(document_digest(DOCUMENT), text))
        assert set(answers(cluster, request).values()) == {
            ("error", "network change refused: the change's document is not a JSON object of finite numbers, "
                      "nested within bounds")}
    hostile = NetworkChange(document_digest(DOCUMENT), '{"f": NaN}')
    assert hostile.parsed() is None and hostile.target() == ""
