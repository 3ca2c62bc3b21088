"""Ed25519 signatures over canonical payloads.

Signing and verifying run in libsodium (PyNaCl): every message a node
receives carries a signature, and verification dominates a node's CPU, so
the fastest well-kept implementation is worth its dependency (measured
here: verify 43 µs against pycryptodome's 203 µs, sign 17 µs against 94 µs).
Both follow RFC 8032, so the signatures are byte-for-byte the same.
Key files stay PKCS#8 PEM. The one form an Ed25519 key takes there (RFC 8410: a fixed
DER prefix, then the 32 bytes) is read and written here, and checked a point of the
curve by RFC 8032's decoding (§5.1.3); pycryptodome reads any other PEM. Its import
costs a process about a quarter of a second of CPU (cffi parses its C declarations),
which every node, client and command used to pay as it started.

Private keys live in PEM files that are generated on the machine that uses
them and never leave it; public keys are 32 raw bytes, written as hex in the
network configuration.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

import nacl.exceptions
import nacl.signing

from pbft.encoding import canonical
from shared.boundedread import MAX_SECRET_FILE_BYTES, read_bounded


# Parsed keys an authenticator keeps by their hex (`Ed25519Authenticator.verify_key`): the
# members and owners of a few network documents.
MAX_PARSED_KEYS = 1024
# Signatures an authenticator remembers having checked: a RESULT vote checked as it arrives is
# checked again in the verdict proof that carries it into the log (`pbft.ci.verdictlog`), on
# every node. Bounded, oldest forgotten first; only signatures that held are kept.
MAX_VERIFIED = 4096

# RFC 8410's DER for an Ed25519 key, up to its 32 bytes: PKCS#8 (a private key's seed) and
# SubjectPublicKeyInfo (a public key).
PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")
# The curve (RFC 8032 §5.1): the field's prime and the constant d.
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def is_point(raw: bytes) -> bool:
    """Whether 32 bytes decode to a point of edwards25519 (RFC 8032 §5.1.3): y below p, and
    x² = (y² - 1) / (d·y² + 1) a square, with x = 0 only where the sign bit is clear."""
    if len(raw) != 32:
        return False
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P:
        return False
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return not raw[31] >> 7
    return pow(x2, (_P - 1) // 2, _P) == 1


def pem_der(text: str, label: str) -> bytes | None:
    """The DER inside a PEM block of `label` that is the whole of `text`, or None."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----" or lines[-1] != f"-----END {label}-----":
        return None
    try:
        return base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None


def spki_pem(raw: bytes) -> str:
    """An Ed25519 public key's 32 bytes as SubjectPublicKeyInfo PEM, as pycryptodome and OpenSSL
    write it; ValueError if they are not a point of the curve."""
    if not is_point(raw):
        raise ValueError("not a point of the Ed25519 curve")
    return pem_of(SPKI_ED25519 + raw, "PUBLIC KEY")


def raw_public_key_of_pem(text: str) -> bytes:
    """The 32 bytes of the Ed25519 public key in PEM `text`; ValueError if it holds none."""
    der = pem_der(text, "PUBLIC KEY")
    if der is not None and len(der) == len(SPKI_ED25519) + 32 and der.startswith(SPKI_ED25519):
        raw = der[len(SPKI_ED25519):]
    else:
        from Crypto.PublicKey import ECC  # another encoding of a key: pycryptodome reads it

        key = ECC.import_key(text)
        if key.curve != "Ed25519":
            raise ValueError("no Ed25519 public key")
        raw = key.public_key().export_key(format="raw")
    if not is_point(raw):
        raise ValueError("not a point of the curve")
    return raw


class PublicKey:
    """An Ed25519 public key; `raw` is its 32 bytes."""

    __slots__ = ("raw", "_verify_key")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._verify_key = nacl.signing.VerifyKey(raw)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._verify_key.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True


class PrivateKey:
    """An Ed25519 private key, held as its 32-byte seed (RFC 8032)."""

    __slots__ = ("seed", "_signing_key", "public_raw")

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_raw = bytes(self._signing_key.verify_key)  # its public key's 32 bytes

    def public_key(self) -> PublicKey:
        return PublicKey(self.public_raw)

    def sign(self, data: bytes) -> bytes:
        return self._signing_key.sign(data).signature


def generate_private_key() -> PrivateKey:
    return PrivateKey(os.urandom(32))


def public_key_hex(private_key: PrivateKey) -> str:
    return private_key.public_key().raw.hex()


def save_private_key(private_key: PrivateKey, path: Path) -> None:
    """Write the key readable by its owner only; never replace an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem(private_key))


def private_key_pem(private_key: PrivateKey) -> str:
    """PKCS#8 PEM, as pycryptodome and OpenSSL write an Ed25519 key."""
    return pem_of(PKCS8_ED25519 + private_key.seed, "PRIVATE KEY")


