"""A whole PBFT cluster on a simulated network with a fake clock.

One `random.Random(seed)` draws the configuration, the fault plan, the
workload, every message delay and loss, and every build time, so a seed
replays exactly. Events wait in a heap ordered by (time, insertion order).
"""

from __future__ import annotations

import heapq
import random
import traceback
from collections import Counter
from dataclasses import dataclass

from pbft.effects import Broadcast, Execute, SendReply, SendTo, ServeFetch, Store
from pbft.messages import Message, MessageError, Request, Result, decode, encode
from pbft.replica import Replica, ReplicaSettings
from pbft.sim.auth import SimKeys
from pbft.sim.byzantine import behaviour_for
from pbft.sim.checkers import SafetyChecker, Violation, liveness_failures
from pbft.sim.client import SimClient, verdict
from pbft.sim.faults import FaultPlan, choose_plan
from pbft.sim.network import Address, Network
from pbft.sim.node import SimNode
from pbft.sim.workload import Submission, build_result, make_workload
from pbft.storage import StoreFactory

_DELIVER, _BUILD_DONE, _SUBMIT, _RETRANSMIT, _TICK, _RESTART = range(6)


@dataclass(frozen=True)
class SimOptions:
    # Each node's store, made fresh per node: the simulator knows stores only by the core's contract.
    store_factory: StoreFactory | None = None
    requests: int = 20
    # Faults only view change can recover from: the primary's, splits, network-wide loss.
    primary_faults: bool = True
    submit_window_s: float = 3.0
    build_min_s: float = 0.1
    build_max_s: float = 5.0
    client_timeout_s: float = 6.0
    tick_interval_s: float = 0.25
    # Generous next to view-change timeouts that double: the run ends early once every request has its verdict.
    liveness_bound_s: float = 120.0
    verbose: bool = False


@dataclass
class SeedOutcome:
    seed: int
    plan: FaultPlan
    violations: list[Violation]
    end_s: float
    stats: Counter
    trace: list[str] | None

    @property
    def safety_violations(self) -> list[Violation]:
        return [violation for violation in self.violations if violation.kind == "safety"]

    @property
    def liveness_failures(self) -> list[Violation]:
        return [violation for violation in self.violations if violation.kind == "liveness"]


def describe(message: Message) -> str:
    parts = [message.TYPE]
    for name, label in (("view", "v"), ("seq", "n"), ("sender", "i"), ("client", "c"), ("timestamp", "t")):
        if hasattr(message, name):
            parts.append(f"{label}={getattr(message, name)}")
    if hasattr(message, "digest") and isinstance(message.digest, str):
        parts.append(f"d={message.digest[:6]}")
    if hasattr(message, "result"):
        parts.append(f"{message.result.status}/{message.result.exit_code}")
    return " ".join(parts)


