"""Which faults a seed suffers, and when: the fault plan.

A plan is drawn from the seed's RNG before anything runs, so a seed names
one exact scenario. At most f nodes are faulty. Network faults (crash,
power loss, isolation, lossy links, splits, network-wide loss, blackouts)
all end by `heal_s`; Byzantine nodes stay Byzantine for the whole run,
since PBFT must stay live with f of them. Liveness is judged only after
`heal_s` (and after a restart the run itself schedules, see
`restart-after-transfer`).

Lagging is not a fault. A `Lag` makes one node lose or receive late a
share of the messages sent to it for a while; under PBFT that is only
asynchrony, so lagging nodes do not count toward f, come on top of up to f
real faults, and must order every request once the lag ends. Plans
sometimes make the next primary (node 1) lag while the primary (node 0)
crashes: the lagging node then leads a view change it is behind for.

Power loss and stores. A node fsyncs every step that sends, signs or builds
something and leaves steps that only took messages in unsynced
(`pbft.effects.must_sync`). A `power-loss` or `blackout` therefore drops
the unsynced steps after the node's last synced one (`pbft.sim.store`):
as if the messages they took in had been lost on the way. Every checker
applies. With `SimOptions.unsynced_stores` (off by default) no step is
synced and a power loss drops the node's last saved step, messages it
already sent included, as synchronous=NORMAL throughout can: the node
becomes amnesiac, which PBFT counts as Byzantine. Such seeds show why a
step that sends must be synced; their violations are expected, not core
bugs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from pbft.slot import ReplicaSettings

# A faulty node's misbehaviour while its window lasts; it is honest otherwise.
# `power-loss` is a crash of the whole machine; `restart-after-transfer` crashes
# a node in its window and again soon after its first state transfer;
# `crash-mid-turn` kills the node (or cuts its power) at the first end of a turn
# in its window, between its steps and their save, sometimes just after a read
# of its ledger wrote what waited unsynced (as `GET /builds/{seq}` does);
# `disk-full`: the node's disk takes no write in its window, so its first save there
# fails and stops it (`pbft.interpreter`); it is started again once space is freed.
NETWORK_KINDS = ("crash", "isolate", "lossy", "power-loss", "restart-after-transfer", "crash-mid-turn", "disk-full")
DOWN_KINDS = ("crash", "power-loss", "restart-after-transfer")  # the node is down during its window
# Behaviours of a node that runs its replica but lies about what it sends (issue 3, item 6).
DRAWN_BYZANTINE_KINDS = (
    "silent", "crash-after", "equivocate", "lie", "forge", "delay", "vc-spam", "absurd-seq", "vote-flood",
    "censor", "withhold-relay",
)
# `equivocate-results`: signs one RESULT for half of its peers and another for the rest. It
# is not among the kinds `choose_plan` draws from, so that adding it moved no other seed's
# draws: `with_result_equivocation` makes a faulty node of a plan one, from a draw of its own.
# `slow-primary`: the primary of view 0 sends each PRE-PREPARE late, by a delay drawn just
# inside the view-change timer (everything else on time): a network it keeps slow without
# being suspected, or suspected late, must still give every request its verdict. Drawn
# apart, as `equivocate-results` is (`with_slow_primary`).
# `pad`: the primary of view 0 pads its first few batches with copies of their requests, as many
# as a PRE-PREPARE may hold, then pre-prepares nothing (`pbft.sim.primaries.Pad`): the view
# change that replaces it must not carry those batches. Drawn apart too, in place of another
# faulty node (`with_padding_primary`).
# `drop-proofs`: the primary of view 0 strips the certified verdicts from its PRE-PREPAREs and
# is otherwise honest (`pbft.sim.primaries.DropProofs`): the backups, whose timers run for the
# verdicts they hold and see not logged, must replace it. Drawn apart, in place of another
# faulty node (`with_proof_dropping_primary`).
# `fill`: the primary of view 0 leaves a hole in the order and pre-prepares every sequence
# number of the window above it, each batch as large as the requests it has seen make it
# (`pbft.sim.primaries.Fill`): the VIEW-CHANGEs that replace it must still fit a frame, which
# such seeds scale to the simulator's small requests (`FILL_FRAME_BYTES`). Drawn apart, in
# place of another faulty node (`with_filling_primary`).
BYZANTINE_KINDS = DRAWN_BYZANTINE_KINDS + ("equivocate-results", "slow-primary", "pad", "drop-proofs", "fill")
# The frame a seed with a `fill` primary checks against (`pbft.sim.frames`): a node's 8 MiB
# scaled to the simulator's batches of a few kB, so that a window of them would not fit, but
# not below what a window of prepared certificates takes (about 1.2 kB a slot at n = 4).
FILL_FRAME_BYTES = 1024 * 1024
# The client a `censor` node never lets a request of through, and the client that keeps
# the network busy meanwhile, so that only the censored request waits (`pbft.sim.cluster`).
CENSORED_CLIENT = "client-0"
BUSY_CLIENT = "busy"
# The simulated replicas' view-change timer: the settings' default (`pbft.sim.cluster`).
VIEW_CHANGE_TIMEOUT_S = next(item.default for item in fields(ReplicaSettings) if item.name == "view_change_timeout_s")
# Faults by which a node that may be primary keeps a pre-prepare or a relay from one correct
# node, which then rightly catches up by transfer (`pbft.sim.cluster`'s build checker).
WITHHOLDING_KINDS = (
    "equivocate", "lossy", "isolate", "withhold-relay", "delay", "crash-after", "censor", "slow-primary", "pad",
    "fill",
)
# Faults that take a node out of the quorums for their window (for the run, without one).
OUT_KINDS = DOWN_KINDS + ("crash-mid-turn", "disk-full", "isolate", "silent", "crash-after")
# Faults that touch every node, so they may strand the primary's messages too.
GLOBAL_KINDS = ("split", "drop", "blackout")
# Not faults: a node that is only slow or on a lossy link for a while.
LAG_KINDS = ("lag", "next-primary-lag")


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float

    def covers(self, time_s: float) -> bool:
        return self.start_s <= time_s < self.end_s

    def __str__(self) -> str:
        return f"{self.start_s:.2f}-{self.end_s:.2f}s"


@dataclass(frozen=True)
class NodeFault:
    kind: str
    node: int
    window: Window | None = None  # network kinds only
    drop_p: float = 0.0  # lossy
    messages: int = 0  # crash-after; pad: the batches it pads; fill: the requests it sees first
    delay_s: float = 0.0  # delay; restart-after-transfer: from the first transfer to the second crash
    down_s: float = 0.0  # restart-after-transfer: how long the second crash lasts

    def label(self) -> str:
        detail = {
            "lossy": f" p={self.drop_p:.2f}",
            "crash-after": f" {self.messages}",
            "pad": f" {self.messages}",
            "fill": f" after {self.messages} requests",
            "delay": f" {self.delay_s * 1000:.0f}ms",
            "slow-primary": f" {self.delay_s * 1000:.0f}ms",
            "restart-after-transfer": f" then +{self.delay_s:.2f}s down {self.down_s:.2f}s",
        }
        window = f" {self.window}" if self.window else ""
        return f"{self.kind}{detail.get(self.kind, '')} node={self.node}{window}"


@dataclass(frozen=True)
class Lag:
    """Messages sent to `node` during `window` are lost with `drop_p` or arrive up to `delay_s` late."""

    node: int
    window: Window
    drop_p: float
    delay_s: float

    def label(self) -> str:
        return f"lag node={self.node} p={self.drop_p:.2f} +{self.delay_s * 1000:.0f}ms {self.window}"


@dataclass(frozen=True)
class Blackout:
    """Every node loses power at `start_s`; node i is back at `restart_s[i]`."""

    start_s: float
    restart_s: tuple[float, ...]

    def window(self, node: int) -> Window:
        return Window(self.start_s, self.restart_s[node])


@dataclass(frozen=True)
class FaultPlan:
    n: int
    f: int
    heal_s: float
    delay_min_s: float = 0.001
    delay_max_s: float = 0.05
    duplicate_p: float = 0.0
    node_faults: tuple[NodeFault, ...] = ()
    lags: tuple[Lag, ...] = ()
    split: tuple[frozenset[int], Window] | None = None
    drop: tuple[float, Window] | None = None  # network-wide loss probability
    blackout: Blackout | None = None
    faulty: frozenset[int] = field(init=False)
    lagging: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faulty", frozenset(fault.node for fault in self.node_faults))
        object.__setattr__(self, "lagging", frozenset(lag.node for lag in self.lags))
        assert len(self.faulty) <= self.f, "a plan may make at most f nodes faulty"
        assert not self.faulty & self.lagging, "a lagging node is correct, not one of the f faulty"

    def byzantine(self) -> dict[int, NodeFault]:
        return {fault.node: fault for fault in self.node_faults if fault.kind in BYZANTINE_KINDS}

    def fault_of(self, node: int) -> NodeFault | None:
        return next((fault for fault in self.node_faults if fault.node == node), None)

    def censors(self) -> bool:
        return any(fault.kind == "censor" for fault in self.node_faults)

    def loses_power(self, node: int) -> bool:
        fault = self.fault_of(node)
        return self.blackout is not None or (fault is not None and fault.kind in ("power-loss", "crash-mid-turn"))

    def next_primary_lags(self) -> bool:
        """F1's scenario: the primary of view 0 goes down while the primary of view 1 lags."""
        primary = self.fault_of(0)
        return primary is not None and primary.kind in DOWN_KINDS and 1 % self.n in self.lagging

    def short_of_quorum_from(self) -> float | None:
        """The first time more than f nodes are out or lagging at once (a node down or stopped
        in its fault's window, a silent one throughout, a lagging one in its lag's window),
        or None. The others are then fewer than a quorum: nothing commits, and a correct node
        whose timer fires first leaves the view alone, as under any asynchrony, and later
        catches up by transfer (seed 5570: a backup down while another lags)."""
        spans = [(fault.window.start_s, fault.window.end_s) if fault.window is not None else (0.0, float("inf"))
                 for fault in self.node_faults if fault.kind in OUT_KINDS]
        spans += [(lag.window.start_s, lag.window.end_s) for lag in self.lags]
        for start_s in sorted(start for start, _ in spans):
            if sum(1 for start, end in spans if start <= start_s < end) > self.f:
                return start_s
        return None

    def kinds(self) -> list[str]:
        kinds = [fault.kind for fault in self.node_faults]
        kinds += ["lag"] if self.lags else []
        kinds += ["next-primary-lag"] if self.next_primary_lags() else []
        kinds += [kind for kind, present in (("split", self.split), ("drop", self.drop), ("blackout", self.blackout))
                  if present]
        return kinds or ["none"]

    def describe(self) -> str:
        parts = [fault.label() for fault in self.node_faults] + [lag.label() for lag in self.lags]
        if self.split:
            side, window = self.split
            parts.append(f"split {sorted(side)} {window}")
        if self.drop:
            drop_p, window = self.drop
            parts.append(f"drop p={drop_p:.2f} {window}")
        if self.blackout:
            parts.append(f"blackout {self.blackout.start_s:.2f}s back {max(self.blackout.restart_s):.2f}s")
        parts.append(f"dup p={self.duplicate_p:.2f} delay {self.delay_min_s * 1000:.0f}-{self.delay_max_s * 1000:.0f}ms")
        return f"n={self.n} f={self.f} heal={self.heal_s:.2f}s " + ", ".join(parts)