def pem_of(der: bytes, label: str) -> str:
    """`der` as a PEM block of `label`, on one line of base64 as a short key's is (`pem_der` reads it)."""
    dashes = "-" * 5
    return f"{dashes}BEGIN {label}{dashes}\n{base64.b64encode(der).decode()}\n{dashes}END {label}{dashes}"


def load_private_key(path: Path) -> PrivateKey:
    """The key in the PEM file at `path`; OSError when it cannot be read (or is no regular file
    of at most MAX_SECRET_FILE_BYTES), ValueError when it holds no Ed25519 private key."""
    data = read_bounded(path, MAX_SECRET_FILE_BYTES)
    der = pem_der(data.decode("latin-1"), "PRIVATE KEY")
    if der is not None and len(der) == len(PKCS8_ED25519) + 32 and der.startswith(PKCS8_ED25519):
        return PrivateKey(der[len(PKCS8_ED25519):])
    from Crypto.PublicKey import ECC  # another encoding of a key: pycryptodome reads it

    key = ECC.import_key(data)
    if key.curve != "Ed25519" or not key.has_private():
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return PrivateKey(key.seed)


def parse_public_key(text: str) -> PublicKey:
    """Raise ValueError unless `text` is 64 hex digits naming an Ed25519 point."""
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    if not is_point(raw):
        raise ValueError("not a point of the Ed25519 curve")
    return PublicKey(raw)


def sign_bytes(private_key: PrivateKey, data: bytes) -> str:
    return private_key.sign(data).hex()


def verify_bytes(public_key: PublicKey, data: bytes, sig: str) -> bool:
    try:
        signature = bytes.fromhex(sig)
    except (ValueError, TypeError):
        return False
    return len(signature) == 64 and public_key.verify(data, signature)


class Ed25519Authenticator:
    """Signs as one principal and verifies every node and client of a network."""

    def __init__(
        self,
        private_key: PrivateKey | None,
        node_keys: Mapping[int, PublicKey],
        client_keys: Mapping[str, PublicKey],
        spare_keys: Iterable[PrivateKey] = (),
    ) -> None:
        """`spare_keys`: private keys this node may be told to sign with instead (`sign_as`), the
        next key of a node whose key the owners replace."""
        self._private_key = private_key
        self._spare_keys = {key.public_key().raw.hex(): key for key in spare_keys}
        self._node_keys = dict(node_keys)
        self._client_keys = dict(client_keys)
        # Keys a network document names (nodes', owners'), parsed once: checking a point of the
        # curve costs more than the signature check itself.
        self._parsed: dict[str, PublicKey] = {key.raw.hex(): key for key in self._node_keys.values()}
        # Signatures checked so far, for GET /metrics: CPU no implementation of the protocol can shed.
        self.checks = 0
        # (key, signature, digest of the signed bytes) of signatures that held (MAX_VERIFIED)
        self._verified: dict[tuple[bytes, str, bytes], None] = {}

    def sign(self, payload: dict) -> str:
        return self.sign_bytes(canonical(payload))

    def sign_bytes(self, data: bytes) -> str:
        assert self._private_key is not None, "this authenticator only verifies"
        signature = sign_bytes(self._private_key, data)
        # Our own votes come back to us inside proofs that others carry (a verdict's, a view change's).
        self._remember((self._private_key.public_raw, signature, hashlib.sha256(data).digest()))
        return signature

    def add_spare_key(self, key: PrivateKey) -> None:
        """A next key made after the node started (scripts/network.py join --next)."""
        self._spare_keys.setdefault(key.public_key().raw.hex(), key)

    def sign_as(self, public_key: str) -> bool:
        if self._private_key is not None and self._private_key.public_key().raw.hex() == public_key:
            return True
        key = self._spare_keys.get(public_key)
        if key is None:
            return False
        self._private_key = key
        return True

    def verify_node(self, node_id: int, payload: dict, sig: str) -> bool:
        return self._verify(self._node_keys.get(node_id), payload, sig)

    def verify_client(self, client: str, payload: dict, sig: str) -> bool:
        return self._verify(self._client_keys.get(client), payload, sig)

    def verify_key(self, public_key: str, payload: dict, sig: str) -> bool:
        key = self._parsed.get(public_key)
        if key is None:
            try:
                key = parse_public_key(public_key)
            except (ValueError, TypeError):
                return False
            if len(self._parsed) >= MAX_PARSED_KEYS:
                self._parsed.pop(next(iter(self._parsed)))
            self._parsed[public_key] = key
        return self._verify(key, payload, sig)

    def _verify(self, key: PublicKey | None, payload: dict, sig: str) -> bool:
        if key is None:
            return False
        data = canonical(payload)
        seen = (key.raw, sig, hashlib.sha256(data).digest())
        if seen in self._verified:
            return True
        self.checks += 1
        if not verify_bytes(key, data, sig):
            return False
        self._remember(seen)
        return True

    def _remember(self, signed: tuple[bytes, str, bytes]) -> None:
        """(key, signature, SHA-256 of the signed bytes): a signature that holds."""
        if len(self._verified) >= MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]
        self._verified[signed] = None
