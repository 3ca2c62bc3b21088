"""Checkers fed by the cluster as events happen.

They see only what honest nodes do: Byzantine nodes may do anything, and
the protocol's promise is about the rest. Crashed, isolated or lossy nodes
are faulty for liveness but still honest here, since they never lie.

Each violation has a kind, one per checker:

- `safety`: two honest nodes executed different batches at one sequence
  number, a node built a request twice, a client accepted a verdict no
  honest node produced, or a replica's own invariant tripped;
- `liveness`: a request had no verdict by the bound after healing;
- `built`: a node that was neither faulty nor lagging, in a seed where
  nothing could legitimately keep it from the normal case, ordered a
  request without building it (it adopted the batch by state transfer);
- `fetch`: such a node sent FETCH in a seed whose only faults are lags, or
  an honest node kept fetching after the network settled;
- `restore`: a restarted replica's executed-request table differs from the
  one it had when it went down (less a turn whose save had not run), or its
  store lacks a ledger entry below the last executed sequence number;
- `amnesia`: a restarted node's store lacks a PRE-PREPARE, PREPARE, COMMIT or
  CHECKPOINT the node had sent (after a power cut, but the PRE-PREPAREs and
  PREPAREs its vote horizon covers: `pbft.horizon`);
- `conflict`: an honest node signed two digests for one (epoch, view,
  sequence number) in PRE-PREPAREs, PREPAREs or COMMITs, or for one CHECKPOINT;
- `memory`: a replica's log, buffers, view changes, checkpoints, executed
  requests, builds with votes, cancels or deliveries grew past their bound;
- `frame`: an honest node sent a frame larger than a peer takes (`pbft.sim.frames`);
- `agree`: two honest nodes replied different results for one request (its
  artifacts' bytes aside, which a build that is not reproducible makes its
  own, and `cancelled` aside for a build whose cancel raced its end): what
  an honest node builds must depend on the agreed request alone;
- `cancel`: an honest node started a build after it executed the build's
  cancel, let one run to its own end after that, told its executor to stop
  one twice in one run, or ended with a verdict other than `cancelled` for a
  build it executed before its cancel (`pbft.cancels`);
- `delivery`: an honest node built a request of a (repository, delivery) that
  an earlier request of it, still in the node's client table, had taken
  (it started a build for it or replied other than `skipped`), never answered
  such a duplicate, or replied `skipped` to the first request of one
  (`pbft.deliveries`);
- `converge`, `ledger`: see `pbft.sim.settled`; `log`: `pbft.sim.logcheck`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Container, Hashable, Iterable

from pbft.cancels import target_of
from pbft.deliveries import Delivery, delivery_of
from pbft.horizon import Horizon
from pbft.messages import Checkpoint, Commit, Message, PrePrepare, Prepare, Request
from pbft.sim.client import DIVERGENT
from pbft.slot import ReplicaSettings

RequestKey = tuple[str, int]  # (client, timestamp)
CHECKS = ("safety", "conflict", "log", "liveness", "agree", "cancel", "delivery", "network", "built", "fetch", "restore",
          "amnesia", "memory", "frame", "converge", "ledger")


@dataclass(frozen=True)
class Violation:
    kind: str  # one of CHECKS
    time_s: float
    text: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.time_s:.3f}s: {self.text}"


class SafetyChecker:
    def __init__(self, f: int) -> None:
        self.f = f
        self.violations: list[Violation] = []
        self._produced_by: dict[tuple[RequestKey, Hashable], set[int]] = {}  # (request, verdict) -> honest repliers
        self._executed_at: dict[int, tuple[int, Hashable]] = {}  # seq -> (first node, its batch)
        self._executed_by: dict[int, set[RequestKey]] = {}  # node -> requests it started builds for
        self._produced: dict[RequestKey, set[Hashable]] = {}  # request -> verdicts honest nodes replied

    def executed(self, time_s: float, node: int, seq: int, batch: Hashable, builds: tuple[RequestKey, ...]) -> None:
        """An honest node committed `batch` at `seq` and started the `builds` in it that were new to it.

        `batch` identifies what was ordered: its digest where the Execute
        effect carries one, else the list of builds started, which is a
        function of the committed history too, so honest nodes that agree on
        every batch agree on it as well.
        """
        first = self._executed_at.setdefault(seq, (node, batch))
        if first[1] != batch:
            self._violate(time_s, f"seq {seq}: node {first[0]} executed {_short(first[1])} but node {node} executed {_short(batch)}")
        for key in builds:
            self.started(time_s, node, seq, key)

    def started(self, time_s: float, node: int, seq: int, key: RequestKey) -> None:
        """An honest node started a build of `key`, ordered at `seq` (also one it learnt by transfer)."""
        started = self._executed_by.setdefault(node, set())
        if key in started:
            self._violate(time_s, f"node {node} executed request {key} twice (again at seq {seq})")
        started.add(key)

    def lost(self, node: int, keys: set[RequestKey]) -> None:
        """A power cut took `node`'s executions of `keys` with the builds they started: it
        executes them again (`pbft.effects.must_write`)."""
        self._executed_by.get(node, set()).difference_update(keys)

    def produced(self, key: RequestKey, verdict: Hashable, node: int) -> None:
        """Honest `node` replied `verdict` for request `key` (perhaps again, from its store)."""
        self._produced.setdefault(key, set()).add(verdict)
        self._produced_by.setdefault((key, verdict), set()).add(node)

    def accepted(self, time_s: float, key: RequestKey, verdict: Hashable,
                 cancelled: set[RequestKey] = frozenset()) -> None:
        """A client accepted `verdict` for its request `key`, or found it divergent. `cancelled`:
        the builds an honest node executed the cancel of, for a verdict its client took from
        its cancel's (pbft.cancels): `cancelled` needs no reply of its own then."""
        if verdict[0] == "cancelled" and key in cancelled:
            return
        produced = self._produced.get(key, set())
        if verdict[0] == DIVERGENT:
            # Only honest nodes that built different artifacts may make a build divergent, never f liars.
            if len(produced) < 2:
                self._violate(time_s, f"client found {key} divergent, but honest nodes replied only {produced}")
            return
        if verdict[-1] is not None and len(self._produced_by.get((key, verdict), ())) < self.f + 1:
            # Artifacts are vouched for by 2f+1 replies, so by at least f+1 honest nodes.
            self._violate(time_s, f"client accepted {verdict} for {key}, which fewer than f+1 honest nodes produced")
            return
        if verdict not in produced:
            self._violate(time_s, f"client accepted {verdict} for {key}, which no honest node produced")

    @property
    def produced_results(self) -> dict[RequestKey, set[Hashable]]:
        """Request -> every result honest nodes replied for it."""
        return self._produced

    def _violate(self, time_s: float, text: str) -> None:
        self.violations.append(Violation("safety", time_s, text))