def _window(rng: random.Random, heal_s: float) -> Window:
    start_s = rng.uniform(0.0, heal_s * 0.6)
    return Window(start_s, rng.uniform(start_s + 0.5, heal_s))


def _node_fault(rng: random.Random, kind: str, node: int, heal_s: float) -> NodeFault:
    if kind == "restart-after-transfer":
        return NodeFault(kind, node, _window(rng, heal_s), delay_s=rng.uniform(0.0, 2.0), down_s=rng.uniform(0.5, 5.0))
    if kind in NETWORK_KINDS:
        return NodeFault(kind, node, _window(rng, heal_s), drop_p=rng.uniform(0.1, 0.7) if kind == "lossy" else 0.0)
    if kind == "crash-after":
        return NodeFault(kind, node, messages=rng.randint(0, 150))
    if kind == "delay":
        return NodeFault(kind, node, delay_s=rng.uniform(0.05, 3.0))
    return NodeFault(kind, node)


def _lag(rng: random.Random, node: int, heal_s: float, window: Window | None = None) -> Lag:
    lossy = rng.random() < 0.7
    return Lag(
        node,
        window or _window(rng, heal_s),
        drop_p=rng.uniform(0.2, 1.0) if lossy else 0.0,
        delay_s=rng.uniform(0.0, 0.5) if lossy else rng.uniform(0.2, 3.0),
    )


