"""Who did what: the audit trail, read from the build records.

Every action a person, a token, a forge or a schedule takes on the CI is a
request the client signs with its actor in it (client/actors.py): a build, a
cancel, a re-run, the approval of a fork's pull request, a change of the
network document. The records keep each signed request, so the trail is the
records themselves, and every node's ledger holds the same actors; a change
applied also names the owners whose signatures carried it. A
matrix's combinations are left out: the order's expansion started them, not
an actor.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from client.tables.store import RecordStore, in_repositories
from client.tables.summaries import VERDICT_SQL
from pbft.networks import agreed_signers

AUDIT_ACTIONS = ("build", "cancel", "rerun", "approve", "change")
_ACTION_SQL = (
    "(CASE WHEN json_extract(request, '$.operation.cancels') IS NOT NULL THEN 'cancel'"
    " WHEN json_extract(request, '$.operation.approves') IS NOT NULL THEN 'approve'"
    " WHEN json_extract(request, '$.operation.change') IS NOT NULL THEN 'change'"
    " WHEN rerun_of IS NOT NULL THEN 'rerun'"
    " WHEN approval_id IS NOT NULL THEN 'approve'"
    " ELSE 'build' END)"
)
_ENTRIES = (
    "SELECT *, {action} AS action FROM (SELECT build_id, submitted_at, repository, branch, request,"
    " {verdict} AS verdict,"
    " json_extract(request, '$.operation.actor.kind') AS actor_kind,"
    " json_extract(request, '$.operation.actor.name') AS actor_name,"
    " json_extract(request, '$.operation.cancels') AS cancels,"
    " json_extract(request, '$.operation.approves') AS approves,"
    " (SELECT rerun_of FROM reruns WHERE reruns.build_id = builds.build_id) AS rerun_of,"
    " (SELECT approval_id FROM approvals WHERE approvals.build_id = builds.build_id) AS approval_id,"
    # An accepted change's quorum and replies, whose reasons name the owners that signed it.
    " CASE WHEN state = 'accepted' AND json_extract(request, '$.operation.change') IS NOT NULL"
    " THEN json_object('agreed_by', json(agreed_by), 'replies', json(replies)) END AS change_replies"
    " FROM builds WHERE build_id NOT IN (SELECT build_id FROM matrix_builds) {where})"
)


class Audit:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def entries(
        self, limit: int, *, before: int | None = None, actor: str | None = None, actor_kind: str | None = None,
        action: str | None = None, repositories: frozenset[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The newest `limit` actions that match every filter given, newest first: ids below
        `before` (the next page's keyset), an actor's name and kind, one of AUDIT_ACTIONS, and
        `repositories` only (one asked for, or a caller's, client.access; None: every one)."""
        assert action is None or action in AUDIT_ACTIONS
        scope, parameters = in_repositories(repositories)
        conditions = [f"AND {condition}" for condition in scope]
        # Filters on the builds themselves go inside, where the indexes are; the action outside.
        for condition, value in (("build_id < ?", before),
                                 ("json_extract(request, '$.operation.actor.name') = ?", actor),
                                 ("json_extract(request, '$.operation.actor.kind') = ?", actor_kind)):
            if value is not None:
                conditions.append(f"AND {condition}")
                parameters.append(value)
        query = _ENTRIES.format(action=_ACTION_SQL, verdict=VERDICT_SQL, where=" ".join(conditions))
        if action is not None:
            query += " WHERE action = ?"
            parameters.append(action)
        rows = self._store.read(f"{query} ORDER BY build_id DESC LIMIT ?", (*parameters, limit)).fetchall()
        return [_entry(row) for row in rows]


def _entry(row: sqlite3.Row) -> dict[str, Any]:
    # What the action acted on: the build a cancel stops or a re-run builds again, the approval
    # of a fork's pull request, or the build whose deploy an approval lets run.
    approves = None if row["approves"] is None else json.loads(row["approves"])
    approved = row["approval_id"] if approves is None else approves["build"]
    target = {"cancel": row["cancels"], "rerun": row["rerun_of"], "approve": approved}.get(row["action"])
    entry = {
        "build_id": str(row["build_id"]),
        "at": row["submitted_at"],
        "action": row["action"],
        "actor": None if row["actor_kind"] is None else {"kind": row["actor_kind"], "name": row["actor_name"]},
        "repository": row["repository"],
        "branch": row["branch"],
        "target": None if target is None else str(target),
        "verdict": row["verdict"],
    }
    if row["action"] == "change":
        entry["signed_by"] = _signed_by(row["change_replies"])
    if approves is not None:  # a deploy's approval: which action, to where
        entry["deploy"] = {"action": approves["action"], "environment": approves["environment"]}
    return entry


def _signed_by(change_replies: str | None) -> list[str] | None:
    """The owners whose signatures carried a change the nodes applied, as every node of the
    verdict's quorum named them (pbft.networks.agreed_signers): the actor only handed it in.
    None for a change refused or without a verdict, and where the quorum's words differ."""
    if change_replies is None:
        return None
    found = json.loads(change_replies)
    quorum = set(found["agreed_by"])
    signers = agreed_signers(reply["result"].get("reason", "") for reply in found["replies"]
                             if reply.get("sender") in quorum and isinstance(reply.get("result"), dict))
    return None if signers is None else list(signers)
