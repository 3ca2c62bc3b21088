"""Fast signatures for simulation: keyed SHA-512 instead of Ed25519.

Ed25519 costs about a millisecond per sign-and-verify, which would make a
10,000-seed run take hours. A keyed hash keeps what the simulation needs: a
principal that lacks a secret cannot produce a signature that verifies, and
the 128 hex digits pass the codec's signature format check.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from pbft.encoding import canonical


def keyed_signature(secret: bytes, payload: dict) -> str:
    return hashlib.sha512(secret + canonical(payload)).hexdigest()


@dataclass(frozen=True)
class SimKeys:
    """Every principal's secret; each authenticator signs with one of them."""

    node_secrets: dict[int, bytes]
    client_secrets: dict[str, bytes]
    # Owners of the network document (`pbft.networks`), by public key: a keyed hash has none,
    # so a key here is the hex of the hash of its secret.
    owner_secrets: dict[str, bytes] = field(default_factory=dict)

    @staticmethod
    def owner_key(secret: bytes) -> str:
        return hashlib.sha256(secret).hexdigest()

    @classmethod
    def generate(cls, rng: random.Random, n: int, clients: list[str]) -> SimKeys:
        return cls(
            {node: rng.randbytes(32) for node in range(n)},
            {client: rng.randbytes(32) for client in clients},
        )

    def for_node(self, node: int) -> SimAuthenticator:
        return SimAuthenticator(self, self.node_secrets[node])

    def for_client(self, client: str) -> SimAuthenticator:
        return SimAuthenticator(self, self.client_secrets[client])


class SimAuthenticator:
    """Implements `pbft.authenticator.Authenticator`; verification recomputes with the claimed signer's secret."""

    def __init__(self, keys: SimKeys, secret: bytes) -> None:
        self._keys = keys
        self._secret = secret

    def sign(self, payload: dict) -> str:
        return keyed_signature(self._secret, payload)

    def sign_bytes(self, data: bytes) -> str:
        return hashlib.sha512(self._secret + data).hexdigest()

    def verify_node(self, node_id: int, payload: dict, sig: str) -> bool:
        secret = self._keys.node_secrets.get(node_id)
        return secret is not None and keyed_signature(secret, payload) == sig

    def verify_client(self, client: str, payload: dict, sig: str) -> bool:
        secret = self._keys.client_secrets.get(client)
        return secret is not None and keyed_signature(secret, payload) == sig

    def sign_as(self, public_key: str) -> bool:
        return not public_key  # simulated nodes' keys are their authenticators' by id

    def verify_key(self, public_key: str, payload: dict, sig: str) -> bool:
        secret = self._keys.owner_secrets.get(public_key)
        return secret is not None and keyed_signature(secret, payload) == sig
