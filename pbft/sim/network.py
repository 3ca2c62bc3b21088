"""The simulated network: per-message delay, duplication, loss and partitions.

Addresses are node ids (int) and client names (str). The network only
decides *whether* and *when* a message arrives; the cluster's event queue
carries it there. All randomness comes from the seed's RNG.
"""

from __future__ import annotations

import random
from typing import Callable

from pbft.messages import Message, Relay
from pbft.sim.faults import DOWN_KINDS, FaultPlan, Window

Address = int | str
# How long a cut link looks up: a real node's link notices a peer that vanished without
# closing its connection when a heartbeat goes unanswered (node/peers.py).
LINK_HEARTBEAT_S = 2.0


class Network:
    def __init__(self, plan: FaultPlan, rng: random.Random) -> None:
        self._plan = plan
        self._rng = rng
        self._isolated = [(fault.node, fault.window) for fault in plan.node_faults if fault.kind == "isolate"]
        self._lossy = [(fault.node, fault.window, fault.drop_p) for fault in plan.node_faults if fault.kind == "lossy"]
        self._lags = list(plan.lags)
        self._down = [(fault.node, fault.window) for fault in plan.node_faults if fault.kind in DOWN_KINDS]
        if plan.blackout is not None:
            self._down += [(node, plan.blackout.window(node)) for node in range(plan.n)]

    def add_down(self, node: int, window: Window) -> None:
        """A crash the run decides on as it goes (after a node's first state transfer)."""
        self._down.append((node, window))

    def add_isolated(self, node: int, window: Window) -> None:
        """A node cut off from everyone, its process running (a CI plan's `transfer-past-cancel`)."""
        self._isolated.append((node, window))

    def is_down(self, node: Address, time_s: float) -> bool:
        """A crashed node neither receives nor sends; it keeps its store for the restart."""
        return any(node == down and window.covers(time_s) for down, window in self._down)

    def cut(self, src: Address, dst: Address, time_s: float) -> str | None:
        """Why the link src→dst carries nothing at `time_s`, if it is cut."""
        for node, window in self._isolated:
            if node in (src, dst) and window.covers(time_s):
                return "partition_isolated"
        if self._plan.split is not None:
            side, window = self._plan.split
            if isinstance(src, int) and isinstance(dst, int) and (src in side) != (dst in side) and window.covers(time_s):
                return "partition_split"
        return None

    def links_seen(self, node: int, n: int, time_s: float, is_down: Callable[[int], bool]) -> dict[int, bool]:
        """What `node`'s links to its peers show, up or down (`pbft.reach`): a crashed peer's
        connection closes at once; a cut link looks up until a heartbeat goes unanswered,
        then down while the cut lasts."""
        return {
            peer: not is_down(peer) and not all(self.cut(node, peer, at_s) or self.cut(peer, node, at_s)
                                                for at_s in (time_s, time_s - LINK_HEARTBEAT_S))
            for peer in range(n) if peer != node
        }

    def transit(self, src: Address, dst: Address, now_s: float, extra_delay_s: float) -> tuple[list[float], str | None]:
        """Arrival times of one send (none if lost, two if duplicated), and why it was lost."""
        reason = self.cut(src, dst, now_s) or self._lost(src, dst, now_s)
        if reason is not None:
            return [], reason
        rng, plan = self._rng, self._plan
        extra_delay_s += self._lag_delay(dst, now_s)
        arrivals = [now_s + extra_delay_s + rng.uniform(plan.delay_min_s, plan.delay_max_s)]
        if rng.random() < plan.duplicate_p:
            arrivals.append(now_s + extra_delay_s + rng.uniform(plan.delay_min_s, plan.delay_max_s))
        return arrivals, None

    def _lost(self, src: Address, dst: Address, now_s: float) -> str | None:
        for node, window, drop_p in self._lossy:
            if node in (src, dst) and window.covers(now_s) and self._rng.random() < drop_p:
                return "lossy_link"
        for lag in self._lags:
            if lag.node == dst and lag.window.covers(now_s) and self._rng.random() < lag.drop_p:
                return "lag"
        if self._plan.drop is not None:
            drop_p, window = self._plan.drop
            if window.covers(now_s) and self._rng.random() < drop_p:
                return "network_loss"
        return None

    def _lag_delay(self, dst: Address, now_s: float) -> float:
        return sum(self._rng.uniform(0.0, lag.delay_s) for lag in self._lags if lag.node == dst and lag.window.covers(now_s))


def describe(message: Message) -> str:
    """A message as the trace shows it: its type, what places it, its digest, a vote's result."""
    parts = [message.TYPE]
    for name, label in (("view", "v"), ("seq", "n"), ("sender", "i"), ("client", "c"), ("timestamp", "t")):
        if hasattr(message, name):
            parts.append(f"{label}={getattr(message, name)}")
    if hasattr(message, "digest") and isinstance(message.digest, str):
        parts.append(f"d={message.digest[:6]}")
    if isinstance(message, Relay):
        parts.append("[" + ", ".join(describe(vote) for vote in message.votes) + "]")
    if hasattr(message, "result"):
        parts.append(f"{message.result.status}/{message.result.exit_code}")
    return " ".join(parts)
