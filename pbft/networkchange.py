"""A change of the network document, as a request carries it through the order.

The network document (shared/networkdoc.py) is what every node must hold alike. It changes
only through the order: an operation carries a `NetworkChange` — the whole new document, the
digest of the document it replaces, and the signatures of owners over both digests — and
every node checks and applies it where it executes (`pbft.networks.NetworkState`), so that
all of them switch at the same point of the order, whether they executed it, learnt it by
state transfer or restored it after a restart.

The whole document rather than a patch: owners sign exactly what the nodes will run, and
each node's digest of it is the same whatever tool wrote it. Naming the document it replaces
makes a change good once: replayed later, or after another change, it names a digest the
network no longer runs and is refused.
"""

from __future__ import annotations

import functools
import json
import math
import re

from pbft.encoding import canonical, digest
from pbft.wire import HEX64, SIG, ListOf, Struct, Text, struct, wire

# Part of what is hashed, so that a later change of the document's shape is a new digest.
DOCUMENT_FORMAT = 1
MAX_DOCUMENT_CHARS = 256 * 1024  # a network of a hundred nodes and repositories is far less
MAX_OWNERS = 16
OWNER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OWNER_NAME = Text(OWNER_NAME_PATTERN)


def document_digest(document: dict) -> str:
    """The digest of a network document: what nodes sign into their checkpoints and replies."""
    return digest({"format": DOCUMENT_FORMAT, "network": document})


@struct
class OwnerSignature:
    """One owner's Ed25519 signature of a change (`NetworkChange.signed_payload`)."""

    owner: str = wire(OWNER_NAME)
    sig: str = wire(SIG)


@struct
class NetworkChange:
    """The network document `document` (canonical JSON) in place of the one whose digest is `base`."""

    base: str = wire(HEX64)
    document: str = wire(Text(limit=MAX_DOCUMENT_CHARS))
    signatures: tuple[OwnerSignature, ...] = wire(ListOf(Struct(OwnerSignature), MAX_OWNERS), default=())

    def parsed(self) -> dict | None:
        """The new document, or None if the text is not a JSON object the canonical encoding
        can hash: NaN, an infinite number or nesting too deep would make every node that
        hashes it raise, where a refusal is due. Read once: checking, applying and replaying
        a change all ask for it."""
        return self._parsed

    @functools.cached_property
    def _parsed(self) -> dict | None:
        try:
            document = json.loads(self.document, parse_constant=_refuse, parse_float=_finite)
            if not isinstance(document, dict):
                return None
            canonical(document)
        except (ValueError, RecursionError):
            return None
        return document

    def target(self) -> str:
        """The digest of the new document ("" when it is not one)."""
        return self._target

    @functools.cached_property
    def _target(self) -> str:
        document = self.parsed()
        return "" if document is None else document_digest(document)

    def signed_payload(self) -> dict:
        """What each owner signs: both digests, so a signature is good for this one step."""
        return change_payload(self.base, self.target())


def _refuse(constant: str) -> float:
    raise ValueError(f"{constant} is not a number a document may hold")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def change_payload(base: str, target: str) -> dict:
    return {"type": "network-change", "base": base, "network": target}
