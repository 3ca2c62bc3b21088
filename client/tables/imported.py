"""Builds other clients of the network asked for, as this client imports them from the nodes'
ledgers (client.ledgerimport): how far through the order it has read, and which of them
still wait for a verdict.

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
