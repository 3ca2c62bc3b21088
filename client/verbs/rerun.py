"""The verb rerun: build again what a build built, as a new build that names the old one.

The new build has the old one's repository, ref and commit: its request's
own, or the one its verdict names, or one that f+1 of its replies name (a
disputed or timed-out build: one of them is honest); failing all of them,
its branch's head now, pinned like a new build's.

For a build that expanded into a matrix, `failed_of` picks the combinations to run again: those
whose verdict is other than a certified success (or skip), and whose last run again, if any,
has its verdict too; each is run again as above, naming the combination's build.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

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


class NothingToRerun(Exception):
    """Why none of a matrix's combinations is run again: the 409's reason."""


# A combination's verdict that needs no second run.
PASSED = ("success", "skipped")


def failed_of(matrix: dict, get: Callable[[int], dict | None]) -> list[dict]:
    """The records of the combinations of the matrix build `matrix` to run again (see the
    module's docstring), by `get` (a build's record by its id); NothingToRerun says why none."""
    build_id = matrix["build_id"]
    combinations = matrix["matrix_builds"]
    if not combinations:
        raise NothingToRerun(
            f"build {build_id} expanded into no matrix: run it again whole (POST /builds/{build_id}/rerun)")
    if any(combination["state"] == "pending" for combination in combinations):
        raise NothingToRerun(f"build {build_id} has combinations without a verdict yet")
    failed = [combination for combination in combinations
              if not (combination["state"] == "accepted" and combination["status"] in PASSED)]
    if not failed:
        raise NothingToRerun(f"no combination of build {build_id} failed")
    records = [record for combination in failed if (record := get(int(combination["build_id"]))) is not None]
    waiting = [record for record in records if not _running_again(record, get)]
    if not waiting:
        raise NothingToRerun(f"the failed combinations of build {build_id} are running again already")
    return waiting


def _running_again(record: dict, get: Callable[[int], dict | None]) -> bool:
    """Whether the build `record`'s last run again has no verdict yet."""
    return bool(record["reruns"]) and (get(int(record["reruns"][-1])) or {}).get("state") == "pending"


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
