"""The CI around the verdict, as the simulator runs it: cancels, re-runs, schedules, branches
whose head moves, and each node's executor (build slots, a queue, the memory a restart loses).

A seed's CI plan is drawn from an RNG of its own (`ci_rng`), so that it left every other draw
of the seed (configuration, workload, faults, delays) as it was. Each part is drawn for
about a third of the seeds (`CiPlan.kinds` names those a seed has):

- `cancel`: a client cancels some of its builds, a moment after it asked for them, often
  while they run or wait for a slot (`pbft.cancels`);
- `rerun`: a client asks again for what an earlier request built, its commit pinned;
- `schedule`: requests of the event `cron`, each naming its slot;
- `moving-branch`: branches whose head moves while requests of them are ordered and built,
  so that a node's fetch at another moment sees another commit; the client pins the head
  when it signs (`client/heads.py`), unless `SimOptions.pin_heads` is off, which shows the
  honest disagreement pinning prevents;
- `slots`: one build slot per node, so builds queue and start minutes apart on busy nodes;
- `restart-mid-build`: a node killed while it builds, started again later: its executor's
  memory is gone, and it builds again only what the order still owes;
- `transfer-past-cancel`: a node cut off while a cancel of a build it runs is ordered, with
  checkpoints close together, so that it learns the cancel by state transfer;
- `network-change`: changes of the network document from the menu of `pbft.sim.networks`,
  some of which the order makes stale or which too few owners signed;
- `redeliver`: one forge delivery asked for by two or three requests a moment apart, from
  another client when there is one, each naming the delivery: the order builds the first
  and answers the others `skipped` (`pbft.deliveries`).

The two node faults take a node the fault plan made faulty already (with a network fault,
never a Byzantine one), or any node when the plan has none: never more than f faulty nodes.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from pbft.build import Operation, Result
from pbft.encoding import digest
from pbft.sim.faults import BYZANTINE_KINDS, FaultPlan, Window
from pbft.sim.networks import MENU
from pbft.sim.workload import GREEDY_CLIENT, REPOSITORY, Submission, Workload

KINDS = ("cancel", "rerun", "schedule", "moving-branch", "slots", "restart-mid-build", "transfer-past-cancel",
         "network-change", "redeliver")
# A redelivery comes this long after the request it repeats, at most.
REDELIVER_S = 3.0
MOVING = "moving-"
# How long a killed container takes to go, as the executor's kill does.
STOP_S = 0.05
UNBOUNDED_SLOTS = 1_000_000


def ci_rng(seed: int) -> random.Random:
    return random.Random(f"ci-{seed}")


@dataclass(frozen=True)
class CiSubmission(Submission):
    """A submission whose operation depends on what went before: the cancel of an earlier
    submission, or the re-run or the redelivery of one (the operation its request had, pinned
    commit, delivery and all)."""

    cancels: Submission | None = None
    rerun_of: Submission | None = None
    change: str | None = None  # a change of the network document: its name in `pbft.sim.networks.MENU`
    redelivers: Submission | None = None  # a request naming a delivery: another request for it


@dataclass(frozen=True)
class NodeOutage:
    node: int
    window: Window


@dataclass
class CiPlan:
    kinds: list[str]
    submissions: list[Submission]
    moving: dict[str, tuple[float, ...]]  # branch -> the times its head moves
    slots: int
    restart_mid_build: NodeOutage | None = None
    transfer_past_cancel: NodeOutage | None = None
    faulty: frozenset[int] = field(default_factory=frozenset)  # nodes its outages take

    @classmethod
    def none(cls) -> CiPlan:
        """No CI operation, and as many build slots as builds."""
        return cls([], [], {}, UNBOUNDED_SLOTS)

    def describe(self) -> str:
        parts = [f"slots={self.slots}" if self.slots < UNBOUNDED_SLOTS else "slots=any"]
        parts += [f"{kind} x{sum(1 for item in self.submissions if _kind_of(item) == kind)}"
                  for kind in ("cancel", "rerun", "schedule", "moving-branch", "network-change", "redeliver")
                  if kind in self.kinds]
        parts += [f"{name} node={outage.node} {outage.window}" for name, outage in (
            ("restart-mid-build", self.restart_mid_build), ("transfer-past-cancel", self.transfer_past_cancel)) if outage]
        return " ".join(parts)

    @property
    def heal_s(self) -> float:
        return max((outage.window.end_s for outage in (self.restart_mid_build, self.transfer_past_cancel) if outage),
                   default=0.0)


def choose_ci_plan(
    rng: random.Random, workload: Workload, plan: FaultPlan, build_max_s: float, primary_faults: bool = True
) -> CiPlan:
    """Draw the seed's CI operations on top of its workload and fault plan. Without
    `primary_faults`, node 0 is never taken by an outage (`pbft.sim.faults.choose_plan`)."""
    kinds: list[str] = []
    correct = [submission for submission in workload.submissions if submission.client != GREEDY_CLIENT]
    extra: list[Submission] = []
    moving: dict[str, tuple[float, ...]] = {}
    if correct and rng.random() < 0.35:
        kinds.append("moving-branch")
        span_s = max(workload.span_s, 1.0) + build_max_s
        for index in range(rng.randint(1, 3)):
            branch = f"{MOVING}{index}"
            moving[branch] = tuple(sorted(rng.uniform(0.0, span_s) for _ in range(rng.randint(1, 6))))
            for _ in range(rng.randint(1, 4)):
                at = rng.choice(correct)
                extra.append(Submission(rng.uniform(max(0.0, at.time_s - 1.0), at.time_s + 1.0), at.client,
                                        Operation(REPOSITORY, branch)))
    builds = correct + extra
    if builds and rng.random() < 0.35:
        kinds.append("schedule")
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(builds)
            branch = rng.choice(list(moving) or ["pass-nightly"])
            time_s = at.time_s + rng.uniform(0.0, 1.0)
            extra.append(Submission(time_s, at.client, Operation(REPOSITORY, branch, event="cron", slot=int(time_s))))
    builds = correct + extra
    if builds and rng.random() < 0.35:
        kinds.append("rerun")
        for _ in range(rng.randint(1, 3)):
            original = rng.choice(builds)
            extra.append(CiSubmission(original.time_s + rng.uniform(0.1, 2 * build_max_s), original.client,
                                      original.operation, rerun_of=original))
    targets = [submission for submission in correct + extra if not isinstance(submission, CiSubmission)]
    cancelled: list[Submission] = []
    if targets and rng.random() < 0.35:
        kinds.append("cancel")
        for target in rng.sample(targets, min(len(targets), rng.randint(1, 4))):
            cancelled.append(target)
            extra.append(CiSubmission(target.time_s + rng.uniform(0.0, build_max_s + 0.5), target.client,
                                      target.operation, cancels=target))
    slots = 1 if rng.random() < 0.35 else rng.randint(2, 4)
    if slots == 1:
        kinds.append("slots")
    ci = CiPlan(kinds, extra, moving, slots)
    eligible = [node for node in _eligible_nodes(plan) if primary_faults or node != 0]
    if eligible and builds and rng.random() < 0.3:
        node = rng.choice(eligible)
        start_s = rng.choice(builds).time_s + rng.uniform(0.0, build_max_s)
        ci.restart_mid_build = NodeOutage(node, Window(start_s, start_s + rng.uniform(0.2, 8.0)))
        ci.kinds.append("restart-mid-build")
    if eligible and cancelled and rng.random() < 0.5:
        node = ci.restart_mid_build.node if ci.restart_mid_build else rng.choice(eligible)
        target = rng.choice(cancelled)
        start_s = target.time_s + rng.uniform(0.05, 0.5)
        ci.transfer_past_cancel = NodeOutage(node, Window(start_s, start_s + rng.uniform(3.0, 15.0)))
        ci.kinds.append("transfer-past-cancel")
    ci.faulty = frozenset(outage.node for outage in (ci.restart_mid_build, ci.transfer_past_cancel) if outage)
    # Drawn last, so that the draws above stay what they were before changes existed.
    if correct and rng.random() < 0.35:
        ci.kinds.append("network-change")
        for name in ["first", *rng.sample(MENU, rng.randint(1, len(MENU)))]:
            at = rng.choice(correct)
            ci.submissions.append(CiSubmission(at.time_s + rng.uniform(0.0, 2.0), at.client, at.operation, change=name))
    # Drawn after the changes, for the same reason: every seed's draws above stay what they were.
    if correct and rng.random() < 0.35:
        ci.kinds.append("redeliver")
        ci.submissions += _redeliveries(rng, correct)
    return ci


def _redeliveries(rng: random.Random, correct: list[Submission]) -> list[Submission]:
    """A few deliveries, each asked for by one client and again, a moment later, by another
    (by the same one when there is only one): two webhooks of one delivery reaching two
    clients, sometimes a third. Each names its delivery as `sim:<index>`."""
    clients = sorted({submission.client for submission in correct})
    submissions: list[Submission] = []
    for index in range(rng.randint(1, 3)):
        at = rng.choice(correct)
        first = Submission(at.time_s, at.client, Operation(REPOSITORY, at.operation.branch, delivery=f"sim:{index}"))
        submissions.append(first)
        others = [client for client in clients if client != first.client] or clients
        for _ in range(2 if rng.random() < 0.3 else 1):
            submissions.append(CiSubmission(first.time_s + rng.uniform(0.0, REDELIVER_S), rng.choice(others),
                                            first.operation, redelivers=first))
    return submissions


def _eligible_nodes(plan: FaultPlan) -> list[int]:
    """Nodes a CI outage may take without making more than f faulty: the faulty ones that only
    suffer network faults, or, when the plan has no faulty node, any node."""
    if plan.blackout is not None:
        return []
    if not plan.faulty:
        return list(range(plan.n)) if plan.f else []
    return sorted(fault.node for fault in plan.node_faults if fault.kind not in BYZANTINE_KINDS)


class Heads:
    """Each moving branch's head over time: one commit per stretch between two moves."""

    def __init__(self, moving: dict[str, tuple[float, ...]]) -> None:
        self.moving = moving

    def head(self, branch: str, time_s: float) -> str | None:
        """The commit `branch` names at `time_s`; None for a branch that does not exist."""
        if branch in self.moving:
            return digest([branch, sum(1 for moved_s in self.moving[branch] if moved_s <= time_s)])[:40]
        if branch.startswith(("pass-", "fail-", "art-", "noisy-")):
            return digest(branch)[:40]
        return None

    def on_branch(self, commit: str, branch: str, time_s: float) -> bool:
        """Whether `commit` is the head of `branch` at `time_s` or was before (its history)."""
        if branch not in self.moving:
            return commit == self.head(branch, time_s)
        moves = sum(1 for moved_s in self.moving[branch] if moved_s <= time_s)
        return any(commit == digest([branch, count])[:40] for count in range(moves + 1))

    def result(self, operation: Operation, fetched_s: float) -> Result | None:
        """A moving branch's build, fetched at `fetched_s`: its pinned commit if that is on the
        branch then, the head then if none is pinned; None for any other branch."""
        if operation.branch not in self.moving:
            return None
        commit = operation.commit
        if commit is None:
            commit = self.head(operation.branch, fetched_s)
        elif not self.on_branch(commit, operation.branch, fetched_s):
            return Result("error", None, None, f"commit {commit} is not on branch {operation.branch!r}")
        return Result("success", 0, commit, f"fetched at {fetched_s:.3f}s")


