"""An OpenID Connect ID token, checked: its JWS signature against the provider's published
keys (RS256 or ES256, with pycryptodome), then its claims (OpenID Connect Core 3.1.3.7).

Nothing in a token is trusted before its signature checks: the header only says which
published key to try, and an algorithm other than the two (`none`, an HMAC keyed with
a public key) is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any


ALGORITHMS = ("RS256", "ES256")
# Clocks of the provider and the client may differ this much.
LEEWAY_S = 120
MAX_TOKEN_CHARS = 16 * 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class IdTokenError(ValueError):
    """An ID token that proves nothing: `reason` says the first thing wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKey(IdTokenError):
    """The token names a key the provider's published keys lack: they may have rotated since."""


def checked_claims(token: Any, keys: dict, *, issuer: str, client_id: str, nonce: str, now: float) -> dict:
    """The claims of `token` if it is signed by one of `keys` (a JWKS) and was issued by
    `issuer` to `client_id` for the sign-in of `nonce`, and is valid at `now`."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise IdTokenError("the ID token is not a compact JWS")
    header_part, payload_part, signature_part = token.split(".")
    header = _json(header_part, "header")
    if header.get("alg") not in ALGORITHMS:
        raise IdTokenError(f"the ID token's algorithm is not one of {', '.join(ALGORITHMS)}")
    key = _key(keys, header)
    signed = f"{header_part}.{payload_part}".encode("ascii")
    if not _verifies(key, header["alg"], signed, _bytes(signature_part, "signature")):
        raise IdTokenError("the ID token's signature does not verify with the provider's key")
    claims = _json(payload_part, "payload")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer:
        raise IdTokenError("the ID token was issued by another provider")
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
        raise IdTokenError("the ID token was issued to another client")
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, (int, float)) or expires <= now - LEEWAY_S:
        raise IdTokenError("the ID token has expired")
    if not isinstance(issued, (int, float)) or issued > now + LEEWAY_S:
        raise IdTokenError("the ID token was issued in the future")
    if claims.get("nonce") != nonce:
        raise IdTokenError("the ID token is for another sign-in (its nonce differs)")
    return claims


def _key(keys: dict, header: dict) -> dict:
    """The published key the header names (by `kid`, or the one key of its type)."""
    wanted = "RSA" if header["alg"] == "RS256" else "EC"
    candidates = [key for key in keys.get("keys", []) if isinstance(key, dict) and key.get("kty") == wanted
                  and key.get("use", "sig") == "sig"]
    if "kid" in header:
        candidates = [key for key in candidates if key.get("kid") == header["kid"]]
    if len(candidates) != 1:
        raise UnknownKey("the provider publishes no key that the ID token names")
    return candidates[0]


def _verifies(key: dict, algorithm: str, signed: bytes, signature: bytes) -> bool:
    # Imported here, at a sign-in: pycryptodome's import costs a client's start a quarter of a second.
    from Crypto.Hash import SHA256
    from Crypto.PublicKey import ECC, RSA
    from Crypto.Signature import DSS, pkcs1_15

    digest = SHA256.new(signed)
    try:
        if algorithm == "RS256":
            public = RSA.construct((_integer(key, "n"), _integer(key, "e")))
            pkcs1_15.new(public).verify(digest, signature)
        else:
            if key.get("crv") != "P-256":
                return False
            public = ECC.construct(curve="P-256", point_x=_integer(key, "x"), point_y=_integer(key, "y"))
            DSS.new(public, "fips-186-3").verify(digest, signature)
    except (ValueError, TypeError):
        return False
    return True


def _integer(key: dict, name: str) -> int:
    return int.from_bytes(_bytes(key.get(name), f"key {name}"), "big")


def _bytes(part: Any, what: str) -> bytes:
    if not isinstance(part, str):
        raise IdTokenError(f"the ID token's {what} is missing")
    if not _BASE64URL.fullmatch(part):  # the decoder would skip what is not base64url
        raise IdTokenError(f"the ID token's {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise IdTokenError(f"the ID token's {what} is not base64url") from None


def _json(part: str, what: str) -> dict:
    data = _bytes(part, what)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise IdTokenError(f"the ID token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise IdTokenError(f"the ID token's {what} is not an object")
    return value
