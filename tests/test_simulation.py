"""Testing layer 2: the whole cluster on the seeded simulated network.

The seed sweep is the CI gate (PBFT_SIM_SEEDS seeds, default 300). The
targeted tests show that each checker fires on the violation it exists
for, both fed directly and on a deliberately broken cluster, so a green
sweep means something.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter

from pathlib import Path

import pytest

from node.storage import NodeStore
from pbft.messages import Operation, Request, Result, decode, encode, signed
from pbft.sim import SimCluster, SimOptions, run_seed
from pbft.sim.auth import SimKeys
from pbft.sim.checkers import SafetyChecker, liveness_failures
from pbft.sim.client import verdict
from pbft.sim.faults import BYZANTINE_KINDS, GLOBAL_KINDS, NETWORK_KINDS

SEEDS = int(os.environ.get("PBFT_SIM_SEEDS", "300"))


def memory_store(n: int, f: int) -> NodeStore:
    return NodeStore(Path(":memory:"), n=n, f=f)


def options(**overrides) -> SimOptions:
    """Simulator options with every node on the real store, in memory."""
    return SimOptions(store_factory=memory_store, **overrides)

SUCCESS = verdict(Result("success", 0, "c" * 40))
FAILURE = verdict(Result("failure", 1, "c" * 40))


@pytest.fixture(autouse=True)
def quiet_replica_logs(caplog):
    # Every dropped message is logged at warning; formatting thousands of them would dominate the run.
    caplog.set_level(logging.ERROR, logger="pbft")


def _seeds_with(kind: str, sim_options: SimOptions, node: int | None = None, wanted: int = 20) -> list[SimCluster]:
    """Clusters (not yet run) whose plan includes `kind`, on `node` if given."""
    found = []
    seed = 0
    while len(found) < wanted:
        cluster = SimCluster(seed, sim_options)
        if any(fault.kind == kind and node in (None, fault.node) for fault in cluster.plan.node_faults):
            found.append(cluster)
        seed += 1
    return found


# --- the sweep -------------------------------------------------------------


def test_seed_sweep_keeps_safety_and_liveness():
    kinds: Counter = Counter()
    failures = []
    for seed in range(SEEDS):
        outcome = run_seed(seed, options())
        kinds.update(outcome.plan.kinds())
        if outcome.violations:
            failures.append(
                f"seed={seed} {outcome.violations[0]} [{outcome.plan.describe()}] "
                f"replay: python scripts/simulate.py --seed {seed} --verbose"
            )
    print(f"seeds={SEEDS} fault kinds: {dict(sorted(kinds.items()))}")
    assert not failures, "\n".join(failures)
    expected = set(NETWORK_KINDS + BYZANTINE_KINDS + GLOBAL_KINDS)
    if SEEDS >= 300:
        assert expected <= set(kinds), f"fault kinds never drawn: {expected - set(kinds)}"


def test_a_seed_replays_exactly():
    first = run_seed(7, options(verbose=True))
    second = run_seed(7, options(verbose=True))
    assert first.trace == second.trace
    assert len(first.trace) > 100


# --- the checkers, fed directly ---------------------------------------------


def test_safety_checker_reports_two_honest_nodes_executing_different_requests_at_one_seq():
    checker = SafetyChecker()
    checker.executed(1.0, node=1, seq=3, batch="aa" * 32, builds=(("c", 1),))
    checker.executed(1.2, node=2, seq=3, batch="bb" * 32, builds=(("c", 2),))
    assert [violation.kind for violation in checker.violations] == ["safety"]
    assert "seq 3" in checker.violations[0].text


def test_safety_checker_accepts_agreeing_nodes():
    checker = SafetyChecker()
    for node in range(4):
        # A node that learnt the batch by state transfer starts no builds but agrees on the digest.
        checker.executed(1.0, node=node, seq=1, batch="aa" * 32, builds=(("c", 1), ("c", 2)) if node else ())
        checker.produced(("c", 1), SUCCESS)
    checker.accepted(2.0, ("c", 1), SUCCESS)
    assert checker.violations == []


def test_safety_checker_reports_a_verdict_no_honest_node_produced():
    checker = SafetyChecker()
    checker.produced(("c", 1), SUCCESS)
    checker.accepted(2.0, ("c", 1), FAILURE)
    assert len(checker.violations) == 1 and "no honest node produced" in checker.violations[0].text


def test_safety_checker_reports_a_request_executed_twice():
    checker = SafetyChecker()
    checker.executed(1.0, node=1, seq=1, batch="aa" * 32, builds=(("c", 1),))
    checker.executed(2.0, node=1, seq=2, batch="bb" * 32, builds=(("c", 1),))
    assert any("twice" in violation.text for violation in checker.violations)


def test_liveness_reports_a_request_never_answered():
    [failure] = liveness_failures(130.0, submitted=[("c", 1), ("c", 2)], accepted=[("c", 1)])
    assert failure.kind == "liveness" and "('c', 2)" in failure.text
    assert liveness_failures(130.0, submitted=[("c", 1)], accepted=[("c", 1)]) == []


# --- the checkers, catching broken clusters -------------------------------------


def test_simulation_catches_replicas_that_commit_without_a_quorum(monkeypatch):
    # Backups that execute whatever pre-prepare they see first let an equivocating primary split them.
    monkeypatch.setattr("pbft.replica.prepare_quorum", lambda f: 0)
    monkeypatch.setattr("pbft.replica.commit_quorum", lambda f: 1)
    clusters = _seeds_with("equivocate", options(primary_faults=True), node=0, wanted=10)
    outcomes = [cluster.run() for cluster in clusters]
    assert any("executed" in str(violation) for outcome in outcomes for violation in outcome.safety_violations)


def test_simulation_catches_a_client_that_trusts_one_reply(monkeypatch):
    monkeypatch.setattr("pbft.sim.client.reply_quorum", lambda f: 1)
    outcomes = [cluster.run() for cluster in _seeds_with("lie", options(), wanted=10)]
    assert any("no honest node produced" in str(violation) for outcome in outcomes for violation in outcome.safety_violations)


def test_simulation_reports_liveness_when_builds_outlast_the_bound():
    outcome = run_seed(3, options(build_min_s=500.0, build_max_s=600.0))
    assert outcome.liveness_failures and not outcome.safety_violations


# --- the simulator's own parts -------------------------------------------------


def test_sim_signatures_verify_only_with_the_signers_secret():
    keys = SimKeys.generate(random.Random(1), 4, ["alice"])
    request = signed(Request("alice", 1, Operation("example", "pass-1")), keys.for_client("alice").sign)
    assert decode(encode(request)) == request  # 128 hex digits pass the codec
    assert keys.for_node(0).verify_client("alice", request.payload(), request.sig)
    forged = signed(request, keys.for_node(3).sign)
    assert not keys.for_node(0).verify_client("alice", forged.payload(), forged.sig)
    assert not keys.for_node(0).verify_node(2, request.payload(), keys.for_node(3).sign(request.payload()))


def test_crashed_nodes_restart_from_their_stores_without_breaking_safety():
    restarted = []
    for seed in range(60):
        outcome = run_seed(seed, options(verbose=True))
        if any(" restart node=" in line for line in outcome.trace):
            restarted.append(seed)
            assert not outcome.violations, (seed, outcome.violations)
    # A crash that ends before every request is answered restarts its node from the store.
    assert len(restarted) >= 3, restarted
