"""Build records of one client, in SQLite.

One row per request, keyed by its timestamp (the build id). Writes join an
open transaction that `commit` ends: the service commits once per turn of
the event loop for every request begun or finished in it (a group commit:
one fsync for many webhooks), right after the request goes out, and waits
for that commit before a verdict is answered. A crash leaves each row as it
was at the last commit, never half written.

The file also keeps a ceiling on the timestamps the client may have used:
PBFT nodes execute a client's request only if its timestamp is higher than
the last one they saw from that client, so timestamps must keep increasing
across restarts, power cuts included. A request leaves before its record is
fsynced, so its timestamp must already lie below a ceiling on disk: the
ceiling is reserved `TIMESTAMP_RESERVE_US` ahead, raised in the group commit
of any request that passes half of it, and committed before a timestamp is
used only when one would pass it (the first request after a restart or a
long idle). A crash costs at most that much of the timestamps' range; a
clean close keeps only the last one used. And the file keeps the forge
delivery ids it has answered, so a redelivery after a restart still finds
the build it started, and the pull requests from forks that wait for an
approval before anything of theirs is built.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from client.outcome import disputed_result
from pbft.build import MAX_COMBINATIONS, Operation, Result, combination_label, pull_request_number
from pbft.wire import MessageError, decode_struct
from pbft.messages import Reply, Request, encode
from shared.actionreport import ActionReport

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    build_id INTEGER PRIMARY KEY,
    repository TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_requested TEXT,
    submitted_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'timeout', 'divergent', 'disputed')),
    result TEXT,
    agreed_by TEXT NOT NULL DEFAULT '[]',
    elapsed_ms INTEGER,
    request TEXT NOT NULL,
    replies TEXT NOT NULL DEFAULT '[]',
    number INTEGER,
    commit_message TEXT,
    author TEXT,
    commit_url TEXT
);
CREATE TABLE IF NOT EXISTS client_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    repository TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    build_id INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (repository, delivery_id)
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    pull_ref TEXT NOT NULL,
    operation TEXT NOT NULL,
    delivery_id TEXT,
    received_at REAL NOT NULL,
    build_id INTEGER
);
CREATE INDEX IF NOT EXISTS builds_pending ON builds (repository, branch) WHERE state = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS builds_number ON builds (repository, number);
CREATE INDEX IF NOT EXISTS builds_ref ON builds (repository, branch, build_id);
CREATE TABLE IF NOT EXISTS reruns (
    build_id INTEGER PRIMARY KEY,
    rerun_of INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reruns_of ON reruns (rerun_of);
CREATE TABLE IF NOT EXISTS matrix_builds (
    build_id INTEGER PRIMARY KEY,
    matrix_of INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS matrix_builds_of ON matrix_builds (matrix_of);
CREATE TABLE IF NOT EXISTS actions (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    reported_at REAL NOT NULL,
    runner TEXT,
    signature TEXT,
    stamp_us INTEGER,
    PRIMARY KEY (build_id, name)
);
CREATE TABLE IF NOT EXISTS schedules (
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    branch TEXT NOT NULL,
    last_slot REAL NOT NULL,
    build_id INTEGER,
    PRIMARY KEY (repository, name)
);
"""
# Forges redeliver on request for a few days at most; older delivery ids are
# forgotten so the table does not grow for ever.
DELIVERY_RETENTION_S = 30 * 24 * 3600
# How far ahead of the timestamps in use their ceiling is reserved on disk (see above):
# one fsync of its own per ten minutes at most, ten minutes of microseconds skipped per crash.
TIMESTAMP_RESERVE_US = 600 * 1_000_000

