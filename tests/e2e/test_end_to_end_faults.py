"""End to end under faults (issue 3): the README's commands, real processes, real Docker builds.

A primary killed with `kill -9` while webhooks are in flight, and a primary
started with `--byzantine equivocate`: in both cases every webhook still gets
its correct verdict after a view change, and the honest nodes agree on what
they executed. With the example config (view-change timeout 4 s, client
retransmission 5 s) a verdict that waits for a view change takes about 10 s
plus the build.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


from harness.scripts import client, describe, run_script
from node.storage import NodeStore
from shared.config import NetworkConfig, load_config
from tests.e2e.example_network import (
    OWN_NETWORK_MARKS, EXECUTE_LINE, example_copy, expect, kill_9, new_log_text, running_node, wait_for_statuses,
    webhook,
)
from tests.e2e.example_network import node_status

pytestmark = OWN_NETWORK_MARKS

# Room for the builds themselves: two run at a time per node, about 1 s each.
BUILDS_S = 15


def view_change_bound_s(config: NetworkConfig) -> float:
    return config.protocol.client_retransmit_s + config.protocol.view_change_timeout_s + BUILDS_S


def executed_by_seq(nodes, log_dir: Path) -> dict[int, dict[int, str]]:
    """seq -> node -> digest prefix, from the `phase=execute` lines the nodes logged during this test."""
    by_seq: dict[int, dict[int, str]] = {}
    for node_id in nodes:
        for match in EXECUTE_LINE.finditer(new_log_text(f"node-{node_id}.log", log_dir=log_dir)):
            assert int(match[1]) == node_id, match[0]
            seq, digest = int(match[2]), match[3]
            assert by_seq.setdefault(seq, {}).setdefault(node_id, digest) == digest, f"node {node_id} re-executed {seq}"
    return by_seq


def test_kill_9_of_the_primary_while_webhooks_arrive_still_gives_every_verdict(network, tmp_path):
    config_path = example_copy(tmp_path, allow_byzantine=False)
    pids = network(str(config_path))
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        expect(webhook(base_url, config, "master"), "master")  # the nodes' mirrors are fetched by now
        before = {node.id: node_status(config, node.id) for node in config.nodes}
        assert {(s["view"], s["primary"]) for s in before.values()} == {(0, 0)}, before
        primary, view_before = 0, 0
        live = [node.id for node in config.nodes if node.id != primary]

        branches = ["master", "feature"] * 3
        with ThreadPoolExecutor(max_workers=len(branches)) as pool:
            def send(index: int) -> tuple[str, dict, float]:
                time.sleep(0.4 * index)  # a stream: some before the kill, some after
                started = time.monotonic()
                return branches[index], webhook(base_url, config, branches[index]), time.monotonic() - started

            futures = [pool.submit(send, index) for index in range(len(branches))]
            time.sleep(0.9)
            assert running_node(pids[primary])
            kill_9(pids[primary])
            killed_at = time.monotonic()
            results = [future.result() for future in futures]
        last_verdict_after_kill_s = time.monotonic() - killed_at

        for branch, verdict, _elapsed_s in results:
            expect(verdict, branch)
        # A verdict that needs a view change waits for the client's
        # retransmission and the backups' timer on top of the builds.
        assert last_verdict_after_kill_s < view_change_bound_s(config), (last_verdict_after_kill_s, results)

        statuses = wait_for_statuses(config, live, lambda s: s["view"] > view_before)
        for seen in statuses.values():
            assert seen["view"] >= max(1, view_before + 1), statuses
            assert seen["primary"] != primary, statuses

        # The client now knows the new view: the next request goes to the new primary over a
        # live link and its verdict needs no view change. Asserted from the client's log and
        # the nodes' views, not from a time a loaded machine can stretch (a build slower than
        # client_retransmit_s is retransmitted, harmlessly).
        (new_primary,) = {seen["primary"] for seen in statuses.values()}
        views_before = {node_id: seen["view"] for node_id, seen in statuses.items()}
        after = webhook(base_url, config, "feature")
        expect(after, "feature")
        submitted = re.search(rf"submitted build {after['build_id']}: .* view=(\d+) primary=(\d+)(.*)",
                              new_log_text("client.log", log_dir=config.log_dir))
        assert submitted, after
        assert (int(submitted[2]), submitted[3]) == (new_primary, ""), submitted[0]
        views_after = {node_id: node_status(config, node_id)["view"] for node_id in live}
        assert views_after == views_before, (views_before, views_after)


def test_an_equivocating_primary_splits_no_honest_nodes_and_verdicts_keep_coming(network, tmp_path):
    config_path = example_copy(tmp_path, allow_byzantine=True)
    equivocator, honest = 0, (1, 2, 3)
    network(str(config_path), "--byzantine", f"{equivocator}:equivocate")
    config = load_config(config_path)
    assert node_status(config, 1)["primary"] == equivocator

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        first = webhook(base_url, config, "master")
        expect(first, "master")
        assert first["elapsed_ms"] < view_change_bound_s(config) * 1000, first
        branches = ["feature", "master", "feature"]
        with ThreadPoolExecutor(max_workers=len(branches)) as pool:
            verdicts = list(pool.map(lambda branch: webhook(base_url, config, branch), branches))
        for branch, verdict in zip(branches, verdicts):
            expect(verdict, branch)

    statuses = wait_for_statuses(config, honest, lambda s: s["view"] >= 1 and s["builds_running"] == 0)
    assert all(s["view"] >= 1 and s["primary"] != equivocator for s in statuses.values()), statuses

    log_0 = new_log_text(f"node-{equivocator}.log", log_dir=config.log_dir)
    assert re.search(rf"node={equivocator} started as byzantine: equivocate", log_0)
    assert re.search(r"byzantine equivocate: view=0 seq=1 digest=[0-9a-f]+ .* to odd peers", log_0), log_0[-3000:]

    by_seq = executed_by_seq(honest, config.log_dir)
    assert by_seq, "the honest nodes logged no executions"
    split = {seq: digests for seq, digests in by_seq.items() if len(set(digests.values())) > 1}
    assert not split, f"honest nodes executed different batches: {split}"
    executed_everywhere = [seq for seq, digests in by_seq.items() if set(digests) == set(honest)]
    # The split slot, then the first webhook, then the batch or batches of the three concurrent ones.
    assert len(executed_everywhere) >= 3, by_seq


def test_a_node_killed_and_restarted_during_50_webhooks_catches_up_and_ledgers_agree(network, tmp_path):
    config_path = example_copy(tmp_path, allow_byzantine=False)
    pids = network(str(config_path))
    config = load_config(config_path)
    victim = 2  # a backup: node 0 leads view 0 in the fresh data directory

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        branches = ["master", "feature"] * 25
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(webhook, base_url, config, branch) for branch in branches]
            while sum(future.done() for future in futures) < 10:
                time.sleep(0.1)
            kill_9(pids[victim])
            while sum(future.done() for future in futures) < 25:
                time.sleep(0.1)
            # Running the start script again restarts just the missing node.
            restarted = network(str(config_path))
            assert restarted[victim] != pids[victim]
            assert {i: restarted[i] for i in restarted if i != victim} == {i: pids[i] for i in pids if i != victim}
            verdicts = [future.result() for future in futures]
        for branch, verdict in zip(branches, verdicts):
            expect(verdict, branch)

        target = max(node_status(config, node.id)["last_executed"] for node in config.nodes)
        statuses = wait_for_statuses(config, [node.id for node in config.nodes],
                                     lambda s: s["last_executed"] >= target, timeout_s=60)
        assert all(s["last_executed"] >= target for s in statuses.values()), statuses

    result = run_script("./stopNetwork.sh")
    assert result.returncode == 0, describe(result)
    ledgers = {}
    for node in config.nodes:
        store = NodeStore(config.data_dir / f"node-{node.id}" / "node.sqlite", n=config.n, f=config.f)
        ledgers[node.id] = {seq: (digest, state) for seq, digest, state in store.ledger()}
        store.close()
    shared = set.intersection(*(set(ledger) for ledger in ledgers.values()))
    assert len(shared) >= 50, {node_id: len(ledger) for node_id, ledger in ledgers.items()}
    for seq in shared:
        assert len({ledgers[node_id][seq] for node_id in ledgers}) == 1, seq
