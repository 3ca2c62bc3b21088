"""A build's row as the client shows it: the summary every listing gives, in SQL and in JSON.

A summary names the build (its id, its number in its repository, what it
built and why), its verdict in one word (VERDICTS), who agreed and who
dissented, and how it relates to others: the build it re-runs, the cancel it
is, the matrix it is one combination of, or the combinations it expanded into.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pbft.build import Result, combination_label, flaky_steps, pull_request_number
from pbft.wire import MessageError, decode_struct

# A build's verdict in one word: its agreed result's status once f+1 nodes agreed, else its
# state (pending, timeout: no f+1 agreed in time, disputed, divergent). `timeout` is both a
# build that ran out of its own time (a status the nodes agreed on) and one without a quorum.
VERDICTS = ("success", "failure", "error", "timeout", "cancelled", "skipped", "matrix", "disputed", "divergent",
            "pending")
VERDICT_SQL = "(CASE state WHEN 'accepted' THEN json_extract(result, '$.status') ELSE state END)"

SUMMARY_COLUMNS = (
    "build_id, number, repository, branch, commit_requested, submitted_at, state, result, agreed_by, elapsed_ms, "
    f"commit_message, author, commit_url, {VERDICT_SQL} AS verdict, replies AS reply_list, "
    "json_extract(request, '$.operation.pull_ref') AS pull_ref, json_extract(request, '$.operation.event') AS event, "
    "(SELECT rerun_of FROM reruns WHERE reruns.build_id = builds.build_id) AS rerun_of, "
    "json_extract(request, '$.operation.cancels') AS cancels, "
    "json_extract(request, '$.operation.approves') AS approves, "
    "json_extract(request, '$.operation.actor.kind') AS actor_kind, "
    "json_extract(request, '$.operation.actor.name') AS actor_name, "
    "json_extract(request, '$.client') AS client, json_extract(request, '$.operation.delivery') AS delivery, "
    "json_extract(request, '$.operation.combination') AS combination, "
    "(SELECT matrix_of FROM matrix_builds WHERE matrix_builds.build_id = builds.build_id) AS matrix_of, "
    "(SELECT json_group_array(build_id) FROM (SELECT build_id FROM matrix_builds"
    " WHERE matrix_builds.matrix_of = builds.build_id ORDER BY build_id)) AS matrix"
)


def replied(row: sqlite3.Row) -> list[tuple[int, Result]] | None:
    """Each reply's sender and signed result, in the order they came; None for a record of an
    older client's result form, whose replies are shown as they are."""
    try:
        return [(reply["sender"], decode_struct(Result, reply["result"])) for reply in json.loads(row["reply_list"])]
    except MessageError:
        return None


def dissented(row: sqlite3.Row, said: list[tuple[int, Result]] | None) -> list[dict[str, Any]]:
    """The nodes whose signed reply (`said`, from `replied`) differs from the agreed result, and
    what each said. Only an accepted build has one agreed result to differ from: a divergent or
    disputed build's record holds each node's own (`artifacts_by_node`, `split`), a timed-out
    build none."""
    if row["state"] != "accepted" or said is None:
        return []
    try:
        agreed = decode_struct(Result, json.loads(row["result"])).agreed_key()
    except MessageError:
        return []
    return [{"node": node, "kind": "dissented", "said": result.to_dict()}
            for node, result in said if result.agreed_key() != agreed]


def flaky(said: list[tuple[int, Result]] | None) -> list[dict[str, Any]]:
    """The steps that passed on some nodes and failed on others, or passed only on a retry,
    from every node's signed reply (pbft.build.flaky_steps): what makes a dissent or a
    dispute a flaky step rather than a bare disagreement."""
    return [] if said is None else [step.to_dict() for step in flaky_steps(dict(said))]


def summary(row: sqlite3.Row) -> dict[str, Any]:
    said = replied(row)  # read once for the dissent and the flaky steps
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
        # than the verdict; the routes add the silent ones (client.routes.builds `with_progress`).
        "replied_by": sorted(reply["sender"] for reply in json.loads(row["reply_list"])),
        "dissent": dissented(row, said),
        "flaky": flaky(said),
        "elapsed_ms": row["elapsed_ms"],
        "pull_request": None if row["pull_ref"] is None else pull_request_number(row["pull_ref"]),
        "event": row["event"] or "push",
        "rerun_of": None if row["rerun_of"] is None else str(row["rerun_of"]),
        "cancels": None if row["cancels"] is None else str(row["cancels"]),
        # An approval of a deploy: `{build, action, environment}` (pbft.build.Approval).
        "approves": None if row["approves"] is None else approval_json(json.loads(row["approves"])),
        # Who asked for it, as its signed request names it (client/actors.py); null for a request
        # signed before requests named their actor.
        "actor": None if row["actor_kind"] is None else {"kind": row["actor_kind"], "name": row["actor_name"]},
        # The client that signed it (several may serve a network: client.ledgerimport), and the
        # forge delivery or schedule slot it answers (pbft.deliveries).
        "client": row["client"],
        "delivery": row["delivery"],
        # A matrix's combination builds name it, and it lists them.
        "combination": None if row["combination"] is None else combination_label(json.loads(row["combination"])),
        "matrix_of": None if row["matrix_of"] is None else str(row["matrix_of"]),
        "matrix": [str(build_id) for build_id in json.loads(row["matrix"])],
    }


def approval_json(approves: dict[str, Any]) -> dict[str, Any]:
    """An approval as records show it: the build it approves by its id (a string, as every id)."""
    return {**approves, "build": str(approves["build"])}


def matrix_build(row: sqlite3.Row) -> dict[str, Any]:
    """One combination of a matrix as its build page lists it: which, and its verdict so far."""
    shown = summary(row)
    result = shown["result"]
    return {"build_id": shown["build_id"], "combination": shown["combination"], "state": shown["state"],
            "status": None if result is None else result["status"]}