def disagreement_failures(
    time_s: float, produced: dict[RequestKey, set[Hashable]], cancelled: set[RequestKey]
) -> list[Violation]:
    """`produced`: request -> the agreed results honest nodes replied (`SafetyChecker`);
    `cancelled`: the requests some honest node executed a cancel of. The first request whose
    honest nodes replied two results is reported."""
    for key in sorted(produced):
        results = {result[:-1] for result in produced[key]}  # the artifacts' digest is last
        if key in cancelled:
            results = {result for result in results if result[0] != "cancelled"}
        if len(results) > 1:
            shown = "; ".join(str(result[:3]) for result in sorted(results, key=str))
            return [Violation("agree", time_s, f"honest nodes replied different results for {key}: {shown}")]
    return []


class CancelChecker:
    """What honest nodes do with the cancels they executed (checker `cancel`, `pbft.cancels`)."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        # Per node, the builds whose cancel it executed (built, learnt or replayed), with the
        # cancel's own key: a crash loses those of turns whose save had not run.
        self.cancelled: dict[int, dict[RequestKey, RequestKey]] = {}
        self._stops: set[tuple[int, int, RequestKey]] = set()  # (node, incarnation, build)

    def all_cancelled(self) -> set[RequestKey]:
        return {key for targets in self.cancelled.values() for key in targets}

    def executed(self, node: int, batch: Iterable[Request]) -> None:
        for request in batch:
            target = target_of(request)
            if target is not None:
                self.cancelled.setdefault(node, {}).setdefault(target, request.key)

    def lost(self, node: int, unsaved: set[RequestKey]) -> None:
        """The node went down with the executions of `unsaved` requests not on disk."""
        targets = self.cancelled.get(node, {})
        for target in [target for target, cancel in targets.items() if cancel in unsaved]:
            del targets[target]

    def started(self, time_s: float, node: int, key: RequestKey) -> None:
        if key in self.cancelled.get(node, {}):
            self._violate(time_s, f"node {node} started build {key} after it executed its cancel")

    def finished(self, time_s: float, node: int, key: RequestKey) -> None:
        """A build ran to its own end on `node` (it was not stopped)."""
        if key in self.cancelled.get(node, {}):
            self._violate(time_s, f"node {node} let build {key} run to its end after it executed its cancel")

    def stopping(self, time_s: float, node: int, incarnation: int, key: RequestKey) -> None:
        if (node, incarnation, key) in self._stops:
            self._violate(time_s, f"node {node} was told to stop build {key} twice")
        self._stops.add((node, incarnation, key))

    def ledger_failures(self, time_s: float, states: dict[int, dict[RequestKey, str]]) -> None:
        """`states`: honest node -> build -> its ledger's verdict state, for the builds it holds."""
        for node, ledger in sorted(states.items()):
            for target in sorted(self.cancelled.get(node, {})):
                state = ledger.get(target)
                if state is not None and state not in ("cancelled", "expired"):
                    self._violate(time_s, f"node {node} executed the cancel of build {target}, "
                                          f"but its ledger says {state}")
                    return

    def _violate(self, time_s: float, text: str) -> None:
        if not any(violation.text == text for violation in self.violations):
            self.violations.append(Violation("cancel", time_s, text))