class SimCluster:
    def __init__(self, seed: int, options: SimOptions) -> None:
        self.seed = seed
        self.options = options
        assert options.store_factory is not None, "SimOptions.store_factory is required: (n, f) -> a ReplicaStore"
        self.rng = rng = random.Random(seed)
        self.n, self.f = (7, 2) if rng.random() < 0.2 else (4, 1)
        checkpoint_interval = rng.choice((2, 4, 8, 128))
        settings = dict(
            n=self.n,
            f=self.f,
            checkpoint_interval=checkpoint_interval,
            log_window=2 * checkpoint_interval,
            batch_max=rng.randint(1, 8),
            pipeline_depth=rng.randint(1, 8),
        )
        client_names = [f"client-{index}" for index in range(rng.randint(1, 2))]
        keys = SimKeys.generate(rng, self.n, client_names)
        self.plan = choose_plan(rng, self.n, self.f, options.primary_faults)
        self.network = Network(self.plan, rng)
        byzantine = self.plan.byzantine()
        self.nodes = []
        for node in range(self.n):
            auth = keys.for_node(node)
            replica = Replica(ReplicaSettings(node_id=node, **settings), auth)
            behaviour = behaviour_for(byzantine.get(node), self.n, auth, rng)
            self.nodes.append(SimNode(replica, behaviour, options.store_factory(self.n, self.f)))
        self.clients = {name: SimClient(name, keys.for_client(name), self.n, self.f) for name in client_names}
        self.safety = SafetyChecker()
        self.stats: Counter = Counter()
        self.trace: list[str] | None = [] if options.verbose else None
        self.now_s = 0.0
        self._queue: list[tuple] = []
        self._order = 0
        self._in_flight = 0  # messages and builds not yet arrived: the run is over only when none remain
        self._unanswered = options.requests
        self._log(f"seed={seed} settings={settings} clients={client_names} plan: {self.plan.describe()}")
        for submission in make_workload(rng, options.requests, client_names, options.submit_window_s):
            self._push(submission.time_s, _SUBMIT, submission)
        for node in range(self.n):
            self._push(options.tick_interval_s, _TICK, node)
        for fault in self.plan.node_faults:
            if fault.kind == "crash":
                self._push(fault.window.end_s, _RESTART, fault.node)

    # --- the event loop ------------------------------------------------

    def run(self) -> SeedOutcome:
        deadline_s = self.plan.heal_s + self.options.liveness_bound_s
        handlers = {
            _DELIVER: self._deliver,
            _BUILD_DONE: self._build_done,
            _SUBMIT: self._submit,
            _RETRANSMIT: self._retransmit,
            _TICK: self._tick,
            _RESTART: self._restart,
        }
        broken = None
        try:
            while self._queue and not self._finished():
                time_s, _, kind, a, b = heapq.heappop(self._queue)
                if time_s > deadline_s:
                    break
                self.now_s = time_s
                handlers[kind](a, b)
        except AssertionError as error:
            # A replica's own invariant tripped: a bug, reported with the seed like any violation.
            frame = traceback.extract_tb(error.__traceback__)[-1]
            broken = Violation("safety", self.now_s, f"invariant {frame.line!r} at {frame.name}:{frame.lineno}")
        violations = list(self.safety.violations) + ([broken] if broken else [])
        submitted = [(name, ts) for name, client in self.clients.items() for ts in client.requests]
        accepted = [(name, ts) for name, client in self.clients.items() for ts in client.accepted]
        if broken is None and not self._finished():
            violations += liveness_failures(self.now_s, submitted, accepted)
        self._log(f"end at {self.now_s:.3f}s: {len(accepted)}/{self.options.requests} accepted, {dict(self.stats)}")
        return SeedOutcome(self.seed, self.plan, violations, self.now_s, self.stats, self.trace)

    def _finished(self) -> bool:
        return self._unanswered == 0 and self._in_flight == 0

    def _push(self, time_s: float, kind: int, a: object, b: object = None) -> None:
        self._order += 1
        heapq.heappush(self._queue, (time_s, self._order, kind, a, b))

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now_s:9.4f} {text}")

    # --- events ----------------------------------------------------------

    def _deliver(self, route: tuple[Address, Address], message: Message) -> None:
        src, dst = route
        self._in_flight -= 1
        lost = self.network.cut(src, dst, self.now_s)
        if lost is None and isinstance(dst, int) and self.network.is_down(dst, self.now_s):
            lost = "node_down"
        if lost is not None:
            self._lose(src, dst, message, lost)
            return
        try:
            # The codec round trip every real frame takes, so the simulation exercises it too.
            message = decode(encode(message))
        except MessageError as error:
            self._lose(src, dst, message, f"codec: {error}")
            return
        self.stats["delivered"] += 1
        if isinstance(dst, int):
            reason = self.nodes[dst].receive(message, self.now_s)
            if reason is not None:
                self.stats[reason] += 1
            self._log(f"deliver {src}->{dst} {describe(message)}" + (f" DROPPED {reason}" if reason else ""))
            self._drain(dst)
        else:
            self._reply_arrived(src, self.clients[dst], message)

    def _reply_arrived(self, src: Address, client: SimClient, reply: Message) -> None:
        accepted, reason = client.on_reply(reply)
        if reason is not None:
            self.stats[reason] += 1
        self._log(f"deliver {src}->{client.name} {describe(reply)}" + (f" DROPPED {reason}" if reason else ""))
        if accepted is not None:
            self._unanswered -= 1
            self._log(f"ACCEPT {client.name} t={reply.timestamp} {dict(accepted)}")
            self.safety.accepted(self.now_s, (client.name, reply.timestamp), accepted)

    def _lose(self, src: Address, dst: Address, message: Message, reason: str) -> None:
        self.stats[f"lost_{reason}"] += 1
        self._log(f"lost {src}->{dst} {describe(message)}: {reason}")

    def _build_done(self, node: int, build: tuple[int, Request, Result]) -> None:
        seq, request, result = build
        self._in_flight -= 1
        if self.network.is_down(node, self.now_s):
            # The process died with the build; the restarted node runs it again.
            self.stats["build_lost_node_down"] += 1
            self._log(f"build lost on crashed node {node}: {request.key}")
            return
        self.nodes[node].replica.execution_finished(request, result, seq)
        self._drain(node)

    def _submit(self, submission: Submission, _: None) -> None:
        client = self.clients[submission.client]
        request = client.new_request(submission.operation)
        self._log(f"submit {client.name} t={request.timestamp} {submission.operation.branch} -> node {client.primary}")
        self._send(client.name, client.primary, request)
        self._push(self.now_s + self.options.client_timeout_s, _RETRANSMIT, client, request.timestamp)

    def _retransmit(self, client: SimClient, timestamp: int) -> None:
        if timestamp in client.accepted:
            return
        self._log(f"retransmit {client.name} t={timestamp} to all")
        for node in range(self.n):
            self._send(client.name, node, client.requests[timestamp])
        self._push(self.now_s + self.options.client_timeout_s, _RETRANSMIT, client, timestamp)

    def _tick(self, node: int, _: None) -> None:
        if not self.network.is_down(node, self.now_s):
            self.nodes[node].tick(self.now_s)
            self._drain(node)
        self._push(self.now_s + self.options.tick_interval_s, _TICK, node)

    def _restart(self, node: int, _: None) -> None:
        """The crashed process comes back: only what its store kept survives."""
        loaded = self.nodes[node].restart(self.now_s)
        unfinished = loaded.unfinished if loaded is not None else []
        self._log(f"restart node={node} view={self.nodes[node].replica.view} "
                  f"last_executed={self.nodes[node].replica.last_executed} rebuilding={len(unfinished)}")
        for seq, request in unfinished:
            self._start_build(node, seq, request)
        self._drain(node)

    # --- effects -----------------------------------------------------------

    def _drain(self, node: int) -> None:
        sim_node = self.nodes[node]
        while effects := sim_node.replica.take_effects():
            self._carry_out(node, sim_node, effects)

    def _carry_out(self, node: int, sim_node: SimNode, effects: list) -> None:
        sim_node.persist(effects)
        for effect in effects:
            kind = type(effect)
            if kind is Broadcast:
                for other in range(self.n):
                    if other != node:
                        self._emit(node, other, effect.message)
            elif kind is SendTo:
                self._emit(node, effect.node, effect.message)
            elif kind is SendReply:
                if sim_node.honest:
                    reply = effect.reply
                    self.safety.produced((reply.client, reply.timestamp), verdict(reply.result))
                self._emit(node, effect.reply.client, effect.reply)
            elif kind is Execute:
                self._execute(node, effect)
            elif kind is ServeFetch:
                sim_node.serve_fetch(effect)
            else:
                assert kind is Store, f"effect {kind.__name__} is not simulated"

    def _execute(self, node: int, effect: Execute) -> None:
        builds = tuple(request.key for request in effect.requests)
        if self.nodes[node].honest:
            self.safety.executed(self.now_s, node, effect.seq, effect.digest, builds)
        self._log(f"execute node={node} n={effect.seq} builds={list(builds)}")
        for request in effect.requests:
            self._start_build(node, effect.seq, request)

    def _start_build(self, node: int, seq: int, request: Request) -> None:
        build_s = self.rng.uniform(self.options.build_min_s, self.options.build_max_s)
        self._in_flight += 1
        self._push(self.now_s + build_s, _BUILD_DONE, node, (seq, request, build_result(request.operation, build_s)))

    def _emit(self, node: int, dst: Address, message: Message) -> None:
        """Send through the node's behaviour, which may drop, alter, add or delay messages."""
        for target, sent, extra_delay_s in self.nodes[node].behaviour.outgoing(dst, message):
            self._send(node, target, sent, extra_delay_s)

    def _send(self, src: Address, dst: Address, message: Message, extra_delay_s: float = 0.0) -> None:
        arrivals, reason = self.network.transit(src, dst, self.now_s, extra_delay_s)
        if reason is not None:
            self._lose(src, dst, message, reason)
        for time_s in arrivals:
            self._in_flight += 1
            self._push(time_s, _DELIVER, (src, dst), message)


def run_seed(seed: int, options: SimOptions) -> SeedOutcome:
    return SimCluster(seed, options).run()
