"""What the protocol core needs from cryptography, and nothing else.

`shared.crypto.Ed25519Authenticator` implements it for nodes and clients; the
simulator swaps in a cheaper one. Keeping the contract here keeps key files
and the crypto library out of the core's imports.
"""

from __future__ import annotations

from typing import Protocol


class Authenticator(Protocol):
    def sign(self, payload: dict) -> str: ...

    def sign_bytes(self, data: bytes) -> str:
        """Sign bytes whose format another standard fixes (DSSE, in-toto links: `pbft.attestation`)."""
        ...

    def verify_node(self, node_id: int, payload: dict, sig: str) -> bool: ...

    def verify_client(self, client: str, payload: dict, sig: str) -> bool: ...

    def verify_key(self, public_key: str, payload: dict, sig: str) -> bool:
        """Check a signature by a key the network document names (an owner's: `pbft.networks`)."""
        ...

    def sign_as(self, public_key: str) -> bool:
        """Sign from now on with the private key of `public_key`, the one the network document
        gives this node (a change re-keyed it: `pbft.epochs`); False if this authenticator
        holds no such key, and signs as before."""
        ...
