"""The builds table: one row per request, keyed by its timestamp (the build id), and how it is read.

A row is written pending when its request is signed, described by the forge's
delivery and linked to the build it re-runs or the matrix it belongs to in
the same transaction; its verdict is written onto it later (client.tables.verdicts).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from client.tables.actions import Actions
from client.tables.store import RecordStore, in_repositories
from client.tables.summaries import SUMMARY_COLUMNS, VERDICT_SQL, matrix_build, summary
from pbft.build import MAX_COMBINATIONS, Operation
from pbft.messages import Request, encode

# A build's record lists its first re-runs, this many at most (each names the build it re-runs).
MAX_LISTED_RERUNS = 100
# Actions after the verdict a build's record lists: a spec declares at most 16 (builder/plan/actions.py).
MAX_LISTED_ACTIONS = 16
# A push cancels at most this many older builds of its ref (the newest first): more would
# mean pushes came faster than the network orders, and the next push cancels the rest.
MAX_SUPERSEDED = 16


class Builds:
    def __init__(self, store: RecordStore, actions: Actions) -> None:
        self._store = store
        self._actions = actions  # a record lists its actions and their approvals

    def add_pending(self, request: Request, submitted_at: float) -> None:
        operation = request.operation
        self._store.write(
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
        self._store.write(
            "UPDATE builds SET commit_message = ?, author = ?, commit_url = ? WHERE build_id = ?",
            (message, author, url, build_id),
        )

    def link_rerun(self, build_id: int, rerun_of: int) -> None:
        """Record that `build_id` runs `rerun_of` again."""
        self._store.write("INSERT INTO reruns (build_id, rerun_of) VALUES (?, ?)", (build_id, rerun_of))
        self._copy_commit(build_id, rerun_of)

    def link_matrix(self, build_id: int, matrix_of: int) -> None:
        """Record that `build_id` builds one combination of the matrix build `matrix_of` expanded into."""
        self._store.write("INSERT INTO matrix_builds (build_id, matrix_of) VALUES (?, ?)", (build_id, matrix_of))
        self._copy_commit(build_id, matrix_of)

    def _copy_commit(self, build_id: int, source: int) -> None:
        """Describe build `build_id`'s commit as build `source` describes it: a re-run or a
        matrix's combination builds the same commit."""
        self._store.write(
            "UPDATE builds SET (commit_message, author, commit_url) ="
            " (SELECT commit_message, author, commit_url FROM builds WHERE build_id = ?) WHERE build_id = ?",
            (source, build_id),
        )

    def get(self, build_id: int) -> dict[str, Any] | None:
        """The full record, with the signed request and the signed replies."""
        row = self._store.read(
            f"SELECT {SUMMARY_COLUMNS}, request, replies FROM builds WHERE build_id = ?", (build_id,)
        ).fetchone()
        if row is None:
            return None
        reruns = self._store.read(
            "SELECT build_id FROM reruns WHERE rerun_of = ? ORDER BY build_id LIMIT ?", (build_id, MAX_LISTED_RERUNS)
        ).fetchall()
        combinations = self._store.read(
            f"SELECT {SUMMARY_COLUMNS} FROM builds WHERE build_id IN"
            " (SELECT build_id FROM matrix_builds WHERE matrix_of = ?) ORDER BY build_id LIMIT ?",
            (build_id, MAX_COMBINATIONS),
        ).fetchall()
        actions = self._store.read(
            "SELECT name, state, exit_code, reason, reported_at, runner, stamp_us, signature AS sig, environment,"
            " approver FROM actions"
            " WHERE build_id = ? ORDER BY name LIMIT ?",
            (build_id, MAX_LISTED_ACTIONS),
        ).fetchall()
        return {**summary(row), "reruns": [str(rerun[0]) for rerun in reruns],
                "actions": [self._action(build_id, action) for action in actions],
                "matrix_builds": [matrix_build(combination) for combination in combinations],
                "request": json.loads(row["request"]), "replies": json.loads(row["replies"])}

    def _action(self, build_id: int, action) -> dict[str, Any]:
        """An action as the record lists it, with the approvals ordered of it if it deploys."""
        entry = {**dict(action), "reported_at": datetime.fromtimestamp(
            action["reported_at"], timezone.utc).isoformat(timespec="seconds")}
        if action["environment"] is not None:
            entry["approvals"] = self._actions.approvals(build_id, action["name"])
        return entry

    def recent(
        self, limit: int, *, before: int | None = None, repositories: frozenset[str] | None = None,
        branch: str | None = None, verdict: str | None = None, number: int | None = None,
    ) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` builds that match every filter given, newest first:
        ids below `before` (the keyset of the next page), of `repositories` only (one asked for,
        or a caller's, client.access; None: every one), one branch (a pull request's target, a
        tag's name), one verdict (VERDICTS), one number of a repository."""
        conditions, parameters = in_repositories(repositories)
        for condition, value in (("build_id < ?", before), ("branch = ?", branch),
                                 (f"{VERDICT_SQL} = ?", verdict), ("number = ?", number)):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._store.read(
            f"SELECT {SUMMARY_COLUMNS} FROM builds {where} ORDER BY build_id DESC LIMIT ?", (*parameters, limit)
        ).fetchall()
        return [summary(row) for row in rows]

    def branch_verdicts(self, repository: str, branch: str, limit: int) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` builds of a branch's own with a verdict on it, newest
        first: pushes, plain calls and schedules (not pull requests, tags, a matrix's single
        combinations or cancels) that were not cancelled or skipped."""
        rows = self._store.read(
            f"SELECT {SUMMARY_COLUMNS} FROM builds WHERE repository = ? AND branch = ? AND state != 'pending'"
            " AND json_extract(request, '$.operation.pull_ref') IS NULL"
            " AND json_extract(request, '$.operation.combination') IS NULL"
            " AND json_extract(request, '$.operation.cancels') IS NULL"
            " AND json_extract(request, '$.operation.approves') IS NULL"
            " AND coalesce(json_extract(request, '$.operation.event'), 'push') IN ('push', 'manual', 'cron')"
            f" AND {VERDICT_SQL} NOT IN ('cancelled', 'skipped') ORDER BY build_id DESC LIMIT ?",
            (repository, branch, limit),
        ).fetchall()
        return [summary(row) for row in rows]

    def pending(self, limit: int) -> list[dict[str, Any]]:
        """The builds still without a verdict (a client stopped or killed while it followed them),
        the newest `limit`, oldest first, with their signed requests and submission times."""
        rows = self._store.read(
            "SELECT * FROM (SELECT build_id, submitted_at, request,"
            " (SELECT matrix_of FROM matrix_builds WHERE matrix_builds.build_id = builds.build_id) AS matrix_of"
            " FROM builds WHERE state = 'pending' ORDER BY build_id DESC LIMIT ?) ORDER BY build_id",
            (limit,),
        ).fetchall()
        return [{"build_id": row["build_id"], "submitted_at": datetime.fromisoformat(row["submitted_at"]).timestamp(),
                 "request": json.loads(row["request"]), "matrix_of": row["matrix_of"]} for row in rows]

    def limited_matrices(self, limit: int) -> list[int]:
        """The newest `limit` matrix builds whose verdict limits how their combinations run
        (fail_fast, max_parallel): those a restarted client may have to go on with."""
        rows = self._store.read(
            "SELECT build_id FROM builds WHERE state = 'accepted' AND json_extract(result, '$.status') = 'matrix'"
            " AND (json_extract(result, '$.fail_fast') OR json_extract(result, '$.max_parallel') IS NOT NULL)"
            " ORDER BY build_id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [row["build_id"] for row in rows]

    def superseded(self, operation: Operation, before: int) -> list[dict[str, Any]]:
        """The builds without a verdict, older than build `before`, of the same repository and
        ref as `operation` (its branch, or its pull request), started as it was (a push, or a
        pull request), that no cancel names yet: what a newer push makes moot. The newest few."""
        rows = self._store.read(
            f"SELECT {SUMMARY_COLUMNS}, request, replies FROM builds WHERE state = 'pending'"
            " AND repository = ? AND branch = ? AND build_id < ?"
            " AND coalesce(json_extract(request, '$.operation.pull_ref'), '') = ?"
            " AND coalesce(json_extract(request, '$.operation.event'), 'push') = ?"
            " AND json_extract(request, '$.operation.cancels') IS NULL"
            " AND json_extract(request, '$.operation.approves') IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM builds AS c WHERE c.state = 'pending' AND c.repository = builds.repository"
            " AND json_extract(c.request, '$.operation.cancels') = builds.build_id)"
            " ORDER BY build_id DESC LIMIT ?",
            (operation.repository, operation.branch, before, operation.pull_ref or "", operation.trigger_event,
             MAX_SUPERSEDED),
        ).fetchall()
        return [{**summary(row), "request": json.loads(row["request"])} for row in rows]
