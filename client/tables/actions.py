"""What action runners reported of the actions after a build's verdict (runner/), signed by each
runner, and the approvals the client ordered of actions that deploy (client.verbs.deploys)."""

from __future__ import annotations

from client.tables.store import RecordStore
from client.tables.summaries import VERDICT_SQL
from shared.actionreport import ActionReport

# The approvals of one action a record lists: one is enough, more are repeated clicks or
# approvals that did not execute (an `error`), each kept with its own build record.
MAX_LISTED_APPROVALS = 16


class Actions:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def keep(self, report: ActionReport, signature: str, at: float) -> bool:
        """Keep a runner's signed report of an action, unless the record has one of that action
        of that build with the same or a higher stamp: False then (a replayed or older report).
        A report from before reports were signed (no stamp) is replaced by any signed one."""
        cursor = self._store.write(
            "INSERT INTO actions (build_id, name, state, exit_code, reason, reported_at, runner, signature, stamp_us,"
            " environment, approver) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (build_id, name) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code,"
            " reason = excluded.reason, reported_at = excluded.reported_at, runner = excluded.runner,"
            " signature = excluded.signature, stamp_us = excluded.stamp_us, environment = excluded.environment,"
            " approver = excluded.approver"
            " WHERE actions.stamp_us IS NULL OR excluded.stamp_us > actions.stamp_us",
            (report.build_id, report.action, report.state, report.exit_code, report.reason, at, report.runner,
             signature, report.stamp_us, report.environment, report.approver),
        )
        self._store.commit()
        return cursor.rowcount == 1

    def stamp(self, build_id: int, name: str) -> int | None:
        """The stamp of the report the record keeps of action `name` of a build, if any."""
        row = self._store.read("SELECT stamp_us FROM actions WHERE build_id = ? AND name = ?",
                               (build_id, name)).fetchone()
        return None if row is None else row[0]

    def reported(self, build_id: int, name: str) -> dict | None:
        """The newest report the record keeps of action `name` of a build, if any."""
        row = self._store.read("SELECT state, environment, approver FROM actions WHERE build_id = ? AND name = ?",
                               (build_id, name)).fetchone()
        return None if row is None else dict(row)

    def approval_ordered(self, approval_id: int, build_id: int, name: str, environment: str, at: float) -> None:
        """The client asked the network to order approval `approval_id` (a request's id) of action
        `name` of build `build_id`, a deploy to `environment`."""
        self._store.write("INSERT INTO deploy_approvals (approval_id, build_id, action, environment, at)"
                          " VALUES (?, ?, ?, ?, ?)", (approval_id, build_id, name, environment, at))
        self._store.commit()

    def approvals(self, build_id: int, name: str) -> list[dict]:
        """The approvals ordered of action `name` of a build, the oldest first, with each one's
        state and verdict as its own build record has them."""
        rows = self._store.read(
            f"SELECT approval_id, environment, state, {VERDICT_SQL} AS verdict,"
            " json_extract(request, '$.operation.actor.kind') || ' ' || json_extract(request, '$.operation.actor.name')"
            " AS actor FROM deploy_approvals JOIN builds ON builds.build_id = deploy_approvals.approval_id"
            " WHERE deploy_approvals.build_id = ? AND action = ? ORDER BY approval_id LIMIT ?",
            (build_id, name, MAX_LISTED_APPROVALS),
        ).fetchall()
        return [{**dict(row), "approval_id": str(row["approval_id"])} for row in rows]
