"""What action runners reported of the actions after a build's verdict (runner/), signed by each runner."""

from __future__ import annotations

from client.tables.store import RecordStore
from shared.actionreport import ActionReport


class Actions:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def keep(self, report: ActionReport, signature: str, at: float) -> bool:
        """Keep a runner's signed report of an action, unless the record has one of that action
        of that build with the same or a higher stamp: False then (a replayed or older report).
        A report from before reports were signed (no stamp) is replaced by any signed one."""
        cursor = self._store.write(
            "INSERT INTO actions (build_id, name, state, exit_code, reason, reported_at, runner, signature, stamp_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (build_id, name) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code,"
            " reason = excluded.reason, reported_at = excluded.reported_at, runner = excluded.runner,"
            " signature = excluded.signature, stamp_us = excluded.stamp_us"
            " WHERE actions.stamp_us IS NULL OR excluded.stamp_us > actions.stamp_us",
            (report.build_id, report.action, report.state, report.exit_code, report.reason, at, report.runner,
             signature, report.stamp_us),
        )
        self._store.commit()
        return cursor.rowcount == 1

    def stamp(self, build_id: int, name: str) -> int | None:
        """The stamp of the report the record keeps of action `name` of a build, if any."""
        row = self._store.read("SELECT stamp_us FROM actions WHERE build_id = ? AND name = ?",
                               (build_id, name)).fetchone()
        return None if row is None else row[0]
