"""A begun sign-in, kept by the browser that began it, not by the client.

`GET /login` makes a sign-in's state, nonce and PKCE verifier and hands them to
the browser in a cookie (with where it returns to and when it began), sealed
with AES-256-GCM under a key the client makes when it starts: the browser can
neither read the verifier nor change a byte without the seal breaking. At the
return the `state` the provider hands back must be the state of a cookie this
browser carries, so a return URL made by someone else's sign-in (login CSRF:
an attacker signs in at the provider, stops before the return and hands its
URL to a victim) finds no cookie in the victim's browser and signs nobody in.

Nothing is kept on the client's side between the two, so a pending sign-in
costs the client nothing and no number of `GET /login` can push out another
person's. The key lives in memory only: a restart of the client voids the
sign-ins under way (their people sign in again), which is cheaper than a key
on disk that would have to be kept secret. Each sign-in's cookie is named by
the start of its state, so sign-ins begun in several tabs of one browser each
find their own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass


from client.intake import WebhookError

PENDING_S = 600  # how long a begun sign-in may be finished: the cookie's Max-Age, and checked at the return
COOKIE_PREFIX = "pbft_signin_"
NAME_CHARS = 16  # of the state, in the cookie's name: enough that one browser's tabs never share one
# Refused unread: a sealed sign-in is about 250 characters, 2,900 with the longest next path (2,000).
MAX_SEALED_CHARS = 4096
# The seal also covers what it is, so that nothing else this key might ever seal passes for a sign-in.
_PURPOSE = b"pbft-ci pending sign-in v1"
_NONCE_BYTES, _TAG_BYTES = 12, 16
# A begin time ahead of the client's clock by more than this is no begin of this client's.
_CLOCK_SLACK_S = 5.0

UNKNOWN = ("this browser did not begin this sign-in, or began it more than ten minutes ago or before the "
           "client restarted: sign in again")


@dataclass(frozen=True)
class Pending:
    """A sign-in begun and not yet finished: what its return is checked against."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    begun_at: float

    @classmethod
    def new(cls, next_path: str, now: float) -> Pending:
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        return cls(state, nonce, verifier, next_path, now)


def cookie_name(state: str) -> str:
    """The cookie a sign-in of `state` is kept in; a state from a query may be anything, and a
    name made of it is only ever looked up, never set, unless this client made the state."""
    return COOKIE_PREFIX + state[:NAME_CHARS]


class Sealer:
    """Seals pending sign-ins for the browser and opens what comes back, with one key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = secrets.token_bytes(32) if key is None else key
        assert len(self._key) == 32

    def sealed(self, pending: Pending) -> str:
        """`pending` as a cookie's value: base64url of the GCM nonce, the ciphertext and its tag."""
        plain = json.dumps([pending.state, pending.nonce, pending.verifier, pending.next_path, pending.begun_at],
                           separators=(",", ":")).encode("utf-8")
        cipher = _aes_gcm(self._key, secrets.token_bytes(_NONCE_BYTES))
        cipher.update(_PURPOSE)
        sealed, tag = cipher.encrypt_and_digest(plain)
        return base64.urlsafe_b64encode(cipher.nonce + sealed + tag).rstrip(b"=").decode("ascii")

    def opened(self, value: str | None, state: str, now: float) -> Pending:
        """The sign-in the browser's cookie `value` holds, if it is the one `state` names, sealed
        by this key, and begun at most PENDING_S ago; else a 400 that says to sign in again."""
        pending = self._unsealed(value)
        if pending is None or not hmac.compare_digest(pending.state.encode("ascii"),
                                                      state.encode("utf-8", "surrogatepass")):
            raise WebhookError(400, UNKNOWN)
        if not now - PENDING_S <= pending.begun_at <= now + _CLOCK_SLACK_S:
            raise WebhookError(400, "this sign-in began more than ten minutes ago: sign in again")
        return pending

    def _unsealed(self, value: str | None) -> Pending | None:
        if not value or len(value) > MAX_SEALED_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            if len(raw) <= _NONCE_BYTES + _TAG_BYTES:
                return None
            cipher = _aes_gcm(self._key, raw[:_NONCE_BYTES])
            cipher.update(_PURPOSE)
            plain = cipher.decrypt_and_verify(raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:])
        except (ValueError, binascii.Error):  # not base64, or a seal that does not hold
            return None
        # Sealed by this key, so made by this client: its shape is the one `sealed` wrote.
        state, nonce, verifier, next_path, begun_at = json.loads(plain)
        return Pending(state, nonce, verifier, next_path, float(begun_at))


def _aes_gcm(key: bytes, nonce: bytes):
    """AES-GCM under `key`: pycryptodome's, imported at the first sign-in, not at the client's start."""
    from Crypto.Cipher import AES

    return AES.new(key, AES.MODE_GCM, nonce=nonce)
