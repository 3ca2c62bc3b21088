"""Ed25519 keys and the authenticator's memory of signatures it checked (shared/crypto.py)."""

import os

import pytest
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from hypothesis import given, settings, strategies as st

from shared import crypto
from shared.crypto import (
    Ed25519Authenticator, generate_private_key, is_point, load_private_key, parse_public_key, private_key_pem,
    raw_public_key_of_pem, save_private_key, spki_pem,
)


def _pycryptodome_decodes(raw: bytes) -> bool:
    try:
        eddsa.import_public_key(raw)
    except ValueError:
        return False
    return True


P = 2**255 - 19
EDGES = [((y | sign << 255) % 2**256).to_bytes(32, "little") for y in (0, 1, P - 1, P, P + 1, 2**255 - 1) for sign in (0, 1)]


@settings(max_examples=2000)
@given(st.binary(min_size=32, max_size=32) | st.sampled_from(EDGES))
def test_a_public_key_is_a_point_exactly_where_pycryptodome_decodes_one(raw):
    assert is_point(raw) == _pycryptodome_decodes(raw)


def test_key_files_are_the_pkcs8_and_spki_pem_pycryptodome_writes_and_reads(tmp_path):
    key = generate_private_key()
    library = ECC.construct(curve="Ed25519", seed=key.seed)
    assert private_key_pem(key) == library.export_key(format="PEM")
    save_private_key(key, tmp_path / "node.key")
    assert ECC.import_key((tmp_path / "node.key").read_text()).seed == key.seed
    assert load_private_key(tmp_path / "node.key").seed == key.seed
    assert raw_public_key_of_pem(library.public_key().export_key(format="PEM")) == key.public_raw
    assert spki_pem(key.public_raw) == library.public_key().export_key(format="PEM")
    # Another encoding of the same key (its DER, unwrapped) is still read, by pycryptodome.
    (tmp_path / "other.key").write_bytes(library.export_key(format="DER"))
    assert load_private_key(tmp_path / "other.key").seed == key.seed


@pytest.mark.parametrize("text", [
    "", "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
    ECC.generate(curve="P-256").public_key().export_key(format="PEM"),
], ids=["empty", "no-body", "not-base64", "p256"])
def test_a_pem_without_an_ed25519_public_key_is_refused(text):
    with pytest.raises((ValueError, IndexError, TypeError)):
        raw_public_key_of_pem(text)


def test_a_public_key_off_the_curve_is_refused():
    off = next(raw for raw in iter(lambda: os.urandom(32), None) if not _pycryptodome_decodes(raw))
    with pytest.raises(ValueError, match="point"):
        parse_public_key(off.hex())
    assert parse_public_key(generate_private_key().public_raw.hex()).raw


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