class DeliveryChecker:
    """Each delivery is built once (checker `delivery`, `pbft.deliveries`).

    Per node, a request naming a delivery is its duplicate where an earlier request of the
    delivery (by sequence number, then place in the batch) is still in the node's client
    table as it executes: the node must then never start a build for it, nor reply other
    than `skipped`. Where no earlier one executed on the node at all, it is the first: the
    node must not reply `skipped`. Where earlier ones executed and all were forgotten, the
    delivery may rightly build again: nothing is said. Honest nodes agree on the order, so
    no two requests of a delivery are built by honest nodes while the first is remembered.
    And a member answers each duplicate it executed `skipped`, in the step that executed it
    (`end_failures`): the order alone decides it, whether or not the node builds anything.
    """

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        # Per node, each delivery's requests it executed, with their place in the order: a lost
        # execution (a turn whose save had not run) executes again in the same place.
        self._executed: dict[int, dict[Delivery, dict[RequestKey, tuple[int, int]]]] = {}
        self._duplicates: dict[int, dict[RequestKey, str]] = {}  # node -> duplicate -> why
        self._firsts: dict[int, set[RequestKey]] = {}
        self._skipped: dict[int, set[RequestKey]] = {}  # node -> the requests it answered `skipped`

    def executed(self, node: int, seq: int, fresh: Iterable[Request], remembered: Container[RequestKey]) -> None:
        """Honest `node` executed the `fresh` requests (new to it, in the batch's order) at `seq`;
        `remembered`: its client table's executed requests."""
        duplicates, firsts = self._duplicates.setdefault(node, {}), self._firsts.setdefault(node, set())
        for index, request in enumerate(fresh):
            delivery = delivery_of(request)
            if delivery is None:
                continue
            place = (seq, index)
            named = self._executed.setdefault(node, {}).setdefault(delivery, {})
            earlier = sorted((at, key) for key, at in named.items() if at < place)
            taken = [key for _, key in earlier if key in remembered]
            duplicates.pop(request.key, None)
            firsts.discard(request.key)
            if taken:
                duplicates[request.key] = f"delivery {delivery} was taken by {taken[0]}, which node {node} remembers"
            elif not earlier:
                firsts.add(request.key)
            named[request.key] = place

    def started(self, time_s: float, node: int, key: RequestKey) -> None:
        why = self._duplicates.get(node, {}).get(key)
        if why is not None:
            self._violate(time_s, f"node {node} started a build of {key}: {why}")

    def replied(self, time_s: float, node: int, key: RequestKey, status: str) -> None:
        why = self._duplicates.get(node, {}).get(key)
        if why is not None and status != "skipped":
            self._violate(time_s, f"node {node} replied {status} for {key}: {why}")
        if key in self._firsts.get(node, ()) and status == "skipped":
            self._violate(time_s, f"node {node} replied skipped for {key}, the first request of its delivery")
        if status == "skipped":
            self._skipped.setdefault(node, set()).add(key)

    def end_failures(self, time_s: float, not_always_members: Iterable[int]) -> list[Violation]:
        """The duplicates an honest node executed and never answered; a node that is no member
        for some of the order answers nothing it executes then, and is left out."""
        for node, duplicates in sorted(self._duplicates.items()):
            missing = sorted(duplicates.keys() - self._skipped.get(node, set()))
            if missing and node not in not_always_members:
                key = missing[0]
                return [Violation("delivery", time_s, f"node {node} never answered {key}: {duplicates[key]}")]
        return []

    def _violate(self, time_s: float, text: str) -> None:
        if not any(violation.text == text for violation in self.violations):
            self.violations.append(Violation("delivery", time_s, text))


