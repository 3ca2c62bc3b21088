"""A node's signed word on a build's test outcomes.

A node serves the outcomes it read from a build's JUnit reports
(builder/workspace/testreports.py, node/artifactroute.py) with its Ed25519
signature, by the key its protocol messages are signed with, over

    b"pbft-ci test outcomes v1\\0" + canonical JSON of
    {node, build, repository, commit, digest}

`digest` is the sha256 of the canonical outcomes {test id: outcome}
(builder/reports/junit.py `outcomes_digest`), so the signature holds the
node to every outcome: whoever has the outcomes, this statement and the
network's public keys can check it offline. `build` is the node's build id
(`{client}-{timestamp}`) and `commit` the commit it built, so a statement
made for one build holds for no other. The prefix keeps these signatures
apart from every other signature in pbft-ci (protocol messages are canonical
JSON, DSSE envelopes start "DSSEv1", runners' reports have their own).

A test that passed on one node and failed on another of the same build, each
outcome signed, is proven flaky in this sense: either the test's outcome
depends on where it ran, or a node signed an outcome it did not read, and
its signature names it.
"""

from __future__ import annotations

import re
from typing import Callable

from pbft.encoding import canonical
from shared.crypto import PublicKey, verify_bytes

CONTEXT = b"pbft-ci test outcomes v1\0"
SIGNED_FIELDS = ("node", "build", "repository", "commit", "digest")
_SIGNATURE = re.compile(r"[0-9a-f]{128}")


def statement(node: int, record: dict) -> dict:
    """What node `node` signs of its test record `record` (its `build`, `repository`, `commit`, `digest`)."""
    return {"node": node, **{key: record.get(key) for key in SIGNED_FIELDS if key != "node"}}


def signed_bytes(said: dict) -> bytes:
    return CONTEXT + canonical({key: said.get(key) for key in SIGNED_FIELDS})


def sign_record(sign_bytes: Callable[[bytes], str], node: int, record: dict) -> dict:
    """`record` as node `node` serves it: with its statement and the statement's signature."""
    said = statement(node, record)
    return {**record, "node": node, "statement": said, "signature": sign_bytes(signed_bytes(said))}


def verify_statement(public_key: PublicKey, said: object, signature: object) -> bool:
    """Whether `signature` is the key's over the statement `said`."""
    if not isinstance(said, dict) or set(said) != set(SIGNED_FIELDS):
        return False
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        return False
    return verify_bytes(public_key, signed_bytes(said), signature)