def choose_plan(
    rng: random.Random, n: int, f: int, primary_faults: bool, horizon_s: float = 10.0,
    idle_gaps: list[tuple[float, float]] | None = None,
) -> FaultPlan:
    """Draw one scenario. Without `primary_faults`, node 0 (primary of view 0)
    stays correct and every link to it stays up: only view change could
    recover from a faulty primary, a quorum-less split, network-wide loss or
    a blackout. `horizon_s` is how long the workload lasts: faults usually
    come in its first ten seconds, sometimes anywhere in it. `idle_gaps`
    (the workload's, as (last request before, first after)) let F1's
    scenario put the primary's crash where nothing is left to order.
    """
    heal_s = rng.uniform(2.0, 10.0) if rng.random() < 0.7 else rng.uniform(2.0, max(10.0, min(horizon_s, 120.0)))
    eligible = list(range(n)) if primary_faults else list(range(1, n))
    faulty = rng.sample(eligible, rng.randint(0, f) if rng.random() < 0.3 else f)
    kinds = NETWORK_KINDS + DRAWN_BYZANTINE_KINDS
    node_faults = [_node_fault(rng, rng.choice(kinds), node, heal_s) for node in sorted(faulty)]
    lags = []
    if primary_faults and rng.random() < 0.12:
        node_faults, lag, heal_s = _next_primary_lags(rng, f, node_faults, heal_s, idle_gaps or [])
        lags.append(lag)
    elif rng.random() < 0.35:
        correct = [node for node in eligible if node not in faulty]
        count = 1 if n < 7 or rng.random() < 0.5 else 2
        for node in rng.sample(correct, min(count, len(correct))):
            lags.append(_lag(rng, node, heal_s))
    split = drop = blackout = None
    if primary_faults and rng.random() < 0.3:
        choice = rng.random()
        if choice < 0.4:
            split = (frozenset(rng.sample(range(n), n // 2)), _window(rng, heal_s))
        elif choice < 0.8:
            drop = (rng.uniform(0.01, 0.1), _window(rng, heal_s))
        else:
            start_s = rng.uniform(0.0, heal_s * 0.6)
            blackout = Blackout(start_s, tuple(rng.uniform(start_s + 0.2, heal_s) for _ in range(n)))
    return FaultPlan(
        n=n,
        f=f,
        heal_s=heal_s,
        delay_max_s=rng.uniform(0.005, 0.05),
        duplicate_p=rng.uniform(0.0, 0.05),
        node_faults=tuple(sorted(node_faults, key=lambda fault: fault.node)),
        lags=tuple(lags),
        split=split,
        drop=drop,
        blackout=blackout,
    )


def with_result_equivocation(plan: FaultPlan, seed: int, picked_builders: bool) -> FaultPlan:
    """`plan`, or the same plan with one of its faulty nodes made one that signs two RESULTs
    for each build (`equivocate-results`): for two fifths of the seeds with `picked_builders`
    (where it is most telling, `pbft.builders`) and a tenth of the others. Drawn from a stream
    of the seed's own, so a seed that draws no such node runs exactly as before the kind existed."""
    rng = random.Random(f"result-equivocation-{seed}")
    if not plan.faulty or rng.random() >= (0.4 if picked_builders else 0.1):
        return plan
    node = rng.choice(sorted(plan.faulty))
    faults = tuple(NodeFault("equivocate-results", node) if fault.node == node else fault for fault in plan.node_faults)
    return replace(plan, node_faults=faults)


def drawn_apart(plan: FaultPlan, seed: int, picked_builders: bool, primary_faults: bool) -> FaultPlan:
    """`plan` with the kinds added after `choose_plan`'s draws were fixed, each from a stream of its own."""
    plan = with_result_equivocation(plan, seed, picked_builders)
    plan = with_slow_primary(plan, seed, primary_faults, VIEW_CHANGE_TIMEOUT_S)
    plan = with_padding_primary(plan, seed, primary_faults)
    plan = with_proof_dropping_primary(plan, seed, primary_faults)
    return with_filling_primary(plan, seed, primary_faults)


def with_filling_primary(plan: FaultPlan, seed: int, primary_faults: bool) -> FaultPlan:
    """`plan`, or for a tenth of the seeds whose primary may be faulty and whose plan has a
    faulty node, node 0 not among them, the same plan with node 0 a `fill` that leaves its hole
    once it has seen 8 to 16 requests (the more, the larger its batches), in place of one of
    them. From a stream of the seed's own."""
    return _primary_in_place(plan, random.Random(f"filling-primary-{seed}"), primary_faults,
                             lambda rng: NodeFault("fill", 0, messages=rng.randint(8, 16)))


def with_proof_dropping_primary(plan: FaultPlan, seed: int, primary_faults: bool) -> FaultPlan:
    """`plan`, or for a tenth of the seeds whose primary may be faulty and whose plan has a
    faulty node, node 0 not among them, the same plan with node 0 a `drop-proofs` in place of
    one of them. From a stream of the seed's own, as `with_padding_primary`'s."""
    return _primary_in_place(plan, random.Random(f"proof-dropping-primary-{seed}"), primary_faults,
                             lambda rng: NodeFault("drop-proofs", 0))


def with_padding_primary(plan: FaultPlan, seed: int, primary_faults: bool) -> FaultPlan:
    """`plan`, or for a tenth of the seeds whose primary may be faulty and whose plan has a
    faulty node, node 0 not among them, the same plan with node 0 a `pad` for its first 1 to 24
    batches in place of one of them (a seed without faults keeps none). From a stream of the
    seed's own, as `with_slow_primary`'s."""
    return _primary_in_place(plan, random.Random(f"padding-primary-{seed}"), primary_faults,
                             lambda rng: NodeFault("pad", 0, messages=rng.randint(1, 24)))


def _primary_in_place(plan: FaultPlan, rng: random.Random, primary_faults: bool,
                      fault: Callable[[random.Random], NodeFault]) -> FaultPlan:
    """`plan`, or where the primary may be faulty, the plan has a faulty node and node 0 is
    neither faulty nor lagging, for a tenth of such draws of `rng`: the plan with node 0 the
    primary `fault` makes (from `rng`, after that draw) in place of its last faulty node."""
    faulty = sorted({drawn.node for drawn in plan.node_faults})
    if not primary_faults or not faulty or 0 in faulty or 0 in plan.lagging or rng.random() >= 0.1:
        return plan
    others = [kept for kept in plan.node_faults if kept.node != faulty[-1]]
    return replace(plan, node_faults=(*others, fault(rng)))


def with_slow_primary(plan: FaultPlan, seed: int, primary_faults: bool, timeout_s: float) -> FaultPlan:
    """`plan`, or for a tenth of the seeds whose primary may be faulty, the same plan with node 0
    (the primary of view 0) a `slow-primary` whose PRE-PREPAREs leave between half the timer and
    just under it: a backup's timer starts when it learns of a request, mostly later than the
    primary, so most such delays are never suspected and some are. Node 0's own fault, or
    another faulty node's where the plan has f already, gives way. Drawn from a stream of the
    seed's own, so a seed that draws none runs exactly as before the kind existed."""
    rng = random.Random(f"slow-primary-{seed}")
    if not primary_faults or 0 in plan.lagging or rng.random() >= 0.1:
        return plan
    others = [fault for fault in plan.node_faults if fault.node != 0]
    if len({fault.node for fault in others}) >= plan.f:
        others = [fault for fault in others if fault.node != others[-1].node]
    slow = NodeFault("slow-primary", 0, delay_s=rng.uniform(0.5, 0.97) * timeout_s)
    return replace(plan, node_faults=(*others, slow))


def _next_primary_lags(
    rng: random.Random, f: int, node_faults: list[NodeFault], heal_s: float, idle_gaps: list[tuple[float, float]]
) -> tuple[list[NodeFault], Lag, float]:
    """F1: node 1 misses the traffic of the first seconds, checkpoints included, then node 0
    goes down and node 1 must lead view 1. When the workload has an idle gap, node 0 goes down
    in it, after everything before it is ordered, and stays down while the next requests come."""
    others = [fault for fault in node_faults if fault.node not in (0, 1)][: f - 1]
    if idle_gaps and rng.random() < 0.7:
        before_s, after_s = rng.choice(idle_gaps)
        lag_end_s = before_s + rng.uniform(0.5, 1.0)
        crash_s = rng.uniform(lag_end_s, max(lag_end_s, after_s - 0.2))
        crash = Window(crash_s, after_s + rng.uniform(5.0, 30.0))
        drop_p = rng.uniform(0.9, 1.0)
    else:
        lag_end_s = rng.uniform(0.5, heal_s * 0.8)
        crash_s = rng.uniform(lag_end_s * 0.5, lag_end_s + 1.0)
        crash = Window(crash_s, rng.uniform(crash_s + 0.5, heal_s + 2.0))
        drop_p = rng.uniform(0.6, 1.0)
    primary = NodeFault(rng.choice(("crash", "power-loss")), 0, crash)
    lag = Lag(1, Window(0.0, lag_end_s), drop_p=drop_p, delay_s=rng.uniform(0.0, 0.3))
    return [primary] + others, lag, max(heal_s, crash.end_s)


def long_plan(rng: random.Random, n: int, f: int, span_s: float) -> FaultPlan:
    """A long run: one node down from early on until near the end, so it must catch up thousands of batches."""
    down = Window(rng.uniform(0.02, 0.1) * span_s, rng.uniform(0.85, 0.95) * span_s)
    node = rng.randrange(n)
    return FaultPlan(
        n=n,
        f=f,
        heal_s=down.end_s,
        delay_max_s=rng.uniform(0.005, 0.05),
        node_faults=(NodeFault("crash", node, down),),
    )
