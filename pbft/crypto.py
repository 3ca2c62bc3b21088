"""Ed25519 signatures over canonical payloads (pycryptodome).

Private keys live in PEM files that are generated on the machine that uses
them and never leave it; public keys are 32 raw bytes, written as hex in the
network configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from pbft.encoding import canonical


def generate_private_key() -> ECC.EccKey:
    return ECC.generate(curve="ed25519")


def public_key_hex(private_key: ECC.EccKey) -> str:
    return private_key.public_key().export_key(format="raw").hex()


def save_private_key(private_key: ECC.EccKey, path: Path) -> None:
    """Write the key readable by its owner only; never replace an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key.export_key(format="PEM"))


def load_private_key(path: Path) -> ECC.EccKey:
    return ECC.import_key(Path(path).read_text())


def parse_public_key(text: str) -> ECC.EccKey:
    """Raise ValueError unless `text` is 64 hex digits naming an Ed25519 point."""
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    return eddsa.import_public_key(raw)


def sign_bytes(private_key: ECC.EccKey, data: bytes) -> str:
    return eddsa.new(private_key, "rfc8032").sign(data).hex()


def verify_bytes(public_key: ECC.EccKey, data: bytes, sig: str) -> bool:
    try:
        signature = bytes.fromhex(sig)
        eddsa.new(public_key, "rfc8032").verify(data, signature)
    except (ValueError, TypeError):
        return False
    return True


class Ed25519Authenticator:
    """Signs as one principal and verifies every node and client of a network."""

    def __init__(
        self,
        private_key: ECC.EccKey | None,
        node_keys: Mapping[int, ECC.EccKey],
        client_keys: Mapping[str, ECC.EccKey],
    ) -> None:
        self._private_key = private_key
        self._node_keys = dict(node_keys)
        self._client_keys = dict(client_keys)

    def sign(self, payload: dict) -> str:
        assert self._private_key is not None, "this authenticator only verifies"
        return sign_bytes(self._private_key, canonical(payload))

    def verify_node(self, node_id: int, payload: dict, sig: str) -> bool:
        key = self._node_keys.get(node_id)
        return key is not None and verify_bytes(key, canonical(payload), sig)

    def verify_client(self, client: str, payload: dict, sig: str) -> bool:
        key = self._client_keys.get(client)
        return key is not None and verify_bytes(key, canonical(payload), sig)
