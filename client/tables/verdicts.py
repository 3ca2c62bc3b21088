"""How each build ended: its verdict written onto its row, and the replies that came after it.

A verdict is written as the records keep it: the state (accepted, divergent,
disputed, timeout) and the result's JSON, with the signed replies behind it.
A build left pending when the client stops is followed again when it starts
(client.verbs.resume); older ones than it follows end `timeout` here.
"""

from __future__ import annotations

import json

from client.outcome import disputed_result
from client.tables.store import RecordStore
from pbft.build import Result
from pbft.messages import Reply, encode


class Verdicts:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

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
        self._store.write(
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
        self._store.write(
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
        otherwise, or at all (`dissent`). Committed with the client's next group commit."""
        row = self._store.read(
            "SELECT state, elapsed_ms, replies FROM builds WHERE build_id = ?", (reply.timestamp,)
        ).fetchone()
        if row is None or row["state"] == "pending":
            return False  # not this client's build, or one still followed (its collector takes the reply)
        if now_s > replies_until(reply.timestamp, row["elapsed_ms"], deadline_s, settle_s):
            return False
        replies = json.loads(row["replies"])
        if any(kept.get("sender") == reply.sender for kept in replies):
            return False  # a node's first reply is its word, as for the verdict (pbft.replies)
        self._store.write("UPDATE builds SET replies = ? WHERE build_id = ?",
                          (json.dumps([*replies, encode(reply)]), reply.timestamp))
        return True

    def give_up_pending(self, before: int) -> int:
        """End every build without a verdict older than build `before` as `timeout`; return how
        many. Committed with the client's next group commit."""
        return self._store.write(
            "UPDATE builds SET state = 'timeout' WHERE state = 'pending' AND build_id < ?", (before,)
        ).rowcount


def replies_until(build_id: int, elapsed_ms: int | None, deadline_s: float, settle_s: float) -> float:
    """Until when (Unix time) the client keeps the replies to a build with a verdict:
    client_deadline_s after its request (whose timestamp, the build id, is the time it was sent
    in microseconds), or client_settle_s after its verdict if that is later (a build that waited
    for build slots past the deadline). A node that has not replied by then is silent."""
    return build_id / 1_000_000 + max(deadline_s, (elapsed_ms or 0) / 1000 + settle_s)
