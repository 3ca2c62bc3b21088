"""How a build's request ended: one type, matched on, instead of flags.

A verdict is one of five outcomes, and each carries what is true of it alone:

- `Accepted`: f+1 replies agree (2f+1 for a result with artifacts: pbft.replies), on
  `result`; a matrix verdict names the builds it started, a cancelled build the cancel
  that decided it.
- `Divergent`: the nodes agree on everything but the artifacts' bytes; `result` is what
  they agree on, `artifacts_by_node` each replying node's manifest digest.
- `Disputed`: no result has, or can get, 2f+1 replies (honest nodes disagree, e.g. a
  flaky test); `split` holds each node's result.
- `TimedOut`: no quorum before the deadline; `progress` says where f+1 nodes said the
  build was (queued or running) when the client stopped waiting.
- `Abandoned`: the client shut down first; the network may still build it, and the
  client follows it again when it restarts.

A reader matches on the case (`match verdict.outcome: case Accepted(result=result): ...`),
so no code can read a result that a timed-out build does not have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pbft.build import Result, flaky_steps
from pbft.messages import Reply

# A matrix's combination as an Operation names it: (axis, value) pairs.
Combination = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Accepted:
    result: Result
    agreed_by: list[int]
    # When f+1 replies first agreed (the verdict before the client waited for it to settle).
    quorum_ms: float | None = None
    # A `matrix` verdict: the build started for each of its combinations, by id.
    matrix: tuple[tuple[str, Combination], ...] = ()
    # A build the order cancelled (pbft.cancels): the id of the cancel whose verdict decided it.
    cancelled_by: str | None = None


@dataclass(frozen=True)
class Divergent:
    result: Result
    artifacts_by_node: dict[int, str | None]


@dataclass(frozen=True)
class Disputed:
    split: dict[int, Result]
    quorum_ms: float | None = None


@dataclass(frozen=True)
class TimedOut:
    progress: str | None = None


@dataclass(frozen=True)
class Abandoned:
    pass


Outcome = Accepted | Divergent | Disputed | TimedOut | Abandoned


@dataclass(frozen=True)
class Verdict:
    """How one request ended, with the signed replies the client had by then."""

    build_id: str
    outcome: Outcome
    replies: list[Reply]
    elapsed_ms: int


def disputed_result(split: dict[int, Result], f: int) -> dict[str, Any]:
    """A disputed build's result: the status `disputed`, each node's result under `split`,
    which said what in one line (`reason`), and the commit f+1 of them name, if any."""
    commits = Counter(result.commit for result in split.values() if result.commit is not None)
    commit, count = commits.most_common(1)[0] if commits else (None, 0)
    return {
        "status": "disputed",
        "exit_code": None,
        "commit": commit if count >= f + 1 else None,
        "reason": disputed_reason(split),
        "split": {str(node): _said(result) for node, result in split.items()},
    }


def _said(result: Result) -> dict[str, Any]:
    """What one node said of a disputed build."""
    said = {"status": result.status, "exit_code": result.exit_code, "commit": result.commit}
    return {**said, "reason": result.reason} if result.reason else said


def disputed_reason(split: dict[int, Result]) -> str:
    """One line: which nodes said what, e.g. "nodes 0, 1: success (exit 0); nodes 2, 3: failure (exit 1)"."""
    groups: dict[tuple, list[int]] = {}
    for node, result in split.items():
        groups.setdefault((result.status, result.exit_code), []).append(node)
    parts = []
    for (status, exit_code), nodes in groups.items():
        said = status if exit_code is None else f"{status} (exit {exit_code})"
        parts.append(f"node{'s' if len(nodes) > 1 else ''} {', '.join(map(str, nodes))}: {said}")
    flaky = flaky_steps(split)
    if flaky:
        parts += [step.describe() for step in flaky]
    elif len(groups) == 1:
        parts.append("but not on the commit, spec, steps or images they ran (see split)")
    return "; ".join(parts)
