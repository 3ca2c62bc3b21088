"""Checks made once the network has settled: every fault over, every request
answered, then `SimOptions.settle_s` of idle time with the clocks running.

- `converge` (checker c): every honest node has executed up to one sequence
  number and works in one view, none changing it. A node whose timer fired
  while its links lost messages may have asked alone for a later view: having
  said VIEW-CHANGE it may never work in an earlier view again (its promise
  keeps NEW-VIEWs safe), so the others join it once they are idle
  (`pbft.views.Views.lone_view_change`).
- `fetch`: an honest node that converged stopped asking for state; one
  still fetching in the second half of the settle time would fetch forever.
- `ledger` (checker e): every honest node's store holds the same verdict
  for each build. Two certified results never differ; no honest ledger
  stays open for a build another one certified (a picked builder that
  signed two results must not leave one open, `pbft.votes`); a result 2f+1
  honest nodes built is certified everywhere; and where no node is
  Byzantine, every node shows the same verdict state, since every vote
  was sent by an honest node to all. A node may show "expired" instead
  where the per-client bound (`ReplicaSettings.max_requests_per_client`)
  made its peers and itself forget the build before its votes reached it:
  it was down or far behind for that many of the client's requests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from pbft.sim.checkers import RequestKey, Violation

Agreed = tuple  # (status, exit_code, commit, artifacts)


@dataclass(frozen=True)
class NodeEnd:
    view: int
    changing_view: bool
    last_executed: int

    def __str__(self) -> str:
        return f"view {self.view}{' (changing)' if self.changing_view else ''} at seq {self.last_executed}"


def converged_nodes(ends: dict[int, NodeEnd]) -> set[int]:
    """The nodes in the most common end state, if that state is a working view."""
    common, _ = Counter(ends.values()).most_common(1)[0]
    return set() if common.changing_view else {node for node, end in ends.items() if end == common}


def convergence_failures(time_s: float, ends: dict[int, NodeEnd]) -> list[Violation]:
    if len(converged_nodes(ends)) == len(ends):
        return []
    shown = ", ".join(f"node {node} {end}" for node, end in sorted(ends.items()))
    return [Violation("converge", time_s, f"honest nodes did not converge after settling: {shown}")]


def late_fetch_failures(time_s: float, late: dict[int, str], converged: set[int]) -> list[Violation]:
    """`late`: node -> what it asked for, of FETCHes sent in the second half of the settle time."""
    return [
        Violation("fetch", time_s, f"node {node} kept sending FETCH after the network settled ({detail})")
        for node, detail in sorted(late.items())
        if node in converged
    ]


@dataclass(frozen=True)
class BuildView:
    """One node's record of one build: its own result and the verdict its ledger shows."""

    seq: int
    own: Agreed | None
    state: str  # certified, disputed, pending, expired or cancelled
    result: Agreed | None
    voters: frozenset[int] = frozenset()  # nodes whose RESULT vote this node kept

    def verdict(self) -> str:
        return self.state + ("" if self.result is None else f" {self.result[0]}/{self.result[1]}")


def agreed(result: dict | None) -> Agreed | None:
    return None if result is None else (result["status"], result["exit_code"], result["commit"], result.get("artifacts"))


def build_views(records: list[dict]) -> dict[RequestKey, BuildView]:
    """From a store's `build_records(seq)`."""
    return {
        (record["client"], record["timestamp"]): BuildView(
            record["seq"],
            agreed(record["own_result"]),
            record["verdict"]["state"],
            agreed(record["verdict"]["result"]),
            frozenset(vote["node"] for vote in record["votes"]),
        )
        for record in records
    }


def ledger_failures(
    time_s: float,
    ledgers: dict[int, dict[RequestKey, BuildView]],
    quorum: Callable[[int], int],
    byzantine_free: bool,
    delivered: set[tuple[int, RequestKey, int]] = frozenset(),
) -> list[Violation]:
    """`ledgers`: honest node -> build -> its view of it; `quorum(seq)`: the quorum of the members that ordered
    `seq` (2f+1 when n = 3f+1); `delivered`:
    (node, build, voter) for each honest vote that reached a running node, to tell a
    vote the network lost from one the node received and did not keep. The first
    failing build is reported."""
    keys = sorted({key for ledger in ledgers.values() for key in ledger})
    first, failing, kept_not, lost = None, 0, 0, 0
    for key in keys:
        views = {node: ledger[key] for node, ledger in sorted(ledgers.items()) if key in ledger}
        problem = _build_problem(views, quorum(next(iter(views.values())).seq), byzantine_free)
        if problem is None:
            continue
        failing += 1
        for node, view in views.items():
            for voter in _lacking(view, views):
                if (node, key, voter) in delivered:
                    kept_not += 1
                else:
                    lost += 1
        if first is None:
            seq = next(iter(views.values())).seq
            shown = "; ".join(f"node {node} {view.verdict()}{_missing(node, key, view, views, delivered)}"
                              for node, view in views.items())
            first = f"seq {seq} build {key}: {problem}: {shown}"
    if first is None:
        return []
    totals = f" [{failing} build(s) fail; honest votes missing: {kept_not} delivered but not kept, {lost} never delivered]"
    return [Violation("ledger", time_s, first + totals)]


def _lacking(view: BuildView, views: dict[int, BuildView]) -> list[int]:
    return sorted(voter for voter, other in views.items() if other.own is not None and voter not in view.voters)


def _missing(node: int, key: RequestKey, view: BuildView, views: dict[int, BuildView], delivered) -> str:
    """Which honest builders' votes this node lacks, and whether each ever reached it."""
    lacking = _lacking(view, views)
    if not lacking:
        return ""
    kept = [str(voter) for voter in lacking if (node, key, voter) in delivered]
    lost = [str(voter) for voter in lacking if (node, key, voter) not in delivered]
    parts = ([f"votes of {','.join(kept)} delivered, not kept"] if kept else []) + (
        [f"votes of {','.join(lost)} never delivered"] if lost else [])
    return " (" + "; ".join(parts) + ")"


def _build_problem(views: dict[int, BuildView], quorum: int, byzantine_free: bool) -> str | None:
    views = {node: view for node, view in views.items() if view.state != "expired"}
    if any(view.state == "cancelled" for view in views.values()):
        # Decided by the order (pbft.cancels), whatever results came first: the same everywhere.
        if any(view.state != "cancelled" for view in views.values()):
            return "cancelled by the order on some honest ledgers, not on all"
        return None
    certified = {view.result for view in views.values() if view.state == "certified"}
    if len(certified) > 1:
        return "two results certified"
    if certified and any(view.state == "pending" for view in views.values()):
        # After the settle time every vote an honest node holds has reached the others that
        # ask: a build certified on one honest ledger is decided on every one.
        return "certified on some honest ledgers, still open on others"
    built = Counter(view.own for view in views.values() if view.own is not None)
    if built:
        result, count = built.most_common(1)[0]
        if count >= quorum and any(view.state != "certified" or view.result != result for view in views.values()):
            return f"{count} honest nodes built {result[0]}/{result[1]} but not every ledger certifies it"
    if byzantine_free and len({(view.state, view.result) for view in views.values()}) > 1:
        return "honest ledgers disagree"
    return None