def liveness_failures(time_s: float, submitted: Iterable[RequestKey], accepted: Iterable[RequestKey]) -> list[Violation]:
    """After the network healed and the bound passed, every submitted request must have a
    verdict, builds with artifacts (2f+1 matching replies, `pbft.replies`) included: a
    node that adopted a build's batch by state transfer builds it while its verdict is open."""
    missing = sorted(set(submitted) - set(accepted))
    if not missing:
        return []
    shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
    return [Violation("liveness", time_s, f"{len(missing)} request(s) without a verdict: {shown}")]


class BuildChecker:
    """Every request a normal node orders, it orders by the normal case and builds (checker a).

    `normal` nodes are honest, never faulty and never lagging, in a seed
    without splits, network-wide loss, blackouts, equivocation, faulty
    nodes on lossy, cut or slow links, a relaying primary that cuts one
    backup out or a censoring one (any of which, as primary, can withhold a
    pre-prepare or a relay from one correct node, or make one leave its view
    before the others): nothing
    can keep them from receiving what the other correct nodes send, so
    they never need state transfer and every batch they execute carries
    the builds they must run. Where `fetch_free` (no faults but lags), they
    also never send FETCH. Faulty and lagging nodes may learn batches by
    transfer without building them: that is how PBFT catches them up. So may
    a normal node once a primary went down (`primary_down`): a backup that
    alone waits for something then suspects it alone, changes views alone,
    and catches up by transfer when the primary comes back (seed 1597); so may one from
    `short_s`, when more than f nodes are out or lagging at once (`FaultPlan.short_of_quorum_from`).
    """

    def __init__(self, normal: frozenset[int], fetch_free: bool, short_s: float | None = None) -> None:
        self.normal = normal
        self.fetch_free = fetch_free
        self.violations: list[Violation] = []
        self._built: dict[int, set[RequestKey]] = {}
        self._reported: set[tuple[str, int]] = set()
        self.transfers_excused_from: float | None = short_s

    def primary_down(self, time_s: float) -> None:
        """The node that was primary crashed (or lost power) at `time_s`."""
        if self.transfers_excused_from is None or time_s < self.transfers_excused_from:
            self.transfers_excused_from = time_s

    def executed(
        self, time_s: float, node: int, seq: int, batch: Iterable[RequestKey], builds: Iterable[RequestKey],
        by_transfer: bool,
    ) -> None:
        built = self._built.setdefault(node, set())
        built.update(builds)
        if node not in self.normal or ("built", node) in self._reported:
            return
        missing = [key for key in batch if key not in built]
        excused = by_transfer and self.transfers_excused_from is not None and time_s >= self.transfers_excused_from
        if missing and not excused:
            self._reported.add(("built", node))
            how = "adopted by state transfer" if by_transfer else "no build started"
            self.violations.append(Violation(
                "built", time_s, f"node {node} ordered {missing[0]} at seq {seq} without building it ({how})"
            ))

    def fetched(self, time_s: float, node: int, detail: str) -> None:
        if not self.fetch_free or node not in self.normal or ("fetch", node) in self._reported:
            return
        self._reported.add(("fetch", node))
        self.violations.append(Violation(
            "fetch", time_s, f"node {node} sent FETCH in a seed without faults, lags aside ({detail})"
        ))


