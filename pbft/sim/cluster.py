"""A whole PBFT cluster on a simulated network with a fake clock.

One `random.Random(seed)` draws the configuration, the workload, the fault
plan, every message delay and loss, and every build time, so a seed
replays exactly. Events wait in a heap ordered by (time, insertion order).

A run ends `settle_s` after every request has its verdict and every fault
is over (then the end-of-run checks of `pbft.sim.settled` apply), or at
the liveness bound if some request never gets one.
"""

from __future__ import annotations

import heapq
import random
import traceback
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from pbft.ci.ordered import OrderedBuild
from pbft.effects import BuildLearnt, Effect, Execute, NetworkChanged, RecordVerdict, StopBuild
from pbft.build import CHANGE_BRANCH, CHANGE_REPOSITORY, Operation, Result
from pbft.networkchange import document_digest
from pbft.messages import (
    MAX_BATCH_BYTES, MAX_FRAME_BYTES, Checkpoint, Fetch, Message, MessageError, NewView, Relay, Reply, Request, ResultVote, StateTransfer,
)
from pbft.replica import Replica, ReplicaSettings
from pbft.membership import Membership
from pbft.durable import DurableState
from pbft.horizon import Horizon
from pbft.sim.auth import SimKeys
from pbft.sim.networks import MEMBERSHIP, NetworkChecker, genesis, menu, owner_secrets
from pbft.sim.byzantine import behaviour_for
from pbft.sim.checkers import (
    CHECKS, BuildChecker, CancelChecker, DeliveryChecker, MemoryBounds, MemoryChecker, SafetyChecker, Violation, conflict,
    disagreement_failures, excused, forgotten, liveness_failures, replica_sizes, restart_load_problem,
    vouched,
)
from pbft.sim.frames import FrameCodec
from pbft.sim.restored import Down, checkpoints_problem, restore_problem
from pbft.sim.logcheck import LogChecker, end_failures as log_end_failures
from pbft.sim.ci import STOP_S, UNBOUNDED_SLOTS, CiPlan, CiSubmission, Heads, SimExecutor, choose_ci_plan, ci_rng
from pbft.cancels import cancelled_result
from pbft.sim.client import SimClient, verdict
from pbft.sim.faults import BUSY_CLIENT, DOWN_KINDS, FILL_FRAME_BYTES, WITHHOLDING_KINDS, FaultPlan, Window, choose_plan, drawn_apart, long_plan
from pbft.sim.network import Address, Network, describe
from pbft.sim.node import SimNode
from pbft.sim.settled import (
    NodeEnd,
    build_views,
    converged_nodes,
    convergence_failures,
    late_fetch_failures,
    ledger_failures,
)
from pbft.sim.store import PowerCutStore
from pbft.sim.workload import GREEDY_CLIENT, REPOSITORY, Submission, build_result, long_workload, make_workload
from pbft.storage import StoreError, StoreFactory

_DELIVER, _BUILD_DONE, _SUBMIT, _RETRANSMIT, _TICK, _CRASH, _RESTART, _BUSY, _SAVE, _ARM = range(10)

# How often the busy client of a `censor` seed submits: well within a view-change
# timeout, so a timer that every executed batch restarted would never expire.
BUSY_INTERVAL_S = 1.0

# Small, so that each sender's share is the floor of `ReplicaSettings.per_sender_buffer`:
# a window of votes, all an honest sender sends ahead of a view or a window.
MAX_BUFFERED = 256
# Far below the thousands a long run's clients send, with timestamps 1, 2, 3, ... that
# the hour of `request_expiry_s` never expires: the per-client bound must do it.
MAX_REQUESTS_PER_CLIENT = 128
# A greedy client's hundreds of requests at once meet this bound at every node.
MAX_OPEN_PER_CLIENT = 64
# How long after the workload and the faults a greedy client goes on retransmitting.
GREEDY_PERSISTENCE_S = 30.0
# With f+1 picked builders, how long the others wait after a picked builder's result: about
# a simulated build, so that a silent picked builder is seen costing it.
STANDBY_S = 1.0


@dataclass(frozen=True)
class SimOptions:
    # Each node's store, made fresh per node: the simulator knows stores only by the core's contract.
    store_factory: StoreFactory | None = None
    requests: int = 20
    # Faults only view change can recover from: the primary's, splits, network-wide loss, blackouts.
    primary_faults: bool = True
    submit_window_s: float = 3.0
    build_min_s: float = 0.1
    build_max_s: float = 5.0
    client_timeout_s: float = 6.0
    tick_interval_s: float = 0.25
    # Generous next to view-change timeouts that double.
    liveness_bound_s: float = 120.0
    # Idle time, clocks running, after the last verdict and the last fault, before the end-of-run checks.
    settle_s: float = 60.0
    # Every `long_every`-th seed (seed % long_every == long_every - 1; 1: all, 0: none) is a
    # long run: `long_requests` single-request batches, a small checkpoint interval, and one
    # node down for most of the run. Chosen by the seed's number, not drawn, so a sweep of
    # N seeds holds exactly N // long_every of them and the other seeds' scenarios stay put.
    long_every: int = 0
    long_requests: int = 10_000
    # Power loss drops the last saved step, whatever it sent (SQLite synchronous=NORMAL
    # throughout). Off: it drops the unsynced steps after the last synced one, as a node's
    # store can. See pbft.sim.faults and pbft.sim.store.
    unsynced_stores: bool = False
    # Which seeds run a network that relays votes through the primary (ReplicaSettings.relay_votes):
    # "alternate" (the odd ones: chosen by number, not drawn, so other draws stay put), "always", "never".
    relay: str = "alternate"
    # The CI operations of `pbft.sim.ci` (cancels, re-runs, schedules, moving branches, build
    # slots, outages mid-build, redeliveries) in the seeds that draw them; off: none in any seed.
    ci: bool = True
    # Whether clients pin the head of a branch a request names without a commit (client/heads.py).
    # Off, nodes that fetch a moving branch at different moments build different commits.
    pin_heads: bool = True
    # Which seeds build with the f+1 picked builders (`pbft.builders`): a third of them, drawn
    # apart from the seed's other draws ("third"), or every seed ("f+1") or none ("all").
    builders: str = "third"
    frame_bytes: int = MAX_FRAME_BYTES  # the largest frame a node takes from a peer (the `frame` check)
    verbose: bool = False


