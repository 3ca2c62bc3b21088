"""What clients ask for and what builds return in the simulation.

A build's agreed outcome is a pure function of its operation, as with a real
pinned commit, so honest nodes agree; the free-text reason carries the
build time and so differs between nodes, as real logs would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pbft.encoding import digest
from pbft.messages import Operation, Result

REPOSITORY = "example"


@dataclass(frozen=True)
class Submission:
    time_s: float
    client: str
    operation: Operation


def build_result(operation: Operation, build_s: float) -> Result:
    """`pass-*` succeeds, `fail-<code>-*` fails with that exit code, anything else is an error."""
    commit = digest(operation.branch)[:40]
    reason = f"built in {build_s:.3f}s"
    if operation.branch.startswith("pass-"):
        return Result("success", 0, commit, reason)
    if operation.branch.startswith("fail-"):
        return Result("failure", int(operation.branch.split("-")[1]), commit, reason)
    return Result("error", None, None, f"no such branch; {reason}")


def make_workload(rng: random.Random, requests: int, clients: list[str], submit_window_s: float) -> list[Submission]:
    """`requests` submissions at random times; close times make concurrent requests and batches."""
    submissions = []
    for index in range(requests):
        branch = rng.choice((f"pass-{index}", f"fail-{rng.randint(1, 125)}-{index}", f"missing-{index}"))
        submissions.append(Submission(rng.uniform(0.0, submit_window_s), rng.choice(clients), Operation(REPOSITORY, branch)))
    return sorted(submissions, key=lambda submission: submission.time_s)
