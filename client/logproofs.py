"""Checking what a node serves of the verdict log (docs/verdict-log.md), offline, from the
network's public keys alone: a co-signed head, a verdict's inclusion in it, and a later head's
consistency with an earlier one. Nothing is taken on the word of the node that served it.

A head is the stable checkpoint that signs it: `{"seq", "size", "root", "checkpoints"}`, the
checkpoints as their wire form. It is co-signed when 2f+1 distinct configured nodes signed
checkpoints at `seq` that all name this size and root (and one state digest and network).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pbft.ci.verdictlog import leaf_data
from pbft.encoding import canonical
from pbft.merkle import EMPTY_ROOT, HASH_BYTES, leaf_hash, verify_consistency, verify_inclusion
from pbft.messages import Checkpoint, MessageError, decode
from pbft.quorum import commit_quorum
from shared.config import NetworkConfig
from shared.crypto import parse_public_key, verify_bytes

MAX_PROOF_HASHES = 64  # a tree of 2**64 leaves needs no more


class LogProofError(ValueError):
    """A head or proof that does not show what it claims; `reason` says the first thing wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Head:
    """A co-signed head: the log's first `size` leaves have root `root`, as the stable
    checkpoint at `seq` signed by `signers` says."""

    seq: int
    size: int
    root: bytes
    signers: tuple[int, ...]

    def line(self) -> str:
        return (f"head at checkpoint {self.seq}: {self.size} verdicts, root {self.root.hex()}, co-signed by nodes"
                f" {', '.join(map(str, self.signers))}")


def check_head(data: Any, config: NetworkConfig) -> Head:
    """A head as served, checked to be co-signed by 2f+1 of `config`'s nodes; LogProofError if not."""
    if not isinstance(data, dict) or set(data) != {"seq", "size", "root", "checkpoints"}:
        raise LogProofError("a head is an object with exactly checkpoints, root, seq and size")
    seq, size, root = data["seq"], data["size"], _hash(data["root"], "root")
    if type(seq) is not int or type(size) is not int or seq < 0 or size < 0:
        raise LogProofError("a head's seq and size are non-negative integers")
    if not isinstance(data["checkpoints"], list) or len(data["checkpoints"]) > len(config.nodes):
        raise LogProofError("a head's checkpoints are a list, at most one per node")
    keys = {node.id: node.public_key for node in config.nodes}
    signers: set[int] = set()
    vouched = set()
    for wire in data["checkpoints"]:
        try:
            checkpoint = decode(wire)
        except MessageError as error:
            raise LogProofError(f"a checkpoint does not decode: {error}") from None
        if not isinstance(checkpoint, Checkpoint) or checkpoint.seq != seq:
            raise LogProofError(f"a head at checkpoint {seq} holds only checkpoints at {seq}")
        if (checkpoint.log_size, checkpoint.log_root or EMPTY_ROOT.hex()) != (size, root.hex()):
            raise LogProofError(f"node {checkpoint.sender}'s checkpoint signs another head"
                                f" (size {checkpoint.log_size}, root {checkpoint.log_root[:16] or '-'})")
        if checkpoint.sender not in keys or checkpoint.sender in signers:
            raise LogProofError(f"checkpoint from unknown or repeated node {checkpoint.sender}")
        if not verify_bytes(parse_public_key(keys[checkpoint.sender]), canonical(checkpoint.payload()), checkpoint.sig):
            raise LogProofError(f"node {checkpoint.sender}'s checkpoint: bad signature")
        signers.add(checkpoint.sender)
        vouched.add((checkpoint.state_digest, checkpoint.network))
    if len(vouched) > 1:
        raise LogProofError("the checkpoints name different states")
    needed = commit_quorum(len(config.nodes), config.f)
    if len(signers) < needed:
        raise LogProofError(f"co-signed by {len(signers)} nodes, {needed} needed: not a head the network signed")
    return Head(seq, size, root, tuple(sorted(signers)))


def check_inclusion(data: Any, head: Head, client: str, timestamp: int, agreed: dict) -> int:
    """That the verdict `agreed` of client `client`'s request `timestamp` is in the tree of `head`:
    `data` is a node's `GET /log/inclusion` answer. Returns the verdict's position."""
    if not isinstance(data, dict) or not {"position", "seq", "size", "proof"} <= set(data):
        raise LogProofError("an inclusion proof is an object with position, seq, size and proof")
    position, seq = data["position"], data["seq"]
    if type(position) is not int or type(seq) is not int or data["size"] != head.size:
        raise LogProofError(f"an inclusion proof for a tree of {data['size']!r} verdicts, not the head's {head.size}")
    path = _hashes(data["proof"])
    leaf = leaf_hash(leaf_data(seq, client, timestamp, agreed))
    if not verify_inclusion(leaf, position, head.size, path, head.root):
        raise LogProofError(f"the verdict is not at position {position} of the head's tree")
    return position


def check_consistency(data: Any, old: Head, new: Head) -> None:
    """That `new`'s tree extends `old`'s: `data` is a node's `GET /log/consistency` answer."""
    if not isinstance(data, dict) or data.get("first") != old.size or data.get("second") != new.size:
        raise LogProofError(f"a consistency proof from {old.size} to {new.size} verdicts is needed")
    if not verify_consistency(old.size, old.root, new.size, new.root, _hashes(data.get("proof"))):
        raise LogProofError(f"the head of {new.size} verdicts does not extend the head of {old.size}")


def _hashes(value: Any) -> list[bytes]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise LogProofError(f"a proof is a list of at most {MAX_PROOF_HASHES} hashes")
    return [_hash(item, "proof") for item in value]


def _hash(value: Any, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != HASH_BYTES:
        raise LogProofError(f"{name}: a SHA-256 hash is 64 hex digits")
    return raw
