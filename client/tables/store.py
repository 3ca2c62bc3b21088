"""The one SQLite connection under the client's records, its transactions and the timestamps' ceiling.

Writes join an open transaction that `commit` ends: the client commits once
per turn of the event loop for every request begun or finished in it (a
group commit: one fsync for many webhooks, `durable`), right after the
request goes out, and waits for that commit before a verdict is answered. A
crash leaves each row as it was at the last commit, never half written.

The file also keeps a ceiling on the timestamps the client may have used:
PBFT nodes execute a client's request only if its timestamp is higher than
the last one they saw from that client, so timestamps must keep increasing
across restarts, power cuts included. A request leaves before its record is
fsynced, so its timestamp must already lie below a ceiling on disk: the
ceiling is reserved `TIMESTAMP_RESERVE_US` ahead, raised in the group commit
of any request that passes half of it, and committed before a timestamp is
used only when one would pass it (the first request after a restart or a
long idle). A crash costs at most that much of the timestamps' range; a
clean close keeps only the last one used.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from client.tables.schema import migrate
from shared.config_principals import BUILD_ID_LANES

# How far ahead of the timestamps in use their ceiling is reserved on disk (see above):
# one fsync of its own per ten minutes at most, ten minutes of microseconds skipped per crash.
TIMESTAMP_RESERVE_US = 600 * 1_000_000


class RecordStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and committed here, explicitly.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        migrate(self._db)
        row = self._db.execute("SELECT value FROM client_state WHERE key = 'last_timestamp'").fetchone()
        # No timestamp at or below what the file holds is ever issued again.
        self._last_timestamp = self._ceiling = self._durable_ceiling = 0 if row is None else row[0]
        # The group commit of the records written in this turn of the event loop, once one is awaited.
        self._turn_commit: asyncio.Future | None = None

    def close(self) -> None:
        if self._last_timestamp < self._ceiling:
            # Nothing above the last timestamp used went out: a restart goes on from it.
            self._set_ceiling(self._last_timestamp)
        self.commit()
        self._db.close()

    def read(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, parameters)

    def write(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        """Run a write in the open transaction, beginning one if none is open."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        return self._db.execute(sql, parameters)

    def commit(self) -> None:
        """Make every write since the last commit durable, all in one transaction."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._durable_ceiling = self._ceiling

    async def durable(self) -> None:
        """Wait until every record written so far is committed.

        One commit at the end of this turn of the event loop serves every
        request begun or finished in it, so a burst of webhooks pays one
        fsync, not one each.
        """
        # Shielded: a cancelled webhook must not cancel the others' commit.
        await asyncio.shield(self.commit_soon())

    def commit_soon(self) -> asyncio.Future:
        """Commit at the end of this turn of the event loop, with whatever else is written in it."""
        if self._turn_commit is None:
            loop = asyncio.get_running_loop()
            self._turn_commit = loop.create_future()
            loop.call_soon(self._commit_turn)
        return self._turn_commit

    def _commit_turn(self) -> None:
        turn_commit, self._turn_commit = self._turn_commit, None
        try:
            self.commit()
        except Exception as error:  # noqa: BLE001 - every waiter gets it
            turn_commit.set_exception(error)
        else:
            turn_commit.set_result(None)

    def next_timestamp(self, now_us: int, lane: int = 0) -> int:
        """Return the first timestamp of `lane` from max(now_us, last + 1), below a ceiling
        already on disk (see the module's doc).

        Commits, with whatever else is written and not yet committed, only
        when the timestamp passes the ceiling on disk.
        """
        timestamp = max(now_us, self._last_timestamp + 1)
        timestamp += (lane - timestamp) % BUILD_ID_LANES
        self._last_timestamp = timestamp
        if timestamp > self._ceiling - TIMESTAMP_RESERVE_US // 2:
            self._set_ceiling(timestamp + TIMESTAMP_RESERVE_US)
        if timestamp > self._durable_ceiling:
            self.commit()
        return timestamp

    def _set_ceiling(self, ceiling: int) -> None:
        self.write(
            "INSERT INTO client_state (key, value) VALUES ('last_timestamp', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (ceiling,),
        )
        self._ceiling = ceiling


def in_repositories(repositories: frozenset[str] | None) -> tuple[list[str], list[str]]:
    """The SQL condition (none for None) and its parameters that keep only rows of `repositories`."""
    if repositories is None:
        return [], []
    assert repositories, "a caller with no repository at all reads nothing"
    return [f"repository IN ({', '.join('?' * len(repositories))})"], sorted(repositories)
