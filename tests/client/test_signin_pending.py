"""A begun sign-in sealed into its browser's cookie (client.signinpending): opened only whole,
by the key that sealed it, for its own state, within ten minutes; unreadable meanwhile."""

import base64

import pytest

from client.intake import WebhookError
from client.signinpending import COOKIE_PREFIX, PENDING_S, Pending, Sealer, cookie_name

NOW = 1_760_000_000.0
NOT_BEGUN_HERE = "this browser did not begin this sign-in"


def refusal(sealer: Sealer, value: str | None, state: str, now: float = NOW) -> str:
    with pytest.raises(WebhookError) as refused:
        sealer.opened(value, state, now)
    assert refused.value.status == 400
    return refused.value.reason


def test_a_sealed_sign_in_opens_as_it_was_within_ten_minutes_and_hides_its_secrets():
    sealer, pending = Sealer(), Pending.new("/dashboard/builds/4?x=\"a;b\"", NOW)
    value = sealer.sealed(pending)
    assert sealer.opened(value, pending.state, NOW) == pending
    assert sealer.opened(value, pending.state, NOW + PENDING_S) == pending
    assert sealer.sealed(pending) != value  # a fresh GCM nonce each time
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    for secret in (pending.verifier, pending.nonce, pending.state, "/dashboard"):
        assert secret.encode() not in raw and secret not in value
    assert cookie_name(pending.state) == COOKIE_PREFIX + pending.state[:16]


def test_a_sign_in_older_than_ten_minutes_or_from_the_future_is_refused():
    sealer, pending = Sealer(), Pending.new("/dashboard", NOW)
    value = sealer.sealed(pending)
    assert refusal(sealer, value, pending.state, NOW + PENDING_S + 0.5) == (
        "this sign-in began more than ten minutes ago: sign in again")
    assert "more than ten minutes" in refusal(sealer, value, pending.state, NOW - 60)


def test_a_cookie_changed_anywhere_sealed_by_another_key_or_for_another_state_is_refused():
    sealer, pending = Sealer(), Pending.new("/dashboard", NOW)
    value = sealer.sealed(pending)
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    for index in range(len(raw)):
        changed = raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1:]
        forged = base64.urlsafe_b64encode(changed).rstrip(b"=").decode()
        assert NOT_BEGUN_HERE in refusal(sealer, forged, pending.state), index
    assert NOT_BEGUN_HERE in refusal(Sealer(), value, pending.state)  # a restarted client's key
    assert NOT_BEGUN_HERE in refusal(sealer, value, Pending.new("/dashboard", NOW).state)
    assert NOT_BEGUN_HERE in refusal(sealer, value, pending.state + "x")
    for garbage in (None, "", "not base64 ***", "AAAA", "A" * 5000, value[:-8], "\udcff"):
        assert NOT_BEGUN_HERE in refusal(sealer, garbage, pending.state)