# Files of version 0 refuse the state 'divergent' in their CHECK, and files before
# version 5 the state 'disputed', which SQLite cannot alter: `_migrate` copies their builds
# into a table made by the schema above. Version 2 adds the approvals table, version 3 the
# reruns and schedules tables, version 4 the matrix_builds table, version 6 the actions table,
# version 7 the builds' numbers per repository and their commits' message, author and link,
# version 8 who reported an action (the runner's name, its signature and stamp).
SCHEMA_VERSION = 8
# The last version whose builds table the schema above cannot take as it is.
_REBUILT_BEFORE = 5
# The builds table's columns before version 7, which copies of older tables name, and the
# columns version 7 adds to a table it keeps.
_BUILD_COLUMNS_BEFORE_7 = (
    "build_id, repository, branch, commit_requested, submitted_at, state, result, agreed_by, elapsed_ms,"
    " request, replies"
)
_BUILD_COLUMNS_OF_7 = {"number": "INTEGER", "commit_message": "TEXT", "author": "TEXT", "commit_url": "TEXT"}
# The actions table's columns version 8 adds. Reports recorded before have none: anyone with the
# client's token could write those, and the record says they are unsigned.
_ACTION_COLUMNS_OF_8 = {"runner": "TEXT", "signature": "TEXT", "stamp_us": "INTEGER"}
# The builds table's indexes, dropped before an old table is renamed: an index keeps its name
# when its table is renamed, so the schema would not make it again for the new table.
_BUILD_INDEXES = ("builds_pending", "builds_number", "builds_ref")
# Fork pull requests waiting for an approval, at most: a newer push to one replaces its
# older wait, and beyond this many open ones the oldest waits are forgotten (their pull
# requests build once a new push or a reopen delivers them again and they are approved).
MAX_WAITING_APPROVALS = 1000
# A build's record lists its first re-runs, this many at most (each names the build it re-runs).
MAX_LISTED_RERUNS = 100
# Actions after the verdict a build's record lists: a spec declares at most 16 (node/build/actions.py).
MAX_LISTED_ACTIONS = 16
# A push cancels at most this many older builds of its ref (the newest first): more would
# mean pushes came faster than the network orders, and the next push cancels the rest.
MAX_SUPERSEDED = 16

# A build's verdict in one word: its agreed result's status once f+1 nodes agreed, else its
# state (pending, timeout: no f+1 agreed in time, disputed, divergent). `timeout` is both a
# build that ran out of its own time (a status the nodes agreed on) and one without a quorum.
VERDICTS = ("success", "failure", "error", "timeout", "cancelled", "skipped", "matrix", "disputed", "divergent",
            "pending")
_VERDICT = "(CASE state WHEN 'accepted' THEN json_extract(result, '$.status') ELSE state END)"

_SUMMARY_COLUMNS = (
    "build_id, number, repository, branch, commit_requested, submitted_at, state, result, agreed_by, elapsed_ms, "
    f"commit_message, author, commit_url, {_VERDICT} AS verdict, replies AS reply_list, "
    "json_extract(request, '$.operation.pull_ref') AS pull_ref, json_extract(request, '$.operation.event') AS event, "
    "(SELECT rerun_of FROM reruns WHERE reruns.build_id = builds.build_id) AS rerun_of, "
    "json_extract(request, '$.operation.cancels') AS cancels, "
    "json_extract(request, '$.operation.combination') AS combination, "
    "(SELECT matrix_of FROM matrix_builds WHERE matrix_builds.build_id = builds.build_id) AS matrix_of, "
    "(SELECT json_group_array(build_id) FROM (SELECT build_id FROM matrix_builds"
    " WHERE matrix_builds.matrix_of = builds.build_id ORDER BY build_id)) AS matrix"
)


def records_path(data_dir: Path, client_name: str) -> Path:
    return data_dir / f"client-{client_name}" / "builds.sqlite"