def vouched(message: Message) -> tuple | None:
    """What a PRE-PREPARE, PREPARE, COMMIT or CHECKPOINT commits its sender to:
    (type, epoch, view, seq, digest); None for other messages. Views start again in each epoch."""
    if isinstance(message, (PrePrepare, Prepare, Commit)):
        return (message.TYPE, message.epoch, message.view, message.seq, message.digest)
    if isinstance(message, Checkpoint):
        return (message.TYPE, 0, 0, message.seq, message.vouches())
    return None


def conflict(sent: dict[tuple, str], item: tuple) -> str | None:
    """`conflict`: an honest node signed two digests for one (type, epoch, view, seq): two
    PRE-PREPAREs or PREPAREs of one slot (a power cut took the first, and nothing kept the
    node from signing another), two COMMITs, or two CHECKPOINTs of one sequence number.
    `sent` maps what the node signed so far to its digest; it learns `item`."""
    kind, epoch, view, seq, digest = item
    earlier = sent.setdefault((kind, epoch, view, seq), digest)
    if earlier == digest:
        return None
    return f"{kind.upper()} epoch={epoch} v={view} n={seq} signed with d={earlier[:6]} and then d={digest[:6]}"


def forgotten(sent: Iterable[tuple], stored: Iterable[Message], low_watermark: int,
              horizon: Horizon | None = None) -> list[tuple]:
    """What a node sent and its store no longer holds; the store may prune below its stable
    checkpoint. After a power cut (`horizon`, the one the store had fsynced) the PRE-PREPAREs
    and PREPAREs it covers may be gone: the node keeps silent there (`pbft.horizon`)."""
    kept = {vouched(message) for message in stored}
    return sorted(
        item for item in sent
        if item not in kept and not excused(item, horizon)
        and (item[3] > low_watermark or (item[0] == Checkpoint.TYPE and item[3] == low_watermark))
    )


def excused(item: tuple, horizon: Horizon | None) -> bool:
    """A vote a power cut may take: a PRE-PREPARE or PREPARE inside the fsynced horizon."""
    kind, epoch, view, seq, _ = item
    return horizon is not None and kind in (PrePrepare.TYPE, Prepare.TYPE) and horizon.covers(epoch, view, seq)


