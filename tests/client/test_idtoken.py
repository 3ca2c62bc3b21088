"""ID tokens checked as OpenID Connect Core 3.1.3.7 says (client.idtoken), with keys made here:
what a provider signs passes, and each way a token can be forged, replayed or misdirected is
refused with its reason."""

import base64
import json

import pytest
from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import DSS, pkcs1_15

from client.idtoken import IdTokenError, checked_claims

ISSUER, CLIENT, NONCE, NOW = "https://id.example.test", "pbft-ci", "n-0nce", 1_800_000_000.0
RSA_KEY = RSA.generate(2048)
EC_KEY = ECC.generate(curve="P-256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def number(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


KEYS = {"keys": [
    {"kty": "RSA", "kid": "r1", "use": "sig", "n": number(RSA_KEY.n), "e": number(RSA_KEY.e)},
    {"kty": "EC", "kid": "e1", "crv": "P-256", "x": number(int(EC_KEY.pointQ.x)), "y": number(int(EC_KEY.pointQ.y))},
]}


def token(claims: dict | None = None, *, alg: str = "RS256", kid: str | None = None, key=None) -> str:
    body = {"iss": ISSUER, "aud": CLIENT, "sub": "alice", "nonce": NONCE, "iat": NOW - 5, "exp": NOW + 300,
            **(claims or {})}
    header = {"alg": alg, "kid": kid or ("r1" if alg == "RS256" else "e1")}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}".encode()
    digest = SHA256.new(signing_input)
    if alg == "RS256":
        signature = pkcs1_15.new(key or RSA_KEY).sign(digest)
    elif alg == "ES256":
        signature = DSS.new(key or EC_KEY, "fips-186-3").sign(digest)
    else:
        signature = b""
    return f"{signing_input.decode()}.{b64(signature)}"


def check(value: str) -> dict:
    return checked_claims(value, KEYS, issuer=ISSUER, client_id=CLIENT, nonce=NONCE, now=NOW)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_token_the_provider_signed_for_this_sign_in_gives_its_claims(alg):
    assert check(token({"preferred_username": "alice"}, alg=alg))["preferred_username"] == "alice"
    assert check(token({"aud": ["other", CLIENT], "azp": CLIENT}, alg=alg))["sub"] == "alice"


FORGED = {  # each case by name: the tokens differ from one run (and one worker) to the next
    "another key": (token(key=RSA.generate(2048)), "signature does not verify"),
    "another EC key": (token(alg="ES256", key=ECC.generate(curve="P-256")), "signature does not verify"),
    "alg none": (token(alg="none"), "algorithm is not one of RS256, ES256"),
    "alg HS256": (token(alg="HS256"), "algorithm is not one of RS256, ES256"),
    "unknown kid": (token(kid="unknown"), "publishes no key that the ID token names"),
    "another issuer": (token({"iss": "https://evil.example.test"}), "issued by another provider"),
    "another audience": (token({"aud": "someone-else"}), "issued to another client"),
    "several audiences, no azp": (token({"aud": ["someone-else", CLIENT]}), "issued to another client"),
    "expired": (token({"exp": NOW - 600}), "has expired"),
    "from the future": (token({"iat": NOW + 3600}), "issued in the future"),
    "another nonce": (token({"nonce": "another sign-in's"}), "for another sign-in"),
    "two parts": ("a.b", "not a compact JWS"),
    "not base64url": ("!!.!!.!!", "not base64url"),
    "not text": (7, "not a compact JWS"),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_a_forged_replayed_or_misdirected_token_is_refused_with_its_reason(case):
    value, reason = FORGED[case]
    with pytest.raises(IdTokenError, match=reason):
        check(value)


def test_a_changed_claim_breaks_the_signature():
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = b64(json.dumps({**claims, "sub": "mallory"}).encode())
    with pytest.raises(IdTokenError, match="signature does not verify"):
        check(f"{header}.{forged}.{signature}")