class BuildRecords:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and committed here, explicitly.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        row = self._db.execute("SELECT value FROM client_state WHERE key = 'last_timestamp'").fetchone()
        # No timestamp at or below what the file holds is ever issued again.
        self._last_timestamp = self._ceiling = self._durable_ceiling = 0 if row is None else row[0]

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION in one transaction: all of it or none of it."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"build records of schema version {version}; this client reads up to {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Other than the builds table's CHECK, older versions lack only tables the schema
            # creates if they do not exist.
            exists = version < _REBUILT_BEFORE and self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'builds'"
            ).fetchone()
            if exists:
                for index in _BUILD_INDEXES:  # made again for the new table
                    self._db.execute(f"DROP INDEX IF EXISTS {index}")
                self._db.execute("ALTER TABLE builds RENAME TO builds_v0")
            else:
                self._add_columns_of_7()
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._add_action_columns_of_8()
            if exists:
                self._db.execute(
                    f"INSERT INTO builds ({_BUILD_COLUMNS_BEFORE_7}) SELECT {_BUILD_COLUMNS_BEFORE_7} FROM builds_v0"
                )
                self._db.execute("DROP TABLE builds_v0")
            # Builds from before version 7 are numbered per repository in the order they were
            # submitted, which their ids (request timestamps) keep.
            self._db.execute(
                "UPDATE builds SET number = numbered.number FROM (SELECT build_id, row_number()"
                " OVER (PARTITION BY repository ORDER BY build_id) AS number FROM builds) AS numbered"
                " WHERE builds.build_id = numbered.build_id AND builds.number IS NULL"
            )
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _add_columns_of_7(self) -> None:
        """Give a builds table of versions 5 and 6 the columns version 7 adds (all nullable)."""
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(builds)")}
        if not present:
            return  # a new file: the schema makes the table
        for name, kind in _BUILD_COLUMNS_OF_7.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE builds ADD COLUMN {name} {kind}")

    def _add_action_columns_of_8(self) -> None:
        """Give an actions table of versions 6 and 7 the columns version 8 adds (all nullable)."""
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(actions)")}
        for name, kind in _ACTION_COLUMNS_OF_8.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE actions ADD COLUMN {name} {kind}")

    def close(self) -> None:
        if self._last_timestamp < self._ceiling:
            # Nothing above the last timestamp used went out: a restart goes on from it.
            self._set_ceiling(self._last_timestamp)
        self.commit()
        self._db.close()

    def commit(self) -> None:
        """Make every write since the last commit durable, all in one transaction."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._durable_ceiling = self._ceiling

    def _write(self, sql: str, parameters: tuple) -> sqlite3.Cursor:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
        return self._db.execute(sql, parameters)

    def next_timestamp(self, now_us: int) -> int:
        """Return max(now_us, last + 1), below a ceiling already on disk (see the module's doc).

        Commits, with whatever else is written and not yet committed, only
        when the timestamp passes the ceiling on disk.
        """
        timestamp = max(now_us, self._last_timestamp + 1)
        self._last_timestamp = timestamp
        if timestamp > self._ceiling - TIMESTAMP_RESERVE_US // 2:
            self._set_ceiling(timestamp + TIMESTAMP_RESERVE_US)
        if timestamp > self._durable_ceiling:
            self.commit()
        return timestamp

    def _set_ceiling(self, ceiling: int) -> None:
        self._write(
            "INSERT INTO client_state (key, value) VALUES ('last_timestamp', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (ceiling,),
        )
        self._ceiling = ceiling

    def add_pending(self, request: Request, submitted_at: float) -> None:
        operation = request.operation
        self._write(
            # The build's number is its repository's next, taken in the insert itself.
            "INSERT INTO builds (build_id, repository, branch, commit_requested, submitted_at, state, request, number)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?,"
            " (SELECT coalesce(max(number), 0) + 1 FROM builds WHERE repository = ?))",
            (
                request.timestamp,
                operation.repository,
                operation.branch,
                operation.commit,
                datetime.fromtimestamp(submitted_at, timezone.utc).isoformat(),
                json.dumps(encode(request)),
                operation.repository,
            ),
        )

    def describe_commit(self, build_id: int, message: str | None, author: str | None, url: str | None) -> None:
        """Keep what a forge delivery said of the commit build `build_id` builds (client.commitinfo,
        which cleaned it); committed with the build's own record."""
        self._write(
            "UPDATE builds SET commit_message = ?, author = ?, commit_url = ? WHERE build_id = ?",
            (message, author, url, build_id),
        )

    def _copy_commit(self, build_id: int, source: int) -> None:
        """Describe build `build_id`'s commit as build `source` describes it: a re-run or a
        matrix's combination builds the same commit."""
        self._write(
            "UPDATE builds SET (commit_message, author, commit_url) ="
            " (SELECT commit_message, author, commit_url FROM builds WHERE build_id = ?) WHERE build_id = ?",
            (source, build_id),
        )

    def accept(
        self, build_id: int, result: Result, agreed_by: list[int], elapsed_ms: int, replies: list[Reply]
    ) -> None:
        self._finish(build_id, "accepted", json.dumps(result.to_dict()), agreed_by, elapsed_ms, replies)

    def diverge(
        self,
        build_id: int,
        outcome: Result,
        artifacts_by_node: dict[int, str | None],
        elapsed_ms: int,
        replies: list[Reply],
    ) -> None:
        """A build whose nodes agree on its outcome but not on its artifacts' bytes.

        Its result is what they agree on with the status `divergent`, and each
        node's manifest digest under `artifacts_by_node`, never one of them as the
        artifacts: the signed replies hold the same, for anyone to recheck.
        """
        result = {
            **outcome.to_dict(),
            "status": "divergent",
            "artifacts_by_node": {str(node): digest for node, digest in artifacts_by_node.items()},
        }
        self._finish(build_id, "divergent", json.dumps(result), [], elapsed_ms, replies)

    def dispute(self, build_id: int, split: dict[int, Result], f: int, elapsed_ms: int, replies: list[Reply]) -> None:
        """A build whose nodes disagree: no result has 2f+1 matching replies, nor can get them.
        Its result is `disputed_result`; the signed replies hold the same, for anyone to recheck."""
        self._finish(build_id, "disputed", json.dumps(disputed_result(split, f)), [], elapsed_ms, replies)

    def cancelled_by_order(self, build_id: int, result: Result, agreed_by: list[int]) -> None:
        """A build whose cancel executed after its own verdict came: the order made it
        `cancelled` on every node (pbft.cancels); its replies stay, as the evidence of
        what the nodes that finished first found."""
        self._write(
            "UPDATE builds SET state = 'accepted', result = ?, agreed_by = ? WHERE build_id = ? AND state != 'pending'",
            (json.dumps(result.to_dict()), json.dumps(agreed_by), build_id),
        )

    def time_out(self, build_id: int, elapsed_ms: int, replies: list[Reply]) -> None:
        self._finish(build_id, "timeout", None, [], elapsed_ms, replies)

    def _finish(
        self,
        build_id: int,
        state: str,
        result_json: str | None,
        agreed_by: list[int],
        elapsed_ms: int,
        replies: list[Reply],
    ) -> None:
        self._write(
            "UPDATE builds SET state = ?, result = ?, agreed_by = ?, elapsed_ms = ?, replies = ?"
            " WHERE build_id = ?",
            (
                state,
                result_json,
                json.dumps(agreed_by),
                elapsed_ms,
                json.dumps([encode(reply) for reply in replies]),
                build_id,
            ),
        )

    def add_late_reply(self, reply: Reply, now_s: float, deadline_s: float, settle_s: float) -> bool:
        """Keep a reply (its signature checked) that came after its build's verdict, the first
        of its sender, while the build takes replies (`replies_until`); return whether it was
        kept. The verdict stays as it is: these replies only say which nodes answered
        otherwise, or at all (`dissent`). Committed with the service's next group commit."""
        row = self._db.execute(
            "SELECT state, elapsed_ms, replies FROM builds WHERE build_id = ?", (reply.timestamp,)
        ).fetchone()
        if row is None or row["state"] == "pending":
            return False  # not this client's build, or one still followed (its collector takes the reply)
        if now_s > replies_until(reply.timestamp, row["elapsed_ms"], deadline_s, settle_s):
            return False
        replies = json.loads(row["replies"])
        if any(kept.get("sender") == reply.sender for kept in replies):
            return False  # a node's first reply is its word, as for the verdict (pbft.replies)
        self._write("UPDATE builds SET replies = ? WHERE build_id = ?",
                    (json.dumps([*replies, encode(reply)]), reply.timestamp))
        return True

    def delivery_build(self, repository: str, delivery_id: str) -> int | None:
        """The build a forge delivery already started, if it was seen before."""
        row = self._db.execute(
            "SELECT build_id FROM deliveries WHERE repository = ? AND delivery_id = ?", (repository, delivery_id)
        ).fetchone()
        return None if row is None else row[0]

    def add_delivery(self, repository: str, delivery_id: str, build_id: int, received_at: float) -> None:
        # Keyed by repository too, so that a delivery id claimed through an
        # unsigned repository cannot shadow a signed delivery to another.
        # Committed at once, with the build it started: the forge is answered
        # next, and a redelivery after a crash must find both.
        self._write("DELETE FROM deliveries WHERE received_at < ?", (received_at - DELIVERY_RETENTION_S,))
        self._write(
            "INSERT OR IGNORE INTO deliveries (repository, delivery_id, build_id, received_at) VALUES (?, ?, ?, ?)",
            (repository, delivery_id, build_id, received_at),
        )
        self.commit()

    def await_approval(self, operation: Operation, delivery_id: str | None, received_at: float) -> int:
        """Keep a fork's pull request until it is approved, and return the approval's id. A
        newer push to the same pull request replaces the older one's wait. Committed at once:
        the forge is answered next."""
        assert operation.pull_ref is not None, "only a pull request waits for an approval"
        self._write(
            "DELETE FROM approvals WHERE build_id IS NULL AND repository = ? AND pull_ref = ?",
            (operation.repository, operation.pull_ref),
        )
        cursor = self._write(
            "INSERT INTO approvals (repository, pull_ref, operation, delivery_id, received_at) VALUES (?, ?, ?, ?, ?)",
            (operation.repository, operation.pull_ref, json.dumps(encode(operation)), delivery_id, received_at),
        )
        self._write(
            "DELETE FROM approvals WHERE build_id IS NULL AND approval_id NOT IN"
            " (SELECT approval_id FROM approvals WHERE build_id IS NULL ORDER BY approval_id DESC LIMIT ?)",
            (MAX_WAITING_APPROVALS,),
        )
        # Approved ones are kept as long as forges redeliver, like delivery ids.
        self._write(
            "DELETE FROM approvals WHERE build_id IS NOT NULL AND received_at < ?",
            (received_at - DELIVERY_RETENTION_S,),
        )
        self.commit()
        return cursor.lastrowid

    def delivery_approval(self, repository: str, delivery_id: str) -> dict[str, Any] | None:
        """The approval a forge delivery is waiting for (or was given), if it was seen before."""
        row = self._db.execute(
            "SELECT * FROM approvals WHERE repository = ? AND delivery_id = ? ORDER BY approval_id DESC LIMIT 1",
            (repository, delivery_id),
        ).fetchone()
        return None if row is None else _approval(row)

    def approval(self, approval_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM approvals WHERE approval_id = ?", (approval_id,)).fetchone()
        return None if row is None else _approval(row)

    def waiting_approvals(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` pull requests waiting for an approval, newest first."""
        rows = self._db.execute(
            "SELECT * FROM approvals WHERE build_id IS NULL ORDER BY approval_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_approval(row) for row in rows]

    def approved(self, approval_id: int, build_id: int) -> None:
        """Record the build an approval started, with that build's own record in one commit."""
        self._write("UPDATE approvals SET build_id = ? WHERE approval_id = ?", (build_id, approval_id))
        self.commit()

    def superseded(self, operation: Operation, before: int) -> list[dict[str, Any]]:
        """The builds without a verdict, older than build `before`, of the same repository and
        ref as `operation` (its branch, or its pull request), started as it was (a push, or a
        pull request), that no cancel names yet: what a newer push makes moot. The newest few."""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS}, request, replies FROM builds WHERE state = 'pending'"
            " AND repository = ? AND branch = ? AND build_id < ?"
            " AND coalesce(json_extract(request, '$.operation.pull_ref'), '') = ?"
            " AND coalesce(json_extract(request, '$.operation.event'), 'push') = ?"
            " AND json_extract(request, '$.operation.cancels') IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM builds AS c WHERE c.state = 'pending' AND c.repository = builds.repository"
            " AND json_extract(c.request, '$.operation.cancels') = builds.build_id)"
            " ORDER BY build_id DESC LIMIT ?",
            (operation.repository, operation.branch, before, operation.pull_ref or "", operation.trigger_event,
             MAX_SUPERSEDED),
        ).fetchall()
        return [{**_summary(row), "request": json.loads(row["request"])} for row in rows]

    def rerun(self, build_id: int, rerun_of: int) -> None:
        """Record that `build_id` runs `rerun_of` again, with the new build's own record in one commit."""
        self._write("INSERT INTO reruns (build_id, rerun_of) VALUES (?, ?)", (build_id, rerun_of))
        self._copy_commit(build_id, rerun_of)
        self.commit()

    def matrix_build(self, build_id: int, matrix_of: int) -> None:
        """Record that `build_id` builds one combination of the matrix build `matrix_of` expanded
        into; committed with that build's verdict (the service's group commit)."""
        self._write("INSERT INTO matrix_builds (build_id, matrix_of) VALUES (?, ?)", (build_id, matrix_of))
        self._copy_commit(build_id, matrix_of)

    def action(self, report: ActionReport, signature: str, at: float) -> bool:
        """Keep a runner's signed report of an action, unless the record has one of that action
        of that build with the same or a higher stamp: False then (a replayed or older report).
        A report from before reports were signed (no stamp) is replaced by any signed one."""
        cursor = self._write(
            "INSERT INTO actions (build_id, name, state, exit_code, reason, reported_at, runner, signature, stamp_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (build_id, name) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code,"
            " reason = excluded.reason, reported_at = excluded.reported_at, runner = excluded.runner,"
            " signature = excluded.signature, stamp_us = excluded.stamp_us"
            " WHERE actions.stamp_us IS NULL OR excluded.stamp_us > actions.stamp_us",
            (report.build_id, report.action, report.state, report.exit_code, report.reason, at, report.runner,
             signature, report.stamp_us),
        )
        self.commit()
        return cursor.rowcount == 1

    def action_stamp(self, build_id: int, name: str) -> int | None:
        """The stamp of the report the record keeps of action `name` of a build, if any."""
        row = self._db.execute("SELECT stamp_us FROM actions WHERE build_id = ? AND name = ?",
                               (build_id, name)).fetchone()
        return None if row is None else row[0]

    def schedule_slots(self) -> dict[tuple[str, str, str, str], float]:
        """The last slot each schedule fired for (or started from), by (repository, name, cron, branch)."""
        rows = self._db.execute("SELECT repository, name, cron, branch, last_slot FROM schedules").fetchall()
        return {(row["repository"], row["name"], row["cron"], row["branch"]): row["last_slot"] for row in rows}

    def set_schedule_slots(self, slots: dict[tuple[str, str, str, str], float], build_ids: dict) -> None:
        """Keep exactly these schedules' slots, with the builds they started (`build_ids`, by the
        same keys), in one commit with those builds' own records: a crash leaves both or neither."""
        self._write("DELETE FROM schedules", ())
        for (repository, name, cron, branch), slot in slots.items():
            self._write(
                "INSERT INTO schedules (repository, name, cron, branch, last_slot, build_id) VALUES (?, ?, ?, ?, ?, ?)",
                (repository, name, cron, branch, slot, build_ids.get((repository, name, cron, branch))),
            )
        self.commit()

    def pending(self, limit: int) -> list[dict[str, Any]]:
        """The builds still without a verdict (a client stopped or killed while it followed them),
        the newest `limit`, oldest first, with their signed requests and submission times."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT build_id, submitted_at, request,"
            " (SELECT matrix_of FROM matrix_builds WHERE matrix_builds.build_id = builds.build_id) AS matrix_of"
            " FROM builds WHERE state = 'pending' ORDER BY build_id DESC LIMIT ?) ORDER BY build_id",
            (limit,),
        ).fetchall()
        return [{"build_id": row["build_id"], "submitted_at": datetime.fromisoformat(row["submitted_at"]).timestamp(),
                 "request": json.loads(row["request"]), "matrix_of": row["matrix_of"]} for row in rows]

    def give_up_pending(self, before: int) -> int:
        """End every build without a verdict older than build `before` as `timeout`; return how
        many. Committed with the service's next group commit."""
        return self._write(
            "UPDATE builds SET state = 'timeout' WHERE state = 'pending' AND build_id < ?", (before,)
        ).rowcount

    def recent(
        self, limit: int, *, before: int | None = None, repository: str | None = None, branch: str | None = None,
        verdict: str | None = None, number: int | None = None,
    ) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` builds that match every filter given, newest first:
        ids below `before` (the keyset of the next page), one repository, one branch (a pull
        request's target, a tag's name), one verdict (VERDICTS), one number of a repository."""
        conditions, parameters = [], []
        for condition, value in (("build_id < ?", before), ("repository = ?", repository), ("branch = ?", branch),
                                 (f"{_VERDICT} = ?", verdict), ("number = ?", number)):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM builds {where} ORDER BY build_id DESC LIMIT ?", (*parameters, limit)
        ).fetchall()
        return [_summary(row) for row in rows]

    def branch_verdicts(self, repository: str, branch: str, limit: int) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` builds of a branch's own with a verdict on it, newest
        first: pushes, plain calls and schedules (not pull requests, tags, a matrix's single
        combinations or cancels) that were not cancelled or skipped."""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM builds WHERE repository = ? AND branch = ? AND state != 'pending'"
            " AND json_extract(request, '$.operation.pull_ref') IS NULL"
            " AND json_extract(request, '$.operation.combination') IS NULL"
            " AND json_extract(request, '$.operation.cancels') IS NULL"
            " AND coalesce(json_extract(request, '$.operation.event'), 'push') IN ('push', 'manual', 'cron')"
            f" AND {_VERDICT} NOT IN ('cancelled', 'skipped') ORDER BY build_id DESC LIMIT ?",
            (repository, branch, limit),
        ).fetchall()
        return [_summary(row) for row in rows]

    def get(self, build_id: int) -> dict[str, Any] | None:
        """The full record, with the signed request and the signed replies."""
        row = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS}, request, replies FROM builds WHERE build_id = ?", (build_id,)
        ).fetchone()
        if row is None:
            return None
        reruns = self._db.execute(
            "SELECT build_id FROM reruns WHERE rerun_of = ? ORDER BY build_id LIMIT ?", (build_id, MAX_LISTED_RERUNS)
        ).fetchall()
        combinations = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM builds WHERE build_id IN"
            " (SELECT build_id FROM matrix_builds WHERE matrix_of = ?) ORDER BY build_id LIMIT ?",
            (build_id, MAX_COMBINATIONS),
        ).fetchall()
        actions = self._db.execute(
            "SELECT name, state, exit_code, reason, reported_at, runner, stamp_us, signature AS sig FROM actions"
            " WHERE build_id = ? ORDER BY name LIMIT ?",
            (build_id, MAX_LISTED_ACTIONS),
        ).fetchall()
        return {**_summary(row), "reruns": [str(rerun[0]) for rerun in reruns],
                "actions": [{**dict(action), "reported_at": datetime.fromtimestamp(
                    action["reported_at"], timezone.utc).isoformat(timespec="seconds")} for action in actions],
                "matrix_builds": [_matrix_build(combination) for combination in combinations],
                "request": json.loads(row["request"]), "replies": json.loads(row["replies"])}