@dataclass
class SeedOutcome:
    seed: int
    plan: FaultPlan
    kinds: list[str]  # the plan's fault kinds, the workload's shape if not steady, and "long"
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

    @property
    def failed_checks(self) -> list[str]:
        found = {violation.kind for violation in self.violations}
        return [check for check in CHECKS if check in found]

    @property
    def first_violation(self) -> Violation | None:
        """The one to show: of the gravest check that failed, the earliest."""
        if not self.violations:
            return None
        return min(self.violations, key=lambda violation: (CHECKS.index(violation.kind), violation.time_s))


class SimCluster:
    def __init__(self, seed: int, options: SimOptions) -> None:
        self.seed = seed
        self.options = options
        assert options.store_factory is not None, "SimOptions.store_factory is required: (n, f) -> a ReplicaStore"
        self.rng = rng = random.Random(seed)
        self.long = options.long_every > 0 and seed % options.long_every == options.long_every - 1
        if self.long:
            self.n, self.f = 4, 1
            checkpoint_interval, batch_max, pipeline_depth = rng.choice((4, 8, 16)), 1, rng.randint(2, 8)
        else:
            # Five nodes with f = 1, as a network that grew by one: quorums are then 4, not 2f+1.
            draw = rng.random()
            self.n, self.f = (7, 2) if draw < 0.2 else (5, 1) if draw < 0.32 else (4, 1)
            checkpoint_interval, batch_max, pipeline_depth = rng.choice((2, 4, 8, 128)), rng.randint(1, 8), rng.randint(1, 8)
        client_names = [f"client-{index}" for index in range(rng.randint(1, 2))]
        keys = SimKeys.generate(rng, self.n, client_names + [BUSY_CLIENT, GREEDY_CLIENT])
        secrets = owner_secrets(seed)
        keys = replace(keys, owner_secrets={SimKeys.owner_key(secret): secret for secret in secrets.values()})
        # A third of the seeds build with f+1 picked builders (`pbft.builders`): from a draw of
        # its own, so that the seed's other draws stay as they were.
        third = random.Random(f"builders-{seed}").random() < 1 / 3
        self.f_plus_1 = options.builders == "f+1" or (options.builders == "third" and third)
        self.document = genesis(self.n, self.f, secrets, builders="f+1" if self.f_plus_1 else "all")
        self.changes = menu(self.document, secrets)
        self.networks = NetworkChecker(document_digest(self.document))
        members = self.n  # the first document's; the plan's faults fall among them
        if self.long:
            self.workload = long_workload(rng, options.long_requests, client_names, rate_per_s=rng.uniform(4.0, 8.0))
            self.plan = long_plan(rng, self.n, self.f, self.workload.span_s)
        else:
            self.workload = make_workload(rng, options.requests, client_names, options.submit_window_s)
            self.plan = choose_plan(
                rng, self.n, self.f, options.primary_faults, self.workload.span_s, self.workload.idle_gaps()
            )
            self.plan = drawn_apart(self.plan, seed, self.f_plus_1, options.primary_faults)
        # Long runs keep to their one scenario: thousands of builds past a node that is down.
        ci = options.ci and not self.long
        self.ci = (choose_ci_plan(ci_rng(seed), self.workload, self.plan, options.build_max_s, options.primary_faults)
                   if ci else CiPlan.none())
        changes = {getattr(submission, "change", None) for submission in self.ci.submissions}
        # Nodes that are no members for some of the order: they follow it and build nothing then.
        self.not_always_members: frozenset[int] = frozenset()
        if changes & set(MEMBERSHIP):
            # A standby node, no member of the first document, that a change may make one: its
            # key from a draw of its own, so that the seed's other draws stay as they were.
            keys.node_secrets[self.n] = random.Random(f"standby-{seed}").randbytes(32)
            self.not_always_members = frozenset({self.n, 0} if "leave" in changes else {self.n})
            self.n += 1
        if not self.long:
            if self.plan.next_primary_lags() or "transfer-past-cancel" in self.ci.kinds or any(
                fault.kind == "restart-after-transfer" for fault in self.plan.node_faults
            ):
                # These scenarios need stable checkpoints a node misses (a transfer carries ledger
                # entries only below one): make them come often.
                checkpoint_interval = min(checkpoint_interval, 4)
        # The largest frame a node takes from a peer, scaled down where a `fill` primary makes the
        # window's batches matter (`FILL_FRAME_BYTES`); a replica takes a quarter of it above what it executed.
        filled = any(fault.kind == "fill" for fault in self.plan.node_faults)
        self.frame_bytes = min(options.frame_bytes, FILL_FRAME_BYTES) if filled else options.frame_bytes
        self._codec = FrameCodec(self.frame_bytes)
        settings = dict(
            n=self.n, f=self.f, checkpoint_interval=checkpoint_interval, log_window=2 * checkpoint_interval,
            batch_max=batch_max, pipeline_depth=pipeline_depth, max_buffered=MAX_BUFFERED,
            max_requests_per_client=MAX_REQUESTS_PER_CLIENT, max_open_per_client=MAX_OPEN_PER_CLIENT,
            relay_votes=options.relay == "always" or (options.relay == "alternate" and seed % 2 == 1),
            changes_membership=True, standby_s=STANDBY_S, window_bytes=max(self.frame_bytes // 4, MAX_BATCH_BYTES),
        )
        self.network = Network(self.plan, rng)
        byzantine = self.plan.byzantine()
        self.power_cut_stores: dict[int, PowerCutStore] = {}
        self.nodes: list[SimNode] = []
        self._incarnation = [0] * self.n  # which process of each node is running
        self._delivering_transfer = False
        for node in range(self.n):
            auth = keys.for_node(node)
            replica = Replica(ReplicaSettings(node_id=node, **settings), auth, self.document)
            behaviour = behaviour_for(byzantine.get(node), self.n, auth, rng, replica.settings.per_sender_buffer)
            self.nodes.append(SimNode(replica, behaviour, self._store(node), self._edges, self.document))
        if self.plan.censors():
            client_names.append(BUSY_CLIENT)
        if self.workload.shape == "greedy":
            client_names.append(GREEDY_CLIENT)
        self.clients = {name: SimClient(name, keys.for_client(name), self.n, self.f, self._members)
                        for name in client_names}
        self.honest = frozenset(node for node in range(self.n) if self.nodes[node].honest)
        self.safety, self.log_check = SafetyChecker(self.f), LogChecker()
        self.cancels = CancelChecker()
        self.deliveries = DeliveryChecker()
        self.builds = self._build_checker()
        self.heads = Heads(self.ci.moving)
        self.executors = [SimExecutor(self.ci.slots) for _ in range(self.n)]
        self._timestamps: dict[object, tuple[str, int]] = {}  # submission -> its request's key
        self.memory = MemoryChecker(MemoryBounds.for_settings(self.nodes[0].replica.settings, len(self.clients)))
        self.stats: Counter = Counter()
        self.trace: list[str] | None = [] if options.verbose else None
        self.now_s = 0.0
        self._queue: list[tuple] = []
        self._order = 0
        # Requests of correct clients still without a verdict. The greedy client is the
        # adversary: it may lose its own oldest requests to the per-client bound, and no
        # liveness is promised to it; it must not cost anyone else theirs, or any memory.
        submissions = sorted(self.workload.submissions + tuple(self.ci.submissions), key=lambda item: item.time_s)
        self._unanswered = sum(1 for submission in submissions if submission.client != GREEDY_CLIENT)
        # Every fault over, every request sent.
        self._quiet_from_s = max(self.plan.heal_s, self.ci.heal_s, submissions[-1].time_s if submissions else 0.0)
        self._settle_from_s: float | None = None
        self._down: dict[int, Down] = {}
        self._restarts: list[Violation] = []  # what restarted nodes forgot (restore, amnesia)
        self._frames: list[Violation] = []
        self._sent: dict[int, set[tuple]] = {node: set() for node in self.honest}  # what each node vouched for
        # (type, epoch, view, seq) -> digest of all each node signed, what a power cut took included
        self._signed: dict[int, dict[tuple, str]] = {node: {} for node in self.honest}
        self._conflicts: list[Violation] = []  # two digests an honest node signed for one slot
        self._late_fetches: dict[int, str] = {}
        self._votes_delivered: set[tuple[int, tuple[str, int], int]] = set()  # (node, build, honest voter)
        self._restart_after_transfer = {
            fault.node: fault for fault in self.plan.node_faults if fault.kind == "restart-after-transfer"
        }
        self._log(f"seed={seed} settings={settings} clients={client_names} workload={self.workload.shape}"
                  f"{' long' if self.long else ''} plan: {self.plan.describe()} ci: {self.ci.describe()}")
        for submission in submissions:
            self._push(submission.time_s, _SUBMIT, submission)
        for outage in (self.ci.restart_mid_build,):
            if outage is not None:
                self.network.add_down(outage.node, outage.window)
                self._push(outage.window.start_s, _CRASH, outage.node, False)
                self._push(outage.window.end_s, _RESTART, outage.node)
        if self.ci.transfer_past_cancel is not None:
            self.network.add_isolated(self.ci.transfer_past_cancel.node, self.ci.transfer_past_cancel.window)
        for node in range(self.n):
            self._push(options.tick_interval_s, _TICK, node)
        self._armed: dict[int, float] = {}  # crash-mid-turn: node -> when it restarts
        for fault in self.plan.node_faults:
            if fault.kind in DOWN_KINDS:
                self._push(fault.window.start_s, _CRASH, fault.node, fault.kind == "power-loss")
                self._push(fault.window.end_s, _RESTART, fault.node)
            elif fault.kind == "crash-mid-turn":
                self._push(fault.window.start_s, _ARM, fault.node, fault.window.end_s)
        self._disk_full = {fault.node: fault.window for fault in self.plan.node_faults if fault.kind == "disk-full"}
        if BUSY_CLIENT in self.clients:
            self._push(0.0, _BUSY, self.clients[BUSY_CLIENT])
        if self.plan.blackout is not None:
            for node in range(members):
                self._push(self.plan.blackout.start_s, _CRASH, node, True)
                self._push(self.plan.blackout.restart_s[node], _RESTART, node)

    def _store(self, node: int):
        factory, n, f = self.options.store_factory, self.n, self.f
        if self.plan.loses_power(node):
            store = self.power_cut_stores[node] = PowerCutStore(
                lambda: factory(n, f), every_step_unsynced=self.options.unsynced_stores)
            return store
        return factory(n, f)

    def _furthest(self) -> Replica:
        """The replica of the honest node furthest on: it knows every membership the order made."""
        return max((self.nodes[node].replica for node in self.honest), key=lambda replica: replica.last_executed)

    def _members(self) -> Membership:
        return self._furthest().members

    def _quorum_at(self, seq: int) -> int:
        """The quorum of the members that ordered `seq`."""
        return self._furthest().epochs.members_at(seq).quorum

    def _build_checker(self) -> BuildChecker:
        plan = self.plan
        shared = plan.split is not None or plan.drop is not None or plan.blackout is not None
        # A greedy client's requests beyond what the primary takes (max_open_per_client) wait at
        # the backups until their timers suspect an honest primary: view changes, a faulty
        # client's doing, after which a node may rightly catch up by transfer.
        shared = shared or self.workload.shape == "greedy"
        # A faulty node that may be primary can withhold a pre-prepare or a relay from one correct
        # node (by equivocating, by a lossy, cut or slow link, by relaying to the others only), which
        # then rightly catches up by transfer: it builds what it adopted whose verdict is open.
        # (A link delayed by up to seconds per message holds one node's pre-prepare back while
        # the others commit and checkpoint past it: seed 19422. A primary whose message budget
        # runs out in the middle of a broadcast reaches only some nodes: seed 12318. A censoring
        # primary drops a request that a client sent to one backup alone, whose timer then fires
        # seconds before the others': it leaves the view alone and misses what the others still
        # order in it, seed 13339. The CI outage that isolates a node does the same when the
        # node is a relaying primary: what it relayed just before is lost to some, seed 6127.)
        withholding = any(
            fault.kind in WITHHOLDING_KINDS
            for fault in plan.node_faults
        ) or self.ci.transfer_past_cancel is not None
        normal = frozenset()
        if not shared and not withholding:
            normal = frozenset(self.honest - plan.faulty - self.ci.faulty - plan.lagging - self.not_always_members)
        return BuildChecker(normal, fetch_free=not shared and not plan.node_faults and not self.ci.faulty,
                            short_s=plan.short_of_quorum_from())

    def kinds(self) -> list[str]:
        kinds = self.plan.kinds() + self.ci.kinds
        if self.workload.shape != "steady":
            kinds.append(self.workload.shape)
        if self.options.unsynced_stores and any(self.plan.loses_power(node) for node in range(self.n)):
            kinds.append("unsynced")
        if self.nodes[0].replica.relaying:
            kinds.append("relay")
        if self.f_plus_1:
            kinds.append("f+1-builders")
        return kinds + (["long"] if self.long else [])

    # --- the event loop ------------------------------------------------

    def run(self) -> SeedOutcome:
        handlers = {
            _DELIVER: self._deliver,
            _BUILD_DONE: self._build_done,
            _SUBMIT: self._submit,
            _RETRANSMIT: self._retransmit,
            _TICK: self._tick,
            _CRASH: self._crash,
            _RESTART: self._restart,
            _BUSY: self._busy,
            _SAVE: self._save_turn,
            _ARM: self._arm,
        }
        broken = None
        try:
            while self._queue:
                time_s, _, kind, a, b = heapq.heappop(self._queue)
                if time_s > self._end_s():
                    break
                self.now_s = time_s
                handlers[kind](a, b)
                if self._settle_from_s is None and self._unanswered == 0 and self.now_s >= self._quiet_from_s:
                    self._settle_from_s = self.now_s
                    self._log(f"every request answered and every fault over: settling for {self.options.settle_s}s")
        except AssertionError as error:
            # A replica's own invariant tripped (the interpreter stopped the node: NodeStopped
            # carries the assertion as its context): a bug, reported with the seed like any violation.
            error = error.__context__ if isinstance(error, NodeStopped) and error.__context__ else error
            frame = traceback.extract_tb(error.__traceback__)[-1]
            broken = Violation("safety", self.now_s, f"invariant {frame.line!r} at {frame.name}:{frame.lineno}")
        violations = self.safety.violations + self._conflicts + self.builds.violations + self.memory.violations + self._restarts + self.log_check.violations + self._frames
        violations += disagreement_failures(self.now_s, self.safety.produced_results, self.cancels.all_cancelled())
        if broken is not None:
            violations.append(broken)
        elif self._unanswered:
            correct = {name: client for name, client in self.clients.items() if name != GREEDY_CLIENT}
            submitted = [(name, ts) for name, client in correct.items() for ts in client.requests]
            accepted = [(name, ts) for name, client in correct.items() for ts in client.accepted]
            violations += liveness_failures(self.now_s, submitted, accepted)
        else:
            violations += self._settled_failures()
        violations += self.cancels.violations + self.deliveries.violations
        if broken is None:  # a node stopped mid-step may have executed a duplicate and not answered it yet
            violations += self.deliveries.end_failures(self.now_s, self.not_always_members)
        violations += self.networks.document_failures(self.now_s)
        violations += self.networks.end_failures(self.now_s, {
            node: (replica.last_executed, replica.network.digest, replica.network.changed_at)
            for node in sorted(self.honest) for replica in (self.nodes[node].replica,)
        }) if broken is None and not self._unanswered else self.networks.violations
        accepted = sum(len(client.accepted) for client in self.clients.values())
        self._log(f"end at {self.now_s:.3f}s: {accepted}/{len(self.workload.submissions)} accepted, {dict(self.stats)}")
        for violation in violations:
            self._log(f"VIOLATION {violation}")
        return SeedOutcome(self.seed, self.plan, self.kinds(), violations, self.now_s, self.stats, self.trace)

    def _end_s(self) -> float:
        if self._settle_from_s is not None:
            return self._settle_from_s + self.options.settle_s
        return self._quiet_from_s + self.options.liveness_bound_s

    def _push(self, time_s: float, kind: int, a: object, b: object = None) -> None:
        self._order += 1
        heapq.heappush(self._queue, (time_s, self._order, kind, a, b))

    def _log(self, text: str) -> None:
        """Per-message events test `self.trace` before formatting: that alone is a tenth of a long run."""
        if self.trace is not None:
            self.trace.append(f"{self.now_s:9.4f} {text}")

    # --- the end-of-run checks ---------------------------------------------

    def _settled_failures(self) -> list[Violation]:
        # The honest members at the end. A node that is no member (the standby that never
        # joined, a node that left) follows the order only while members tell it about it: it
        # fetches nothing, and may end behind, its ledger too (`pbft.epochs`).
        members = self._members()
        ends = {
            node: NodeEnd(replica.view, replica.changing_view, replica.last_executed)
            for node in sorted(self.honest) if node in members
            for replica in (self.nodes[node].replica,)
        }
        failures = convergence_failures(self.now_s, ends)
        for node in ends:  # a node that never restarted must have no hole either
            loaded = self.nodes[node].store.load()
            hole = self._ledger_hole(node, loaded.state.last_executed) if loaded is not None else None
            failures += [hole] if hole is not None else []
        failures += late_fetch_failures(self.now_s, self._late_fetches, converged_nodes(ends))
        prefix = min(end.last_executed for end in ends.values())
        ledgers = {node: {} for node in ends}
        for node, ledger in ledgers.items():
            store = self.nodes[node].store
            for seq in range(1, prefix + 1):
                ledger.update(build_views(store.build_records(seq)))
        byzantine_free = self.honest == frozenset(range(self.n))
        self.cancels.ledger_failures(self.now_s, {
            node: {key: view.state for key, view in ledger.items()} for node, ledger in ledgers.items()
        })
        return failures + ledger_failures(self.now_s, ledgers, self._quorum_at, byzantine_free, self._votes_delivered) + (
            log_end_failures(self.now_s, {node: self.nodes[node].replica for node in converged_nodes(ends)}))

    # --- events ----------------------------------------------------------

    def _deliver(self, route: tuple[Address, Address], message: Message) -> None:
        src, dst = route
        lost = self.network.cut(src, dst, self.now_s)
        if lost is None and isinstance(dst, int) and self._is_down(dst):
            lost = "node_down"
        if lost is not None:
            self._lose(src, dst, message, lost)
            return
        try:
            # The codec round trip every real frame takes, so the simulation exercises it too.
            message, oversized = self._codec.round_trip(message)
        except MessageError as error:
            self._lose(src, dst, message, f"codec: {error}")
            return
        if oversized is not None:  # refused unread, as a node's server does
            if isinstance(src, int) and src in self.honest:
                self._frames.append(Violation("frame", self.now_s, f"node {src} to {dst}: {oversized}"))
            self._lose(src, dst, message, "frame_too_big")
            return
        self.stats["delivered"] += 1
        if not isinstance(dst, int):
            self._reply_arrived(src, self.clients[dst], message)
            return
        sim_node = self.nodes[dst]
        if isinstance(src, int) and src in self.honest:
            # An honest node sends its own votes, serves others' it holds and relays others' it checked.
            for vote in message.votes if isinstance(message, Relay) else (message,):
                if isinstance(vote, ResultVote) and vote.sender in self.honest:
                    self._votes_delivered.add((dst, vote.key, vote.sender))
        for target, sent, extra_delay_s in sim_node.behaviour.observe(message):
            self._send(dst, target, sent, extra_delay_s)
        if not sim_node.behaviour.admits(message):
            self.stats["withheld_by_behaviour"] += 1
            return
        executed_before = sim_node.replica.last_executed
        self._delivering_transfer = isinstance(message, StateTransfer)
        reason = sim_node.receive(message, self.now_s)
        self._delivering_transfer = False
        if reason is not None:
            self.stats[reason] += 1
        if self.trace is not None:
            self._log(f"deliver {src}->{dst} {describe(message)}" + (f" DROPPED {reason}" if reason else ""))
        if isinstance(message, StateTransfer) and executed_before < message.stable_seq <= sim_node.replica.last_executed:
            self._adopted_ledger(dst, executed_before)
        if sim_node.honest:
            self.memory.check(self.now_s, dst, replica_sizes(sim_node.replica))

    def _adopted_ledger(self, node: int, executed_before: int) -> None:
        """A node took batches by state transfer; a `restart-after-transfer` node crashes soon after its first."""
        self.stats["state_transfers_adopted"] += 1
        self._log(f"node {node} adopted the ledger {executed_before + 1}..{self.nodes[node].replica.last_executed} by state transfer")
        fault = self._restart_after_transfer.pop(node, None)
        if fault is None:
            return
        window = Window(self.now_s + fault.delay_s, self.now_s + fault.delay_s + fault.down_s)
        self.network.add_down(node, window)
        self._push(window.start_s, _CRASH, node, False)
        self._push(window.end_s, _RESTART, node)
        self._quiet_from_s = max(self._quiet_from_s, window.end_s)
        self._settle_from_s = None
        self.stats["restarts_after_transfer"] += 1

    def _reply_arrived(self, src: Address, client: SimClient, reply: Message) -> None:
        decided, reason = client.on_reply(reply)
        if reason is not None:
            self.stats[reason] += 1
        if self.trace is not None:
            self._log(f"deliver {src}->{client.name} {describe(reply)}" + (f" DROPPED {reason}" if reason else ""))
        for timestamp, accepted in decided:
            if client.name != GREEDY_CLIENT:
                self._unanswered -= 1
            by_order = timestamp in client.cancelled_by_order
            self._log(f"ACCEPT {client.name} t={timestamp} {accepted}{' by its cancel' if by_order else ''}")
            # A build its cancel decided needs an honest node that executed that cancel.
            cancelled = self.cancels.all_cancelled() if by_order else set()
            self.safety.accepted(self.now_s, (client.name, timestamp), accepted, cancelled)

    def _lose(self, src: Address, dst: Address, message: Message, reason: str) -> None:
        self.stats[f"lost_{reason.split(':')[0]}"] += 1
        if self.trace is not None:
            self._log(f"lost {src}->{dst} {describe(message)}: {reason}")

    def _build_done(self, node: int, build: tuple[int, Request, Result, int, bool]) -> None:
        seq, request, result, incarnation, stopped = build
        if self._is_down(node) or incarnation != self._incarnation[node]:
            # The process died with the build; the restarted node runs it again.
            self.stats["build_lost_node_down"] += 1
            self._log(f"build lost on crashed node {node}: {request.key}")
            return
        if not stopped:
            if request.key not in self.executors[node].running:
                return  # stopped meanwhile: its end was told already
            self._free_slot(node, request.key)
            if node in self.honest:
                self.cancels.finished(self.now_s, node, request.key)
        sim_node = self.nodes[node]
        sim_node.interpreter.step(sim_node.replica.execution_finished, request, result, seq)

    def _submit(self, submission: Submission, _: None) -> None:
        client = self.clients[submission.client]
        operation = self._operation(submission)
        if operation is None:  # what it cancels or re-runs was never asked: nothing to answer
            if submission.client != GREEDY_CLIENT:
                self._unanswered -= 1
            return
        request = client.new_request(operation)
        self._timestamps[submission] = request.key
        self._log(f"submit {client.name} t={request.timestamp} {submission.operation.branch} -> node {client.primary}")
        self._send(client.name, client.primary, request)
        self._push(self.now_s + self.options.client_timeout_s, _RETRANSMIT, client, request.timestamp)

    def _operation(self, submission: Submission) -> Operation | None:
        """What the client signs: a cancel names its target's timestamp, a re-run or a
        redelivery repeats its original's operation (a redelivered webhook names the commit it
        named the first time), and a branch without a commit gets the head of the moment
        (client/heads.py, unless `pin_heads` is off). None: what it names was never asked."""
        operation = submission.operation
        if isinstance(submission, CiSubmission) and submission.change is not None:
            return Operation(CHANGE_REPOSITORY, CHANGE_BRANCH, change=self.changes[submission.change])
        if isinstance(submission, CiSubmission):
            original = submission.cancels or submission.rerun_of or submission.redelivers
            key = self._timestamps.get(original)
            if key is None:
                return None
            asked = self.clients[key[0]].requests[key[1]].operation
            if submission.cancels is None:
                return asked
            return Operation(REPOSITORY, asked.branch, cancels=key[1])
        if self.options.pin_heads and operation.commit is None:
            head = self.heads.head(operation.branch, self.now_s)
            if head is not None:
                operation = replace(operation, commit=head)
        return operation

    def _busy(self, client: SimClient, _: None) -> None:
        """The busy client submits one more request while a request of the workload still
        waits: a censoring primary then has other work to order the whole time."""
        busy_open = len(client.requests) - len(client.accepted)
        if self._unanswered == busy_open or self.now_s > self._end_s():
            return
        self._unanswered += 1
        self._submit(Submission(self.now_s, client.name, Operation(REPOSITORY, f"pass-busy-{len(client.requests)}")), None)
        self._push(self.now_s + BUSY_INTERVAL_S, _BUSY, client)

    def _retransmit(self, client: SimClient, timestamp: int) -> None:
        if timestamp in client.accepted:
            return
        if client.name == GREEDY_CLIENT and self.now_s > self._quiet_from_s + GREEDY_PERSISTENCE_S:
            return  # the flood is over: it gives up on what it lost, as a client at its deadline
        self._log(f"retransmit {client.name} t={timestamp} to all")
        for node in range(self.n):
            self._send(client.name, node, client.requests[timestamp])
        self._push(self.now_s + self.options.client_timeout_s, _RETRANSMIT, client, timestamp)

    def _tick(self, node: int, _: None) -> None:
        if not self._is_down(node):
            self.nodes[node].tick(self.now_s, self.network.links_seen(node, self.n, self.now_s, self._is_down))
        self._push(self.now_s + self.options.tick_interval_s, _TICK, node)

    def _is_down(self, node: int) -> bool:
        """Down from its crash event until its restart event, which may share an instant with other events."""
        return node in self._down or self.network.is_down(node, self.now_s)

    def _crash(self, node: int, power_loss: bool, unsaved: set[tuple[str, int]] = frozenset()) -> None:
        """The node's process (or machine) stops: it keeps only its store. `unsaved`: requests
        executed in steps whose save had not run, which the node rightly loses."""
        if node in self._down:
            self._down[node].power_loss |= power_loss
            return
        self._down[node] = Down.of(self.nodes[node].replica, unsaved, power_loss)
        if self.nodes[node].replica.is_primary:
            self.builds.primary_down(self.now_s)
        self._incarnation[node] += 1  # builds the dead process started never report
        self.executors[node] = SimExecutor(self.ci.slots)  # nor does it remember what ran or waited
        self.cancels.lost(node, unsaved)
        self._log(f"{'power loss' if power_loss else 'crash'} node={node} "
                  f"last_executed={self.nodes[node].replica.last_executed}")

    def _restart(self, node: int, _: None) -> None:
        """The crashed process comes back: only what its store kept survives."""
        if self.network.is_down(node, self.now_s) or node not in self._down:
            return  # another of its down windows is still open
        down = self._down.pop(node)
        self.stats["restarts"] += 1
        sim_node = self.nodes[node]
        lost = self.power_cut_stores[node].lose_power() if down.power_loss and node in self.power_cut_stores else []
        lost_effects = len(lost)
        # A power cut may take executions written unsynced, with the builds they started.
        lost_executions = {request.key for effect in lost if isinstance(effect, Execute) for request in effect.batch}
        down.executed -= lost_executions
        self.safety.lost(node, lost_executions)
        self.cancels.lost(node, lost_executions)
        loaded = sim_node.restart(self.now_s, rebooted=down.power_loss)
        replica = sim_node.replica
        rerun = replica.builds_to_rerun(loaded.unfinished) if loaded else []
        self._log(f"restart node={node} view={replica.view} last_executed={replica.last_executed} "
                  f"rebuilding={len(rerun)} lost_unsynced_effects={lost_effects}")
        if sim_node.honest:
            self._check_restored(node, down, loaded, lost_effects)
        for build in rerun:
            self._start_build(node, build)
        sim_node.interpreter.take()

    def _check_restored(self, node: int, down: Down, loaded, lost_effects: int) -> None:
        replica = self.nodes[node].replica
        stored = loaded.messages if loaded is not None else []
        low_watermark = loaded.state.low_watermark if loaded is not None else 0
        horizon = None
        if down.power_loss and loaded is not None:
            state = loaded.state
            horizon = Horizon(state.vote_horizon_epoch, state.vote_horizon_view, state.vote_horizon)
        missing = forgotten(self._sent[node], stored, low_watermark, horizon)
        if horizon is not None:
            # What the power cut rightly took is forgotten for good; `conflict` still knows it.
            kept = {vouched(message) for message in stored}
            self._sent[node] = {item for item in self._sent[node] if item in kept or not excused(item, horizon)}
        if missing:
            kind, epoch, view, seq, digest = missing[0]
            self._restarts.append(Violation(
                "amnesia", self.now_s,
                f"node {node} restarted without the {kind.upper()} epoch={epoch} v={view} n={seq} d={digest[:6]}"
                f" it had sent"
                f" ({len(missing)} sent message(s) forgotten, {lost_effects} unsynced effects lost)",
            ))
        if loaded is not None:
            settings = replica.settings
            problem = restart_load_problem(node, self.memory.bounds, settings.n, settings.log_window, loaded)
            if problem is not None:
                self._restarts.append(Violation("memory", self.now_s, problem))
            hole = self._ledger_hole(node, loaded.state.last_executed)
            if hole is not None:
                self._restarts.append(hole)
        if lost_effects and self.options.unsynced_stores:
            return  # an unsynced step may hold executions too: amnesia already tells the story
        problem = (restore_problem(node, down.executed, set(replica.clients.executed), replica.clients.floor)
                   or checkpoints_problem(node, down.checkpoints, replica))
        if problem is not None:
            self._restarts.append(Violation("restore", self.now_s, problem))

    def _ledger_hole(self, node: int, last_executed: int) -> Violation | None:
        """The store says it executed up to `last_executed`: every ledger entry up to it is there."""
        executed = [entry.seq for entry in self.nodes[node].store.ledger_entries(1, last_executed)]
        if executed == list(range(1, last_executed + 1)):
            return None
        missing = sorted(set(range(1, last_executed + 1)) - set(executed))
        return Violation("restore", self.now_s, f"node {node}'s store says it executed up to seq {last_executed}"
                                                f" with no ledger entry for seq {_first_seqs(missing)}")

    # --- effects -----------------------------------------------------------

    def _arm(self, node: int, restart_s: float) -> None:
        self._armed[node] = restart_s

    def _crash_mid_turn(self, node: int, restart_s: float) -> None:
        """Kill the node (or cut its power) with a turn's steps taken and their save not run;
        half the time a read of its ledger wrote what waited unsynced just before."""
        sim_node = self.nodes[node]
        if self.rng.random() < 0.5:
            sim_node.interpreter.write_deferred()
        self._crash(node, self.rng.random() < 0.5, unsaved=sim_node.unsaved_executions())
        window = Window(self.now_s, max(restart_s, self.now_s + 0.1))
        self.network.add_down(node, window)
        self._push(window.end_s, _RESTART, node)
        self._quiet_from_s = max(self._quiet_from_s, window.end_s)
        self.stats["crashes_mid_turn"] += 1

    def _disk_takes_no_write(self, node: int) -> bool:
        window = self._disk_full.get(node)
        return window is not None and window.covers(self.now_s)

    def _stopped_by_full_disk(self, node: int, unsaved: set[tuple[str, int]]) -> None:
        """The node's interpreter stopped it on a failed save: it is down, with what it saved,
        until space is freed (the end of its window), and then started again."""
        self._log(f"disk full node={node}: its interpreter stopped it")
        self._crash(node, False, unsaved=unsaved)
        window = Window(self.now_s, max(self._disk_full[node].end_s, self.now_s + 0.1))
        self.network.add_down(node, window)
        self._push(window.end_s, _RESTART, node)
        self._quiet_from_s = max(self._quiet_from_s, window.end_s)
        self.stats["stopped_by_full_disk"] += 1

    def _edges(self, sim_node: SimNode) -> _NodeEdges:
        return _NodeEdges(self, sim_node, self._incarnation[sim_node.replica.id])

    def _save_turn(self, node: int, turn: tuple[int, Callable[[], None], bool]) -> None:
        """The end of a node's turn: the save its interpreter scheduled, then its sends."""
        incarnation, save_and_send, transfer = turn
        if incarnation != self._incarnation[node] or self._is_down(node):
            return  # the process that scheduled it is gone, and its unsaved steps with it
        if node in self._armed:
            self._crash_mid_turn(node, self._armed.pop(node))
            return
        self._delivering_transfer = transfer
        save_and_send()
        self._delivering_transfer = False

    def _vouch(self, node: int, message: Message) -> None:
        """Remember what an honest node told everyone, to find what a restart forgot, and who fetches."""
        item = vouched(message)
        if isinstance(message, Checkpoint):
            self.log_check.checkpointed(self.now_s, node, message)
        for preprepare in message.preprepares if isinstance(message, NewView) else ():  # signed by its sender too
            self._vouch(node, preprepare)
        if item is not None:
            self._sent[node].add(item)
            problem = conflict(self._signed[node], item)
            if problem is not None:
                self._conflicts.append(Violation("conflict", self.now_s, f"node {node}: {problem}"))
        elif isinstance(message, Fetch):
            self.stats["fetches_sent"] += 1
            replica = self.nodes[node].replica
            detail = f"from={message.from_seq} view={message.view} vouched_seq={replica.catch_up.target_seq()} vouched_view={replica.catch_up.target_view()}"
            self.builds.fetched(self.now_s, node, detail)
            if self._settle_from_s is not None and self.now_s >= self._settle_from_s + self.options.settle_s / 2:
                self._late_fetches.setdefault(node, detail)

    def _execute(self, node: int, effect: Execute) -> None:
        builds = tuple(request.key for request in effect.requests)
        if self.nodes[node].honest:
            self.cancels.executed(node, effect.batch)
            # The requests new to the node, in the batch's order: one ordered again is no new request of its delivery.
            fresh = {request.key for request in (*effect.requests, *effect.learnt, *effect.answered)}
            self.deliveries.executed(node, effect.seq, [request for request in effect.batch if request.key in fresh],
                                     self.nodes[node].replica.clients.executed)
            self.safety.executed(self.now_s, node, effect.seq, effect.digest, builds)
            self.log_check.executed(self.now_s, node, effect)
            batch = tuple(request.key for request in effect.batch)
            # What the order alone answers (cancels, builds cancelled before they executed) is
            # the node's part done, as a build is.
            answered = tuple(request.key for request in effect.answered)
            # And what the order gave f+1 other members to build (`pbft.builders`): it stands by
            # (a batch adopted by state transfer is one whatever it stands by for). Read from the
            # effect, not the replica, which may be past it: a cancel executed in the same step
            # ends the standing by before this effect is carried out.
            standing_by = () if self._delivering_transfer else tuple(
                key for key, builders in effect.chosen if node not in builders)
            self.builds.executed(self.now_s, node, effect.seq, batch, builds + answered + standing_by,
                                 self._delivering_transfer)
        if self.trace is not None:
            self._log(f"execute node={node} n={effect.seq} builds={list(builds)}")
        for build in effect.ordered():
            self._start_build(node, build)

    def _build_learnt(self, node: int, effect: BuildLearnt) -> None:
        if self.nodes[node].honest:
            self.safety.started(self.now_s, node, effect.seq, effect.request.key)
        self.stats["learnt_builds_started"] += 1
        self._log(f"build learnt node={node} n={effect.seq} {effect.request.key}")
        self._start_build(node, effect.order)

    def _start_build(self, node: int, build: OrderedBuild) -> None:
        """A build starts as a node's driver starts it: made from what the order gave it."""
        seq, request = build.seq, build.request
        if node in self.honest:
            self.cancels.started(self.now_s, node, request.key)
            self.deliveries.started(self.now_s, node, request.key)
            self.networks.built(node, seq, request.key, build.network)
        if self.executors[node].start(seq, request):
            self._run_build(node, seq, request)
        else:
            self.stats["builds_queued"] += 1

    def _run_build(self, node: int, seq: int, request: Request) -> None:
        """The build takes a slot: it fetches now, and ends a drawn time later."""
        build_s = self.rng.uniform(self.options.build_min_s, self.options.build_max_s)
        result = self.heads.result(request.operation, self.now_s) or build_result(request.operation, build_s, node)
        quick = result.status == "error" or request.client == BUSY_CLIENT
        if quick and self.ci.slots < UNBOUNDED_SLOTS:
            # A branch that does not exist fails at the fetch, in a moment, as a real one does; the
            # busy client's builds only keep the primary busy (one a second). Neither holds a
            # slot for seconds while the workload's builds queue behind a one-slot executor.
            build_s *= 0.01
        self.executors[node].run(seq, request, self.now_s + build_s)
        self._push(self.now_s + build_s, _BUILD_DONE, node, (seq, request, result, self._incarnation[node], False))

    def _free_slot(self, node: int, key: tuple[str, int]) -> None:
        waiting = self.executors[node].finish(key)
        if waiting is not None:
            self._run_build(node, *waiting)

    def _stop_build(self, node: int, effect: StopBuild) -> None:
        """The order cancelled a build: it ends `cancelled` a moment later if it runs or waits here."""
        key = (effect.client, effect.timestamp)
        if node in self.honest:
            self.cancels.stopping(self.now_s, node, self._incarnation[node], key)
        stopped = self.executors[node].stop(key)
        if stopped is None:
            return
        self.stats["builds_stopped"] += 1
        self._log(f"stop node={node} {key}")
        self._free_slot(node, key)
        seq, request = stopped
        self._push(self.now_s + STOP_S, _BUILD_DONE, node, (seq, request, cancelled_result(), self._incarnation[node], True))

    def _emit(self, node: int, dst: Address, message: Message) -> None:
        """Send through the node's behaviour, which may drop, alter, add or delay messages."""
        for target, sent, extra_delay_s in self.nodes[node].behaviour.outgoing(dst, message):
            self._send(node, target, sent, extra_delay_s)

    def _send(self, src: Address, dst: Address, message: Message, extra_delay_s: float = 0.0) -> None:
        arrivals, reason = self.network.transit(src, dst, self.now_s, extra_delay_s)
        if reason is not None:
            self._lose(src, dst, message, reason)
        for time_s in arrivals:
            self._push(time_s, _DELIVER, (src, dst), message)


def _first_seqs(seqs: list[int]) -> str:
    return ", ".join(map(str, seqs[:3])) + (" ..." if len(seqs) > 3 else "")


class NodeStopped(AssertionError):
    """A node's interpreter stopped it: a replica invariant broke (a bug, never a fault)."""


class _NodeEdges:
    """`pbft.interpreter.Edges` of one incarnation of a simulated node: its sends go
    through its behaviour onto the simulated network, its turn ends at a save event
    queued at the same instant, so crashes can fall between a step and its save."""

    def __init__(self, cluster: SimCluster, sim_node: SimNode, incarnation: int) -> None:
        self.cluster = cluster
        self.node = sim_node.replica.id
        self.sim_node = sim_node
        self.incarnation = incarnation
        self._failed_save: set[tuple[str, int]] | None = None  # the executions a failed save held

    def send(self, node: int, message: Message) -> None:
        self.cluster._emit(self.node, node, message)

    def broadcast(self, message: Message) -> None:
        cluster = self.cluster
        if self.sim_node.honest:
            cluster._vouch(self.node, message)
        for other in range(cluster.n):
            if other != self.node:
                cluster._emit(self.node, other, message)

    def send_reply(self, reply: Reply) -> None:
        if self.sim_node.honest:
            self.cluster.safety.produced((reply.client, reply.timestamp), verdict(reply.result), self.node)
            self.cluster.deliveries.replied(self.cluster.now_s, self.node, (reply.client, reply.timestamp),
                                            reply.result.status)
        self.cluster._emit(self.node, reply.client, reply)

    def execute(self, effect: Execute) -> None:
        self.cluster._execute(self.node, effect)

    def build_learnt(self, effect: BuildLearnt) -> None:
        self.cluster._build_learnt(self.node, effect)

    def stop_build(self, effect: StopBuild) -> None:
        self.cluster._stop_build(self.node, effect)

    def network_changed(self, effect: NetworkChanged) -> None:
        if self.sim_node.honest:
            self.cluster.networks.changed(self.cluster.now_s, self.node, effect.seq, effect.digest)

    def schedule(self, callback: Callable[[], None]) -> None:
        cluster = self.cluster
        cluster._push(cluster.now_s, _SAVE, self.node, (self.incarnation, callback, cluster._delivering_transfer))

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        if self.cluster._disk_takes_no_write(self.node):
            # What this save held, and steps whose save is only scheduled: the stop drops both.
            self._failed_save = self.sim_node.unsaved_executions() | {
                request.key for effect in effects if isinstance(effect, Execute) for request in effect.batch
            }
            raise StoreError(OSError(28, "No space left on device"), f"data/node-{self.node}")
        self.sim_node.store.save(state, effects, sync=sync)

    def saving(self, effects: list[Effect]) -> None:
        expired = sum(1 for effect in effects if isinstance(effect, RecordVerdict) and effect.state == "expired")
        if expired:
            self.cluster.stats["verdicts_expired"] += expired

    def stop(self) -> None:
        if self._failed_save is not None:  # a fault of the host, not a bug: the node is down for it
            self.cluster._stopped_by_full_disk(self.node, self._failed_save)
            return
        raise NodeStopped(f"node {self.node} stopped")


def run_seed(seed: int, options: SimOptions) -> SeedOutcome:
    return SimCluster(seed, options).run()
