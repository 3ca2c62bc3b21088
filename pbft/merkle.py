"""A Merkle tree over an append-only list, hashed as RFC 9162 (Certificate Transparency 2.0)
hashes one, with its inclusion and consistency proofs and their checks.

A verdict log appends each certified verdict's bytes as a leaf; a tree head is the root over
the first `size` leaves. Whoever holds a head can check that a verdict is in it (an inclusion proof), and that
a later head extends an earlier one without rewriting it (a consistency proof), with no other
data than the proof: RFC 9162 section 2.1.

    leaf:  SHA-256(0x00 || bytes)
    node:  SHA-256(0x01 || left || right)
    empty: SHA-256("")

A tree of n > 1 leaves splits at k, the largest power of two below n: the left subtree holds
the first k leaves. Pure functions of bytes; no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# (start, count) -> the Merkle Tree Hash of leaves start .. start + count - 1. RFC 9162's
# recursion asks only for subtrees that start at a multiple of the largest power of two not
# above their size: where that size is a power of two, a perfect subtree.
Subtree = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below `n` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of `leaves` (their leaf hashes, in order)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom up: pairing left to right and carrying an odd last node up gives the same tree as
    # splitting at the largest power of two below n, top down.
    while len(level) > 1:
        paired = [node_hash(level[index], level[index + 1]) for index in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `leaves` (leaf hashes), leaf to root."""
    return inclusion_path(_subtrees_of(leaves), len(leaves), index)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first `old_size` of `leaves` is a prefix of the tree of all."""
    return consistency_path(_subtrees_of(leaves), len(leaves), old_size)


def inclusion_path(subtree: Subtree, size: int, index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves, leaf to root (RFC 9162,
    2.1.3.1), from `subtree`, asked once per level: a store that keeps its perfect subtrees
    answers each from a row, not from every leaf."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path, start, count = [], 0, size
    while count > 1:  # top down; the path runs bottom up
        k = _split(count)
        if index - start < k:
            path.append(subtree(start + k, count - k))
            count = k
        else:
            path.append(subtree(start, k))
            start, count = start + k, count - k
    path.reverse()
    return path


def consistency_path(subtree: Subtree, size: int, old_size: int) -> list[bytes]:
    """The proof that the tree of the first `old_size` leaves is a prefix of the tree of `size`
    (RFC 9162, 2.1.4.1: SUBPROOF), from `subtree`, asked once per level and once more."""
    if not 0 <= old_size <= size:
        raise ValueError(f"a tree of {size} has no earlier tree of {old_size}")
    if old_size in (0, size):
        return []
    path, start, count, m, complete = [], 0, size, old_size, True
    while m != count:
        k = _split(count)
        if m <= k:
            path.append(subtree(start + k, count - k))
            count = k
        else:
            path.append(subtree(start, k))
            start, count, m, complete = start + k, count - k, m - k, False
    if not complete:
        path.append(subtree(start, count))
    path.reverse()
    return path


def _subtrees_of(leaves: Sequence[bytes]) -> Subtree:
    return lambda start, count: root(leaves[start:start + count])


def _sides(fn: int, sn: int, count: int) -> list[bool] | None:
    """The walk from a node up to the root shared by both checks (RFC 9162, 2.1.3.2 and
    2.1.4.2): for each of `count` proof nodes, whether it is the left sibling of the hash
    carried up; None if the proof is not exactly as long as the path from `fn` to the root
    of a tree whose last node is `sn`."""
    sides = []
    for _ in range(count):
        if sn == 0:
            return None
        on_left = bool(fn & 1) or fn == sn
        if on_left:
            while fn and not fn & 1:  # a right edge: climb to where this node is a right child
                fn, sn = fn >> 1, sn >> 1
        sides.append(on_left)
        fn, sn = fn >> 1, sn >> 1
    return sides if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], head: bytes) -> bool:
    """Whether `proof` shows the leaf hash `leaf` at `index` of the tree of `size` whose root is
    `head` (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < size or any(len(each) != HASH_BYTES for each in proof):
        return False
    sides = _sides(index, size - 1, len(proof))
    if sides is None:
        return False
    r = leaf
    for p, on_left in zip(proof, sides):
        r = node_hash(p, r) if on_left else node_hash(r, p)
    return r == head


def verify_consistency(old_size: int, old_head: bytes, size: int, head: bytes, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of `old_size` with root `old_head` is a prefix of the tree
    of `size` with root `head` (RFC 9162, 2.1.4.2)."""
    if not 0 <= old_size <= size or any(len(each) != HASH_BYTES for each in proof):
        return False
    if old_size == size:
        return not proof and old_head == head
    if old_size == 0:
        return not proof and old_head == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_head)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    sides = _sides(fn, sn, len(path) - 1)
    if sides is None:
        return False
    # Two hashes climb: the old root (only where the old tree has a node) and the new one.
    fr = sr = path[0]
    for c, on_left in zip(path[1:], sides):
        if on_left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    return fr == old_head and sr == head


class Frontier:
    """A growing tree kept as the roots of the perfect subtrees its leaves split into, largest
    first (one for each bit set in its size): enough to append a leaf and to give the root, in
    memory logarithmic in the size, where `root` needs every leaf. The verdict log keeps its
    tree this way (`pbft.ci.verdictlog`); the store keeps the leaves, for proofs."""

    __slots__ = ("size", "_roots")

    def __init__(self) -> None:
        self.size = 0
        self._roots: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        """Add the leaf hash `leaf` (see `leaf_hash`) as the tree's last leaf."""
        self._roots.append(leaf)
        self.size += 1
        merged = self.size
        while not merged & 1:  # each trailing zero of the new size: two equal subtrees join
            right = self._roots.pop()
            self._roots[-1] = node_hash(self._roots[-1], right)
            merged >>= 1

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves so far: `root` of them all."""
        if not self._roots:
            return EMPTY_ROOT
        folded = self._roots[-1]
        for left in reversed(self._roots[:-1]):
            folded = node_hash(left, folded)
        return folded
