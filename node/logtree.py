"""The verdict log's leaves as the store keeps them, and the perfect subtrees over them that make
a proof cost a few rows instead of every leaf (node/logroutes.py serves the proofs).

The replica's Execute effects write the leaves (node/storage.py), in the order's positions,
0, 1, 2, ... A leaf never changes once written: the order puts the same bytes at the same
position on every node, however it learnt the batch. So the hash of every perfect subtree of
2**TREE_LEVEL leaves or more, once all its leaves are written, never changes either, and
`grow` keeps them, in slices of at most GROW_LEAVES, each in one transaction with how far it
got. A proof then asks for one subtree per level (`pbft.merkle.inclusion_path`): a perfect
one the tree holds is one row; the few leaves below TREE_LEVEL and past what `grow` reached,
at most MAX_TAIL of them, are hashed from their rows. A node whose tree is further behind
(a store written before the tree existed, catching up in the background) says so instead of
hashing a million leaves on its event loop for whoever asks.
"""

from __future__ import annotations

import sqlite3

from pbft.merkle import consistency_path, inclusion_path, leaf_hash, node_hash, root

TREE_LEVEL = 4  # perfect subtrees of 16 leaves and more are kept: an eighth of a row per leaf
GROW_LEAVES = 4096  # the most leaves one `grow` hashes: a few milliseconds of the event loop
MAX_TAIL = 4096  # the most leaves a proof hashes from their rows, past what the tree holds

SCHEMA = """
CREATE TABLE IF NOT EXISTS verdict_log_tree (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
"""
_GROWN = "verdict_log_tree_leaves"  # meta key: the leaves the kept subtrees cover, a multiple of 2**TREE_LEVEL


class TreeBehind(Exception):
    """A proof would hash more than MAX_TAIL leaves: the tree is still being grown."""

    def __init__(self, grown: int, size: int) -> None:
        super().__init__(f"this node is still indexing its verdict log ({grown} of {size} verdicts): retry shortly")
        self.grown, self.size = grown, size


class VerdictLogRows:
    """The verdict log's leaves (`pbft.ci.verdictlog`) and its kept subtrees, read for proofs."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_GROWN,)).fetchone()
        self.grown = 0 if row is None else int(row[0])

    def leaf(self, client: str, timestamp: int) -> tuple[int, int, bytes] | None:
        """(position, seq, leaf data) of a build's verdict, if logged."""
        row = self._db.execute("SELECT position, seq, leaf FROM verdict_log WHERE client = ? AND timestamp = ?",
                               (client, timestamp)).fetchone()
        return None if row is None else (row[0], row[1], bytes(row[2]))

    def size(self) -> int:
        """How many leaves the store holds (positions 0 .. size - 1)."""
        (last,) = self._db.execute("SELECT MAX(position) FROM verdict_log").fetchone()
        return 0 if last is None else last + 1

    def inclusion(self, size: int, index: int) -> list[bytes]:
        """The audit path of leaf `index` in the tree of the first `size` leaves (`size` <= `self.size()`)."""
        self._check_tail(size)
        return inclusion_path(self._subtree, size, index)

    def consistency(self, size: int, old_size: int) -> list[bytes]:
        """The proof that the tree of `old_size` leaves is a prefix of that of `size`."""
        self._check_tail(size)
        return consistency_path(self._subtree, size, old_size)

    def grow(self, limit: int = GROW_LEAVES) -> int:
        """Keep the perfect subtrees of up to `limit` more leaves, in one transaction; the leaves
        now covered. Only whole blocks of 2**TREE_LEVEL leaves, all written, are taken."""
        block = 1 << TREE_LEVEL
        rows = self._db.execute("SELECT position, leaf FROM verdict_log WHERE position >= ? AND position < ?"
                                " ORDER BY position", (self.grown, self.grown + limit // block * block)).fetchall()
        contiguous = next((offset for offset, (position, _) in enumerate(rows) if position != self.grown + offset),
                          len(rows))
        blocks = contiguous // block
        if not blocks:
            return self.grown
        made: dict[tuple[int, int], bytes] = {}
        for number in range(blocks):
            taken = rows[number * block:(number + 1) * block]
            level, idx = TREE_LEVEL, self.grown // block + number
            made[level, idx] = digest = root([leaf_hash(bytes(leaf)) for _, leaf in taken])
            while idx & 1:  # a right child completes its parent
                digest = node_hash(self._kept(level, idx - 1, made), digest)
                level, idx = level + 1, idx >> 1
                made[level, idx] = digest
        grown = self.grown + blocks * block
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO verdict_log_tree (level, idx, hash) VALUES (?, ?, ?)",
                                 [(level, idx, digest) for (level, idx), digest in made.items()])
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_GROWN, str(grown)))
        self.grown = grown
        return grown

    def _kept(self, level: int, idx: int, made: dict[tuple[int, int], bytes]) -> bytes:
        if (level, idx) in made:
            return made[level, idx]
        row = self._db.execute("SELECT hash FROM verdict_log_tree WHERE level = ? AND idx = ?", (level, idx)).fetchone()
        if row is None:
            raise LookupError(f"the verdict log's tree lacks its node {idx} at level {level}")
        return bytes(row[0])

    def _check_tail(self, size: int) -> None:
        if size - self.grown > MAX_TAIL:
            raise TreeBehind(self.grown, size)

    def _subtree(self, start: int, count: int) -> bytes:
        """The Merkle Tree Hash of leaves start .. start + count - 1, as `pbft.merkle` asks for one:
        a kept perfect subtree from its row; any other from its halves, down to the leaves."""
        level = count.bit_length() - 1
        if count == 1 << level and level >= TREE_LEVEL and start + count <= self.grown:
            return self._kept(level, start >> level, {})
        if count <= 1 << TREE_LEVEL or start >= self.grown:
            return self._leaves_root(start, count)
        k = 1 << ((count - 1).bit_length() - 1)  # the largest power of two below count, as RFC 9162 splits
        return node_hash(self._subtree(start, k), self._subtree(start + k, count - k))

    def _leaves_root(self, start: int, count: int) -> bytes:
        leaves = [leaf_hash(bytes(leaf)) for (leaf,) in self._db.execute(
            "SELECT leaf FROM verdict_log WHERE position >= ? AND position < ? ORDER BY position",
            (start, start + count))]
        if len(leaves) != count:
            raise LookupError(f"the store holds {len(leaves)} of the verdict log's leaves {start} to {start + count - 1}")
        return root(leaves)
