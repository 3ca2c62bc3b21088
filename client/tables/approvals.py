"""Pull requests from forks that wait for an approval before anything of theirs is built."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from client.tables.deliveries import DELIVERY_RETENTION_S
from client.tables.store import RecordStore, in_repositories
from pbft.build import Operation
from pbft.messages import encode
from pbft.wire import decode_struct

# Fork pull requests waiting for an approval, at most: a newer push to one replaces its
# older wait, and beyond this many open ones the oldest waits are forgotten (their pull
# requests build once a new push or a reopen delivers them again and they are approved).
MAX_WAITING_APPROVALS = 1000


class Approvals:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def hold(self, operation: Operation, delivery_id: str | None, received_at: float) -> int:
        """Keep a fork's pull request until it is approved, and return the approval's id. A
        newer push to the same pull request replaces the older one's wait. Committed at once:
        the forge is answered next."""
        assert operation.pull_ref is not None, "only a pull request waits for an approval"
        self._store.write(
            "DELETE FROM approvals WHERE build_id IS NULL AND repository = ? AND pull_ref = ?",
            (operation.repository, operation.pull_ref),
        )
        cursor = self._store.write(
            "INSERT INTO approvals (repository, pull_ref, operation, delivery_id, received_at) VALUES (?, ?, ?, ?, ?)",
            (operation.repository, operation.pull_ref, json.dumps(encode(operation)), delivery_id, received_at),
        )
        self._store.write(
            "DELETE FROM approvals WHERE build_id IS NULL AND approval_id NOT IN"
            " (SELECT approval_id FROM approvals WHERE build_id IS NULL ORDER BY approval_id DESC LIMIT ?)",
            (MAX_WAITING_APPROVALS,),
        )
        # Approved ones are kept as long as forges redeliver, like delivery ids.
        self._store.write(
            "DELETE FROM approvals WHERE build_id IS NOT NULL AND received_at < ?",
            (received_at - DELIVERY_RETENTION_S,),
        )
        self._store.commit()
        return cursor.lastrowid

    def of_delivery(self, repository: str, delivery_id: str) -> dict[str, Any] | None:
        """The approval a forge delivery is waiting for (or was given), if it was seen before."""
        row = self._store.read(
            "SELECT * FROM approvals WHERE repository = ? AND delivery_id = ? ORDER BY approval_id DESC LIMIT 1",
            (repository, delivery_id),
        ).fetchone()
        return None if row is None else _approval(row)

    def get(self, approval_id: int) -> dict[str, Any] | None:
        row = self._store.read("SELECT * FROM approvals WHERE approval_id = ?", (approval_id,)).fetchone()
        return None if row is None else _approval(row)

    def waiting(self, limit: int, repositories: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """The newest `limit` pull requests waiting for an approval, newest first; only of
        `repositories` (a caller's, client.access; None: every one)."""
        conditions, parameters = in_repositories(repositories)
        rows = self._store.read(
            " ".join(["SELECT * FROM approvals WHERE build_id IS NULL", *(f"AND {c}" for c in conditions),
                      "ORDER BY approval_id DESC LIMIT ?"]), (*parameters, limit)
        ).fetchall()
        return [_approval(row) for row in rows]

    def approved(self, approval_id: int, build_id: int) -> None:
        """Record the build an approval started, with that build's own record in one commit."""
        self._store.write("UPDATE approvals SET build_id = ? WHERE approval_id = ?", (build_id, approval_id))
        self._store.commit()


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
