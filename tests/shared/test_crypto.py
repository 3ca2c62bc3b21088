"""The authenticator's memory of signatures it checked (shared/crypto.py)."""

from shared import crypto
from shared.crypto import Ed25519Authenticator, generate_private_key


def test_a_signature_that_held_is_checked_once_and_nothing_else_rides_on_it():
    key = generate_private_key()
    signer = Ed25519Authenticator(key, {}, {})
    verifier = Ed25519Authenticator(None, {1: key.public_key()}, {})
    payload = {"type": "result", "seq": 7, "sender": 1}
    signature = signer.sign(payload)
    assert verifier.verify_node(1, payload, signature) and verifier.checks == 1
    assert verifier.verify_node(1, payload, signature) and verifier.checks == 1  # remembered, not checked again
    # The same signature over other bytes, or under another node's name, is checked and fails.
    assert not verifier.verify_node(1, {**payload, "seq": 8}, signature) and verifier.checks == 2
    assert not verifier.verify_node(2, payload, signature)
    # A failed check is never remembered: it fails again, checked again.
    forged = "00" * 64
    assert not verifier.verify_node(1, payload, forged) and not verifier.verify_node(1, payload, forged)
    assert verifier.checks == 4


def test_the_memory_of_checked_signatures_is_bounded(monkeypatch):
    monkeypatch.setattr(crypto, "MAX_VERIFIED", 3)
    key = generate_private_key()
    signer = Ed25519Authenticator(key, {}, {})
    verifier = Ed25519Authenticator(None, {1: key.public_key()}, {})
    signed = [({"seq": seq}, signer.sign({"seq": seq})) for seq in range(5)]
    for payload, signature in signed:
        assert verifier.verify_node(1, payload, signature)
    assert len(verifier._verified) == 3 and verifier.checks == 5
    assert verifier.verify_node(1, *signed[0]) and verifier.checks == 6  # the oldest was forgotten
    assert verifier.verify_node(1, *signed[4]) and verifier.checks == 6


def test_a_signature_of_our_own_is_never_checked():
    # Our RESULT vote comes back inside the verdict proofs other primaries carry.
    key = generate_private_key()
    me = Ed25519Authenticator(key, {1: key.public_key()}, {})
    payload = {"type": "result", "seq": 7, "sender": 1}
    assert me.verify_node(1, payload, me.sign(payload)) and me.checks == 0
    assert not me.verify_node(1, {**payload, "seq": 8}, me.sign(payload)) and me.checks == 1