@dataclass(frozen=True)
class MemoryBounds:
    slots: int  # the log covers h < seq <= H
    buffered: int  # each buffer of per-sender buffers (future messages, early result votes)
    view_changes: int  # one per sender
    # Sequence numbers with checkpoint votes, the agreed boundaries between network documents
    # left out (owners make those, not peers)
    checkpoints: int
    # Executed requests remembered, and builds with votes: per client, what the checkpoint
    # bound keeps plus what can execute before the next checkpoint forgets.
    requests: int
    waiting: int  # requests of clients waiting at a node: max_open_per_client each

    @classmethod
    def for_settings(cls, settings: ReplicaSettings, clients: int) -> MemoryBounds:
        per_checkpoint = settings.checkpoint_interval * settings.batch_max
        return cls(
            slots=settings.log_window,
            buffered=settings.n * settings.per_sender_buffer,
            view_changes=settings.n,
            # Checkpoints are accepted up to H + log window, one per interval, and the stable one is
            # kept; and one per sender off the interval, ahead of what this node executed.
            checkpoints=2 * settings.log_window // settings.checkpoint_interval + 2 + settings.n,
            requests=clients * (settings.max_requests_per_client + per_checkpoint),
            waiting=clients * settings.max_open_per_client,
        )

    def limits(self) -> dict[str, int]:
        return {
            "slots": self.slots, "committed_before": self.slots,  # earlier views' certificates: in the window too
            "future": self.buffered, "early_votes": self.buffered,
            "waiting": self.waiting,
            "view_changes": self.view_changes,
            "checkpoints": self.checkpoints,
            "executed_requests": self.requests,
            "builds_with_votes": self.requests,
            "cancels": self.requests,  # one per cancel the client table remembers (pbft.cancels)
            "deliveries": self.requests,  # one per request naming a delivery it remembers (pbft.deliveries)
        }


def replica_sizes(replica) -> dict[str, int]:
    """How much a replica holds in each part that peers can make grow."""
    return {
        "slots": len(replica.slots),
        "committed_before": len(replica.log.committed_before),
        "future": len(replica.buffered(replica.admission.future)),
        "early_votes": len(replica.buffered(replica.verdicts.early_votes)),
        "waiting": len(replica.clients.waiting),
        "view_changes": len(replica.views.latest.by_sender),
        "checkpoints": len(replica.checkpoints.votes.keys() - replica.checkpoints.boundaries),
        "executed_requests": len(replica.clients.executed),
        "builds_with_votes": len(replica.verdicts.result_votes.seq),
        "cancels": len(replica.answers.cancels),
        "deliveries": len(replica.answers.deliveries),
    }


def restart_load_problem(node: int, bounds: MemoryBounds, n: int, log_window: int, loaded) -> str | None:
    """Why what a restarting node's store gave back is more than what is live, or None.

    A restart reads the messages above the last stable checkpoint and the builds and
    votes above each client's floor: bounded by the window and the per-client bound,
    not by how long the node ran. (Pre-prepares and votes above h may come from each
    view since h: at most 2n+1 per sequence number and view.)"""
    counts = {"executed builds": len(loaded.executed), "RESULT votes": 0, "CHECKPOINTs": 0, "three-phase messages": 0}
    for message in loaded.messages:
        kind = ("RESULT votes" if message.TYPE == "result" else "CHECKPOINTs" if isinstance(message, Checkpoint)
                else "three-phase messages" if message.TYPE in ("preprepare", "prepare", "commit") else None)
        if kind is not None:
            counts[kind] += 1
    limits = {
        "executed builds": bounds.requests,
        "RESULT votes": n * bounds.requests,
        "CHECKPOINTs": n * bounds.checkpoints,
        "three-phase messages": (2 * n + 1) * log_window * (loaded.state.view + 1),
    }
    over = [f"{counts[name]} {name} (bound {limits[name]})" for name in counts if counts[name] > limits[name]]
    return f"node {node} restarted loading more than is live: {', '.join(over)}" if over else None


class MemoryChecker:
    """Every honest replica stays within its bounds, checked after each message it takes (checker d)."""

    def __init__(self, bounds: MemoryBounds) -> None:
        self.bounds = bounds
        self.limits = bounds.limits()
        self.violations: list[Violation] = []
        self._reported: set[tuple[int, str]] = set()

    def check(self, time_s: float, node: int, sizes: dict[str, int]) -> None:
        for name, size in sizes.items():
            if size > self.limits[name] and (node, name) not in self._reported:
                self._reported.add((node, name))
                self.violations.append(Violation(
                    "memory", time_s, f"node {node} holds {size} {name}, over its bound of {self.limits[name]}"
                ))


def _first(items: list) -> str:
    return ", ".join(map(str, items[:3])) + (" ..." if len(items) > 3 else "")


def _short(batch: Hashable) -> str:
    return batch[:8] if isinstance(batch, str) else str(list(batch))
