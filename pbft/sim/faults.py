"""Which faults a seed suffers, and when: the fault plan.

A plan is drawn from the seed's RNG before anything runs, so a seed names
one exact scenario. At most f nodes are faulty. Network faults (crash,
isolation, lossy links, splits, network-wide loss) all end by `heal_s`;
Byzantine nodes stay Byzantine for the whole run, since PBFT must stay live
with f of them. Liveness is judged only after `heal_s`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# A faulty node's misbehaviour while its window lasts; it is honest otherwise.
NETWORK_KINDS = ("crash", "isolate", "lossy")
# Behaviours of a node that runs its replica but lies about what it sends (issue 3, item 6).
BYZANTINE_KINDS = ("silent", "crash-after", "equivocate", "lie", "forge", "delay")
# Faults that touch every node, so they may strand the primary's messages too.
GLOBAL_KINDS = ("split", "drop")


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float

    def covers(self, time_s: float) -> bool:
        return self.start_s <= time_s < self.end_s


@dataclass(frozen=True)
class NodeFault:
    kind: str
    node: int
    window: Window | None = None  # network kinds only
    drop_p: float = 0.0  # lossy
    messages: int = 0  # crash-after
    delay_s: float = 0.0  # delay

    def label(self) -> str:
        detail = {"lossy": f" p={self.drop_p:.2f}", "crash-after": f" {self.messages}", "delay": f" {self.delay_s * 1000:.0f}ms"}
        window = f" {self.window.start_s:.2f}-{self.window.end_s:.2f}s" if self.window else ""
        return f"{self.kind}{detail.get(self.kind, '')} node={self.node}{window}"


@dataclass(frozen=True)
class FaultPlan:
    n: int
    f: int
    heal_s: float
    delay_min_s: float = 0.001
    delay_max_s: float = 0.05
    duplicate_p: float = 0.0
    node_faults: tuple[NodeFault, ...] = ()
    split: tuple[frozenset[int], Window] | None = None
    drop: tuple[float, Window] | None = None  # network-wide loss probability
    faulty: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faulty", frozenset(fault.node for fault in self.node_faults))
        assert len(self.faulty) <= self.f, "a plan may make at most f nodes faulty"

    def byzantine(self) -> dict[int, NodeFault]:
        return {fault.node: fault for fault in self.node_faults if fault.kind in BYZANTINE_KINDS}

    def kinds(self) -> list[str]:
        kinds = [fault.kind for fault in self.node_faults]
        kinds += [kind for kind, present in (("split", self.split), ("drop", self.drop)) if present]
        return kinds or ["none"]

    def describe(self) -> str:
        parts = [fault.label() for fault in self.node_faults]
        if self.split:
            side, window = self.split
            parts.append(f"split {sorted(side)} {window.start_s:.2f}-{window.end_s:.2f}s")
        if self.drop:
            drop_p, window = self.drop
            parts.append(f"drop p={drop_p:.2f} {window.start_s:.2f}-{window.end_s:.2f}s")
        parts.append(f"dup p={self.duplicate_p:.2f} delay {self.delay_min_s * 1000:.0f}-{self.delay_max_s * 1000:.0f}ms")
        return f"n={self.n} f={self.f} heal={self.heal_s:.2f}s " + ", ".join(parts)


def _window(rng: random.Random, heal_s: float) -> Window:
    start_s = rng.uniform(0.0, heal_s * 0.6)
    return Window(start_s, rng.uniform(start_s + 0.5, heal_s))


def _node_fault(rng: random.Random, kind: str, node: int, heal_s: float) -> NodeFault:
    if kind in NETWORK_KINDS:
        return NodeFault(kind, node, _window(rng, heal_s), drop_p=rng.uniform(0.1, 0.7) if kind == "lossy" else 0.0)
    if kind == "crash-after":
        return NodeFault(kind, node, messages=rng.randint(0, 150))
    if kind == "delay":
        return NodeFault(kind, node, delay_s=rng.uniform(0.05, 3.0))
    return NodeFault(kind, node)


def choose_plan(rng: random.Random, n: int, f: int, primary_faults: bool) -> FaultPlan:
    """Draw one scenario. Without `primary_faults`, node 0 (primary of view 0)
    stays correct and every link to it stays up: only view change could
    recover from a faulty primary, a quorum-less split or network-wide loss.
    """
    heal_s = rng.uniform(2.0, 10.0)
    eligible = list(range(n)) if primary_faults else list(range(1, n))
    faulty = rng.sample(eligible, rng.randint(0, f) if rng.random() < 0.3 else f)
    kinds = NETWORK_KINDS + BYZANTINE_KINDS
    node_faults = tuple(_node_fault(rng, rng.choice(kinds), node, heal_s) for node in sorted(faulty))
    split = drop = None
    if primary_faults and rng.random() < 0.3:
        if rng.random() < 0.5:
            split = (frozenset(rng.sample(range(n), n // 2)), _window(rng, heal_s))
        else:
            drop = (rng.uniform(0.01, 0.1), _window(rng, heal_s))
    return FaultPlan(
        n=n,
        f=f,
        heal_s=heal_s,
        delay_max_s=rng.uniform(0.005, 0.05),
        duplicate_p=rng.uniform(0.0, 0.05),
        node_faults=node_faults,
        split=split,
        drop=drop,
    )
