"""Canonical byte encoding and digests.

Every signature and every digest in pbft-ci is computed over the canonical
JSON form of a value: keys sorted, no insignificant whitespace, ASCII only.
Two honest parties that hold equal values therefore hash and sign the same
bytes, whatever order their dictionaries were built in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def digest(value: Any) -> str:
    """SHA-256 of the canonical encoding, as lowercase hex."""
    return hashlib.sha256(canonical(value)).hexdigest()