def replies_until(build_id: int, elapsed_ms: int | None, deadline_s: float, settle_s: float) -> float:
    """Until when (Unix time) the client keeps the replies to a build with a verdict:
    client_deadline_s after its request (whose timestamp, the build id, is the time it was sent
    in microseconds), or client_settle_s after its verdict if that is later (a build that waited
    for build slots past the deadline). A node that has not replied by then is silent."""
    return build_id / 1_000_000 + max(deadline_s, (elapsed_ms or 0) / 1000 + settle_s)


def _dissented(row: sqlite3.Row) -> list[dict[str, Any]]:
    """The nodes whose signed reply differs from the agreed result, and what each said. Only an
    accepted build has one agreed result to differ from: a divergent or disputed build's
    record holds each node's own (`artifacts_by_node`, `split`), a timed-out build none."""
    if row["state"] != "accepted":
        return []
    dissented = []
    try:
        agreed = decode_struct(Result, json.loads(row["result"])).agreed_key()
        for reply in json.loads(row["reply_list"]):
            said = decode_struct(Result, reply["result"])
            if said.agreed_key() != agreed:
                dissented.append({"node": reply["sender"], "kind": "dissented", "said": said.to_dict()})
    except MessageError:
        return []  # a record of an older client's result form: its replies are shown as they are
    return dissented


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "build_id": str(row["build_id"]),
        "number": row["number"],
        "repository": row["repository"],
        "branch": row["branch"],
        "commit_requested": row["commit_requested"],
        # What the forge's delivery said of the commit (client.commitinfo); null for a plain call.
        "commit_message": row["commit_message"],
        "author": row["author"],
        "commit_url": row["commit_url"],
        "submitted_at": row["submitted_at"],
        "state": row["state"],
        "result": None if row["result"] is None else json.loads(row["result"]),
        "verdict": row["verdict"],
        "agreed_by": json.loads(row["agreed_by"]),
        # Every node that replied, late replies included, and those that said another result
        # than the verdict; the service adds the silent ones (client.app `_with_progress`).
        "replied_by": sorted(reply["sender"] for reply in json.loads(row["reply_list"])),
        "dissent": _dissented(row),
        "elapsed_ms": row["elapsed_ms"],
        "pull_request": None if row["pull_ref"] is None else pull_request_number(row["pull_ref"]),
        "event": row["event"] or "push",
        "rerun_of": None if row["rerun_of"] is None else str(row["rerun_of"]),
        "cancels": None if row["cancels"] is None else str(row["cancels"]),
        # A matrix's combination builds name it, and it lists them.
        "combination": None if row["combination"] is None else combination_label(json.loads(row["combination"])),
        "matrix_of": None if row["matrix_of"] is None else str(row["matrix_of"]),
        "matrix": [str(build_id) for build_id in json.loads(row["matrix"])],
    }


def _matrix_build(row: sqlite3.Row) -> dict[str, Any]:
    """One combination of a matrix as its build page lists it: which, and its verdict so far."""
    summary = _summary(row)
    result = summary["result"]
    return {"build_id": summary["build_id"], "combination": summary["combination"], "state": summary["state"],
            "status": None if result is None else result["status"]}


def _approval(row: sqlite3.Row) -> dict[str, Any]:
    operation = decode_struct(Operation, json.loads(row["operation"]))
    return {
        "approval_id": str(row["approval_id"]),
        "repository": operation.repository,
        "branch": operation.branch,
        "commit": operation.commit,
        "pull_request": operation.pull_request,
        "received_at": datetime.fromtimestamp(row["received_at"], timezone.utc).isoformat(timespec="seconds"),
        "build_id": None if row["build_id"] is None else str(row["build_id"]),
        "operation": operation,
    }
