"""What the action runner did, in SQLite: exactly once means written down before it runs.

`examined` holds each build the runner looked at and what it concluded (its
actions ran, or why none did); `actions` each action it started. An action's
row is committed as `running` before its container starts, so a runner that
dies mid-action finds it at its restart and marks it `interrupted`: it is
never run a second time by the runner itself (a deploy may have half
happened; an operator decides). `floor`: builds at or below it are history
the runner was started after, never acted on. `report_stamp`: the stamp of
the last report the runner signed, so that the next one is higher even if the
clock went back (shared/actionreport.py). `waiting` holds the deploys that wait for an
approval (runner/approvals.py), and an action's row names who approved it, if anyone did.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from runner.approvals import MAX_WAITING

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS examined (build_id INTEGER PRIMARY KEY, outcome TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'success', 'failure', 'error', 'interrupted')),
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    finished_at REAL,
    approver TEXT,
    PRIMARY KEY (build_id, name)
);
CREATE TABLE IF NOT EXISTS waiting (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    since REAL NOT NULL,
    checked REAL NOT NULL,
    PRIMARY KEY (build_id, name)
);
"""


class RunnerLedger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if "approver" not in {row["name"] for row in self._db.execute("PRAGMA table_info(actions)")}:
            self._db.execute("ALTER TABLE actions ADD COLUMN approver TEXT")  # a ledger from before deploys waited

    def close(self) -> None:
        self._db.close()

    def floor(self) -> int | None:
        row = self._db.execute("SELECT value FROM state WHERE key = 'floor'").fetchone()
        return None if row is None else row[0]

    def set_floor(self, build_id: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('floor', ?)", (build_id,))

    def next_report_stamp(self, now_us: int) -> int:
        """max(now_us, the last stamp + 1), written down before the report it stamps is sent:
        the client refuses a report not newer than the last it has of an action."""
        row = self._db.execute("SELECT value FROM state WHERE key = 'report_stamp'").fetchone()
        stamp = max(now_us, 0 if row is None else row[0] + 1)
        self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('report_stamp', ?)", (stamp,))
        return stamp

    def examined(self, build_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM examined WHERE build_id = ?", (build_id,)).fetchone() is not None

    def examine(self, build_id: int, outcome: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO examined (build_id, outcome, at) VALUES (?, ?, ?)",
                         (build_id, outcome, time.time()))

    def outcome(self, build_id: int) -> str | None:
        row = self._db.execute("SELECT outcome FROM examined WHERE build_id = ?", (build_id,)).fetchone()
        return None if row is None else row[0]

    def start(self, build_id: int, name: str, approver: str | None = None) -> bool:
        """Write down that action `name` of build `build_id` starts (approved by `approver`, for a
        deploy that waited); False if it started before."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO actions (build_id, name, state, started_at, approver) VALUES (?, ?, 'running', ?, ?)",
            (build_id, name, time.time(), approver),
        )
        return cursor.rowcount == 1

    def wait(self, build_id: int, name: str, environment: str, now: float) -> list[tuple[int, str, str]]:
        """Write down that action `name` of build `build_id` waits for an approval to deploy to
        `environment`; return the waiting deploys this pushes out, the oldest, past `max_waiting`."""
        self._db.execute("INSERT OR IGNORE INTO waiting (build_id, name, environment, since, checked)"
                         " VALUES (?, ?, ?, ?, 0)", (build_id, name, environment, now))
        return self._over(MAX_WAITING)

    def _over(self, limit: int) -> list[tuple[int, str, str]]:
        rows = self._db.execute("SELECT build_id, name, environment FROM waiting ORDER BY since DESC, build_id DESC"
                                " LIMIT -1 OFFSET ?", (limit,)).fetchall()
        return [(row["build_id"], row["name"], row["environment"]) for row in rows]

    def waiting(self, limit: int, now: float) -> list[dict]:
        """Up to `limit` waiting deploys, those asked about least recently first, marked asked about now."""
        rows = [dict(row) for row in self._db.execute(
            "SELECT build_id, name, environment, since FROM waiting ORDER BY checked, since LIMIT ?", (limit,))]
        self._db.executemany("UPDATE waiting SET checked = ? WHERE build_id = ? AND name = ?",
                             [(now, row["build_id"], row["name"]) for row in rows])
        return rows

    def waits(self, build_id: int, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM waiting WHERE build_id = ? AND name = ?",
                                (build_id, name)).fetchone() is not None

    def done_waiting(self, build_id: int, name: str) -> None:
        self._db.execute("DELETE FROM waiting WHERE build_id = ? AND name = ?", (build_id, name))

    def finish(self, build_id: int, name: str, state: str, exit_code: int | None, reason: str) -> None:
        self._db.execute(
            "UPDATE actions SET state = ?, exit_code = ?, reason = ?, finished_at = ? WHERE build_id = ? AND name = ?",
            (state, exit_code, reason, time.time(), build_id, name),
        )

    def interrupt_running(self) -> list[tuple[int, str]]:
        """Mark the actions a previous run of the runner left running `interrupted`; return them."""
        rows = self._db.execute("SELECT build_id, name FROM actions WHERE state = 'running'").fetchall()
        self._db.execute("UPDATE actions SET state = 'interrupted', reason = 'the runner stopped while it ran',"
                         " finished_at = ? WHERE state = 'running'", (time.time(),))
        return [(row["build_id"], row["name"]) for row in rows]

    def actions(self, build_id: int) -> list[dict]:
        rows = self._db.execute("SELECT * FROM actions WHERE build_id = ? ORDER BY started_at", (build_id,)).fetchall()
        return [dict(row) for row in rows]
