"""A verdict for in-toto's stock verifier: the network owner's layout and the nodes' links.

The layout (`layout`) is the network owner's statement of who may attest a
build: one step `build` whose functionaries are the network's nodes, with a
threshold of f+1, and an inspection that requires the statement file a
verifier holds to be the one the links name. The owner signs it once, with a
key of their own that no node holds (`scripts/owner.py`), and the client
hands it out with every build's links (`bundle`): `in-toto-verify` then
accepts the verdict only if f+1 distinct nodes signed links that agree
exactly (same commit, same statement) and the layout is the owner's and has
not expired.

Links and layout are in-toto's traditional signed metadata: a `signed`
object and signatures over its canonical JSON, with securesystemslib keyids.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta, timezone


from pbft.attestation import (
    STATEMENT_FILE,
    STEP_COMMAND,
    STEP_NAME,
    Signed,
    Signer,
    keyid,
    link_file_name,
    link_metablock,
    public_key_dict,
)
from shared.config import NetworkConfig
from shared.crypto import PrivateKey, sign_bytes, spki_pem
from pbft.encoding import canonical
from pbft.quorum import reply_quorum

LAYOUT_FILE = "network.layout"
INSPECTION_NAME = "statement"
DEFAULT_EXPIRY_DAYS = 365


def layout(config: NetworkConfig, expires: datetime, readme: str = "") -> dict:
    """The `signed` part of the network's layout: every node a functionary of `build`, threshold f+1."""
    keys = {keyid(node.public_key): {**public_key_dict(node.public_key), "keyid": keyid(node.public_key)}
            for node in config.nodes}
    return {
        "_type": "layout",
        "expires": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readme": readme or f"pbft-ci network of {config.n} nodes: a verdict is f+1 = {reply_quorum(config.f)}"
                            " nodes' agreeing links for one build",
        "keys": keys,
        "steps": [{
            "_type": "step",
            "name": STEP_NAME,
            "threshold": reply_quorum(config.f),
            "pubkeys": sorted(keys),
            "expected_command": list(STEP_COMMAND),
            "expected_materials": [["ALLOW", "git/*"], ["DISALLOW", "*"]],
            "expected_products": [["CREATE", STATEMENT_FILE], ["DISALLOW", "*"]],
        }],
        "inspect": [{
            "_type": "inspection",
            "name": INSPECTION_NAME,
            # Runs nothing: an inspection records the files of the folder in-toto-verify runs
            # in, so that its rules can hold the statement there to the links' product.
            "run": ["true"],
            "expected_materials": [
                ["REQUIRE", STATEMENT_FILE],
                ["MATCH", STATEMENT_FILE, "WITH", "PRODUCTS", "FROM", STEP_NAME],
                ["DISALLOW", STATEMENT_FILE],
                ["ALLOW", "*"],
            ],
            "expected_products": [["ALLOW", "*"]],
        }],
    }


def default_expiry(now: datetime, days: int = DEFAULT_EXPIRY_DAYS) -> datetime:
    return now.replace(microsecond=0) + timedelta(days=days)


def sign_layout(signed: dict, owner_key: PrivateKey) -> dict:
    """The owner's signature over the layout's canonical JSON, in in-toto's metadata form."""
    owner_hex = owner_key.public_key().raw.hex()
    return {"signed": signed, "signatures": [{"keyid": keyid(owner_hex), "sig": sign_bytes(owner_key, canonical(signed))}]}


def public_key_pem(public_key_hex: str) -> str:
    """An Ed25519 public key as SubjectPublicKeyInfo PEM: what `in-toto-verify --verification-keys` reads."""
    return spki_pem(bytes.fromhex(public_key_hex)) + "\n"


def metadata_bytes(metadata: dict) -> bytes:
    """Metadata as a file: compact, sorted JSON, so every byte of it is one that counts."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("utf-8")


def link_files(attestation: Signed, found: list[Signer]) -> dict[str, bytes]:
    return {
        link_file_name(signer.keyid): metadata_bytes(link_metablock(attestation.link, signer.keyid, signer.link_sig))
        for signer in found
    }


def bundle(attestation: Signed, found: list[Signer], layout_bytes: bytes) -> bytes:
    """A tar of the layout, one link per signer and the statement: a folder to run in-toto-verify in."""
    files = {LAYOUT_FILE: layout_bytes, **link_files(attestation, found), STATEMENT_FILE: attestation.payload}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
