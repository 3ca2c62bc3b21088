"""RFC 9162 Merkle trees (pbft/merkle.py): the roots Certificate Transparency's reference data
gives, and for every tree up to 40 leaves, every inclusion and consistency proof checks while a
changed leaf, head or proof node does not. (A head is signed with its size, which binds it: a
proof does not, for a leftmost leaf whose path in a larger tree happens to hash the same.)"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.merkle import (
    EMPTY_ROOT, consistency_path, consistency_proof, inclusion_path, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
)

# RFC 6962's test leaves (as Certificate Transparency's reference implementations use them) and
# the root of the first 1..8 of them.
DATA = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", b"\x50\x51\x52\x53\x54\x55\x56\x57",
        bytes(range(0x60, 0x70))]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(data) for data in DATA]


def test_the_roots_are_certificate_transparencys():
    assert root([]) == EMPTY_ROOT == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert [root(LEAVES[:size]).hex() for size in range(1, 9)] == ROOTS


def test_proofs_of_the_reference_tree_have_rfc_9162s_lengths():
    # Leaf 0 of 8 climbs three levels; of 7, three too; of 1, none. From 4 to 8: one node (the right half).
    assert [len(inclusion_proof(LEAVES[:size], 0)) for size in (1, 2, 3, 4, 5, 7, 8)] == [0, 1, 2, 2, 3, 3, 3]
    assert consistency_proof(LEAVES, 4) == [root(LEAVES[4:])]
    assert len(consistency_proof(LEAVES, 6)) == 3 and consistency_proof(LEAVES, 8) == []


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_inclusion_proof_checks_and_nothing_changed_does(items, data):
    leaves = [leaf_hash(item) for item in items]
    head, size = root(leaves), len(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index)

    assert verify_inclusion(leaves[index], index, size, proof, head)
    assert not verify_inclusion(flip(leaves[index]), index, size, proof, head)
    assert not verify_inclusion(leaves[index], index, size, proof, flip(head))
    assert not verify_inclusion(leaves[index], size, size, proof, head)
    if size > 1:
        assert not verify_inclusion(leaves[index], index, size, proof[:-1], head)
        at = data.draw(st.integers(0, len(proof) - 1))
        assert not verify_inclusion(leaves[index], index, size, [*proof[:at], flip(proof[at]), *proof[at + 1:]], head)
        other = data.draw(st.integers(0, size - 1))
        if leaves[other] != leaves[index] and other != index:
            assert not verify_inclusion(leaves[other], index, size, proof, head)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_consistency_proof_checks_and_a_rewritten_history_does_not(items, data):
    leaves = [leaf_hash(item) for item in items]
    size = len(leaves)
    old = data.draw(st.integers(0, size))
    proof = consistency_proof(leaves, old)
    old_head, head = root(leaves[:old]), root(leaves)

    assert verify_consistency(old, old_head, size, head, proof)
    if 0 < old < size:
        assert not verify_consistency(old, flip(old_head), size, head, proof)
        assert not verify_consistency(old, old_head, size, flip(head), proof)
        assert not verify_consistency(old, old_head, size, head, [])
        at = data.draw(st.integers(0, len(proof) - 1))
        assert not verify_consistency(old, old_head, size, head, [*proof[:at], flip(proof[at]), *proof[at + 1:]])
        # A history that changed one of the old leaves: its new head extends a tree that is not the old one.
        changed = data.draw(st.integers(0, old - 1))
        forked = [*leaves[:changed], flip(leaves[changed]), *leaves[changed + 1:]]
        assert not verify_consistency(old, old_head, size, root(forked), consistency_proof(forked, old))


@pytest.mark.parametrize("leaves, index", [([], 0), (LEAVES[:3], 3), (LEAVES[:3], -1)])
def test_a_leaf_outside_the_tree_has_no_proof(leaves, index):
    with pytest.raises(ValueError):
        inclusion_proof(leaves, index)


def test_an_earlier_tree_larger_than_the_tree_has_no_proof_and_checks_nothing():
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:3], 4)
    assert not verify_consistency(4, root(LEAVES[:4]), 3, root(LEAVES[:3]), [])
    assert verify_consistency(0, EMPTY_ROOT, 3, root(LEAVES[:3]), [])
    assert not verify_consistency(0, flip(EMPTY_ROOT), 3, root(LEAVES[:3]), [])


@pytest.mark.parametrize("size", [1, 2, 3, 16, 17, 1000, 1 << 20, 1_000_003])
def test_a_proof_asks_for_one_aligned_subtree_per_level(size):
    # What a store that keeps its perfect subtrees relies on (node/logtree.py): a proof over a
    # million leaves asks for about twenty subtrees, each starting at a multiple of the largest
    # power of two not above its size, so that a power-of-two one is a perfect subtree it holds.
    asked = []

    def subtree(start, count):
        assert 0 <= start and 0 < count and start + count <= size
        assert start % (1 << (count.bit_length() - 1)) == 0, (start, count)
        asked.append((start, count))
        return leaf_hash(f"{start}/{count}".encode())

    levels = (size - 1).bit_length()
    for index in {0, size // 3, size - 1}:
        asked.clear()
        assert len(inclusion_path(subtree, size, index)) == len(asked) <= levels
    for old_size in {1, size // 2, size - 1} - {0, size}:
        asked.clear()
        assert len(consistency_path(subtree, size, old_size)) == len(asked) <= levels + 1


def rfc_path(leaves, m):
    """RFC 9162's PATH(m, D[n]) as the RFC writes it, recursively."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return rfc_path(leaves[:k], m) + [root(leaves[k:])]
    return rfc_path(leaves[k:], m - k) + [root(leaves[:k])]


def rfc_subproof(leaves, m, complete):
    """RFC 9162's SUBPROOF(m, D[n], b)."""
    if m == len(leaves):
        return [] if complete else [root(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return rfc_subproof(leaves[:k], m, complete) + [root(leaves[k:])]
    return rfc_subproof(leaves[k:], m - k, False) + [root(leaves[:k])]


def test_the_walks_give_the_rfcs_recursive_proofs():
    leaves = [leaf_hash(bytes([i])) for i in range(37)]
    for size in range(1, 38):
        tree = leaves[:size]
        assert [inclusion_proof(tree, index) for index in range(size)] == [rfc_path(tree, m) for m in range(size)]
        assert [consistency_proof(tree, old) for old in range(1, size)] == [
            rfc_subproof(tree, m, True) for m in range(1, size)]
    assert consistency_proof(leaves, 0) == consistency_proof(leaves, 37) == []
    with pytest.raises(ValueError):
        inclusion_path(lambda start, count: EMPTY_ROOT, 5, 5)
    with pytest.raises(ValueError):
        consistency_path(lambda start, count: EMPTY_ROOT, 5, 6)
