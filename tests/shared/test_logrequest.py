"""Signed node requests (`shared.logrequest`): what a node remembers to serve each one once."""

from shared.crypto import Ed25519Authenticator, generate_private_key
from shared.logrequest import (
    REPLAY_WINDOW_S, NodeAccess, NodeRequest, SeenNonces, check_log_request, signed_log_headers,
)


def test_a_nonce_is_refused_while_its_time_is_in_the_window_and_forgotten_after():
    seen = SeenNonces()
    assert seen.admit("client", "a" * 32, 1_000, 1_000.0) is None
    assert "already used" in seen.admit("client", "a" * 32, 1_000, 1_000.0 + REPLAY_WINDOW_S)
    assert seen.admit("other", "a" * 32, 1_000, 1_000.0) is None  # nonces are per client
    # Past the window the time check refuses the request anyway: its nonce is forgotten.
    assert seen.admit("client", "b" * 32, 1_000, 1_000.0 + REPLAY_WINDOW_S + 1) is None
    assert len(seen) == 2


def test_a_request_dated_ahead_is_remembered_until_its_own_time_leaves_the_window():
    seen = SeenNonces()
    assert seen.admit("client", "a" * 32, 1_050, 1_000.0) is None
    assert "already used" in seen.admit("client", "a" * 32, 1_050, 1_000.0 + REPLAY_WINDOW_S + 40)


def test_one_client_holds_at_most_its_bound_of_nonces():
    seen = SeenNonces(max_per_client=3)
    for nonce in ("a", "b", "c"):
        assert seen.admit("client", nonce * 32, 1_000, 1_000.0) is None
    assert "more than 3 signed requests" in seen.admit("client", "d" * 32, 1_000, 1_000.0)
    assert len(seen) == 3


def test_only_a_request_whose_signature_holds_is_remembered():
    key = generate_private_key()
    auth = Ed25519Authenticator(key, {}, {"client": key.public_key()})
    impostor = Ed25519Authenticator(generate_private_key(), {}, {})
    seen = SeenNonces()

    asked = NodeRequest("/logs/client/1", 0)

    def check(headers, request=asked, seen=None):
        return check_log_request(headers, request, NodeAccess(auth.verify_client, {"client"}, seen), 1_000.0)

    assert check(signed_log_headers(impostor.sign, "client", asked, 1_000.0), seen=seen) == "bad signature"
    assert len(seen) == 0
    good = signed_log_headers(auth.sign, "client", asked, 1_000.0)
    assert check(good, NodeRequest("/logs/client/1", 0, "HEAD")) == "bad signature"  # the method is signed too
    assert check(good, NodeRequest("/logs/client/1", 1)) == "bad signature"  # and the node
    assert check(good, seen=seen) is None
    assert "already used" in check(good, seen=seen)
