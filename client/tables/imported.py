"""Builds other clients of the network asked for, as this client imports them from the nodes'
ledgers (client.ledgerimport): how far through the order it has read, which of them still wait
for a verdict and where in the order it found each of those, and the members whose votes count
at each point of the order it read (client.ledgermembers).

They are rows of the builds table like this client's own, keyed by their request's timestamp
(each client takes its timestamps from a lane of its own: shared.config_principals), so that
every listing, page and audit shows them; their request names the client that signed it.
"""

from __future__ import annotations

import json

from client.tables.store import RecordStore

_CURSOR = "ledger_seq"


class Imported:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def cursor(self) -> int:
        """The sequence number through which every build of the order is in the records."""
        row = self._store.read("SELECT value FROM client_state WHERE key = ?", (_CURSOR,)).fetchone()
        return 0 if row is None else row[0]

    def move_cursor(self, seq: int) -> None:
        self._store.write(
            "INSERT INTO client_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_CURSOR, seq),
        )

    def waiting(self, me: str, after: int, limit: int) -> list[dict]:
        """Other clients' builds still without a verdict, by build id after `after`, at most `limit`."""
        rows = self._store.read(
            "SELECT build_id, request FROM builds WHERE state = 'pending' AND build_id > ?"
            " AND json_extract(request, '$.client') != ? ORDER BY build_id LIMIT ?",
            (after, me, limit),
        ).fetchall()
        return [{"build_id": row["build_id"], "request": json.loads(row["request"])} for row in rows]

    def memberships(self) -> list[tuple[int, int, list[tuple[int, str]]]]:
        """The members the import keeps, oldest first: the sequence number after which each
        count (0: from the start), their f, and their ids and public keys."""
        rows = self._store.read("SELECT start, f, nodes FROM ledger_members ORDER BY start").fetchall()
        return [(row["start"], row["f"], [(node, key) for node, key in json.loads(row["nodes"])]) for row in rows]

    def add_membership(self, start: int, f: int, keys: list[tuple[int, str]], keep: int) -> None:
        """Members that count after `start`; only the newest `keep` are kept."""
        self._store.write("INSERT OR REPLACE INTO ledger_members (start, f, nodes) VALUES (?, ?, ?)",
                          (start, f, json.dumps(keys)))
        self._store.write("DELETE FROM ledger_members WHERE start NOT IN"
                          " (SELECT start FROM ledger_members ORDER BY start DESC LIMIT ?)", (keep,))

    def found(self, build_id: int, after: int) -> None:
        """The reading found build `build_id` on a page of the order after sequence number `after`."""
        self._store.write("INSERT OR IGNORE INTO ledger_found (build_id, after_seq) VALUES (?, ?)", (build_id, after))

    def found_after(self, build_id: int) -> int:
        """The sequence number after which the reading found build `build_id`; 0 if not known
        (a build imported before this was kept)."""
        row = self._store.read("SELECT after_seq FROM ledger_found WHERE build_id = ?", (build_id,)).fetchone()
        return 0 if row is None else row[0]

    def forget_found(self) -> None:
        """Forget where the builds that have a verdict by now were found."""
        self._store.write("DELETE FROM ledger_found WHERE build_id NOT IN"
                          " (SELECT build_id FROM builds WHERE state = 'pending')")
