"""The verb rerun: build again what a build built, as a new build that names the old one.

The new build has the old one's repository, ref and commit: its request's
own, or the one its verdict names, or one that f+1 of its replies name (a
disputed or timed-out build: one of them is honest); failing all of them,
its branch's head now, pinned like a new build's.
"""

from __future__ import annotations

import dataclasses
import logging

from client.actors import acting
from client.events import Origin
from client.tables.store import RecordStore
from client.verbs.submit import Submit
from pbft.build import COMMIT_SHA, Actor, Operation
from pbft.wire import decode_struct

log = logging.getLogger(__name__)


class Rerun:
    def __init__(self, submit: Submit, store: RecordStore, f: int) -> None:
        self._submit = submit
        self._store = store
        self._f = f

    async def start(self, record: dict, actor: Actor) -> int:
        """Start a new build of what the build `record` built, asked for by `actor`, and return its id."""
        # A new ask, not the delivery that asked for the build it runs again (pbft.deliveries).
        operation = dataclasses.replace(acting(decode_struct(Operation, record["request"]["operation"]), actor),
                                        delivery=None)
        if operation.commit is None:
            commit = commit_of(record, self._f + 1)
            if commit:
                operation = dataclasses.replace(operation, commit=commit)
            else:
                operation = await self._submit.pinned(operation)
        build_id = self._submit.start(operation, Origin(rerun_of=int(record["build_id"])))
        # Durable, with the new build's own record, before its caller hears of it.
        self._store.commit()
        log.info("build %d runs build %s again", build_id, record["build_id"])
        return build_id


def commit_of(record: dict, quorum: int) -> str | None:
    """The commit a finished build was built on: its verdict's, or one `quorum` replies name."""
    result = record["result"]
    if result is not None and result.get("commit") is not None:
        return result["commit"]
    named: dict[str, set[int]] = {}
    for reply in record.get("replies") or []:
        commit = (reply.get("result") or {}).get("commit")
        if isinstance(commit, str) and COMMIT_SHA.fullmatch(commit):
            named.setdefault(commit, set()).add(reply.get("sender"))
    agreed = [commit for commit, senders in named.items() if len(senders) >= quorum]
    return agreed[0] if len(agreed) == 1 else None