@dataclass
class Running:
    seq: int
    request: object  # pbft.messages.Request
    done_s: float


class SimExecutor:
    """One node's executor, as builder/executor.py keeps it: `slots` builds at once, the rest
    waiting in order, and what runs or waits only in memory (a crash loses it all)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running: dict[tuple[str, int], Running] = {}
        self.waiting: deque[tuple[int, object]] = deque()

    def start(self, seq: int, request) -> bool:
        """Take a build: whether it runs at once (else it waits for a slot)."""
        if len(self.running) < self.slots:
            return True
        self.waiting.append((seq, request))
        return False

    def run(self, seq: int, request, done_s: float) -> None:
        assert len(self.running) < self.slots and request.key not in self.running
        self.running[request.key] = Running(seq, request, done_s)

    def finish(self, key: tuple[str, int]) -> tuple[int, object] | None:
        """A build ended: the one that takes its slot, if any waits."""
        self.running.pop(key, None)
        return self.waiting.popleft() if self.waiting and len(self.running) < self.slots else None

    def stop(self, key: tuple[str, int]) -> tuple[int, object] | None:
        """Stop a build that runs or waits here: its (seq, request), or None if it does neither."""
        running = self.running.get(key)
        if running is not None:
            return running.seq, running.request
        for entry in self.waiting:
            if entry[1].key == key:
                self.waiting.remove(entry)
                return entry
        return None


def _kind_of(submission: Submission) -> str:
    if isinstance(submission, CiSubmission):
        if submission.change is not None:
            return "network-change"
        if submission.redelivers is not None:
            return "redeliver"
        return "cancel" if submission.cancels is not None else "rerun"
    if submission.operation.delivery is not None:
        return "redeliver"
    if submission.operation.event == "cron":
        return "schedule"
    return "moving-branch"
