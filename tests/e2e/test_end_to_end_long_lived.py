"""End to end, as a network lives for months (issue 7): the README's commands, real Docker builds.

Webhooks that arrive after idle gaps are ordered and built by every node with
no state transfer at all; a node killed with `kill -9` in the middle of a build
and started again ends with the same certified verdict as its peers.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

from harness.scripts import client
from shared.config import load_config
from tests.e2e.example_network import (
    OWN_NETWORK_MARKS, example_copy, expect, kill_9, new_log_text, node_status, wait_for_statuses, wait_logged, webhook,
)

pytestmark = OWN_NETWORK_MARKS

IDLE_GAP_S = 2.5  # longer than the nodes' fetch interval (1 s)


def node_builds(config, node_id: int, seqs) -> dict[int, list[dict]]:
    """What `GET /builds/{seq}` on node `node_id` shows for each of `seqs`."""
    node = config.node(node_id)
    records = {}
    for seq in seqs:
        with urllib.request.urlopen(f"http://{node.host}:{node.port}/builds/{seq}", timeout=5) as response:
            records[seq] = json.load(response)["builds"]
    return records


def test_webhooks_after_idle_gaps_are_built_by_every_node_without_any_fetch(network, tmp_path):
    config_path = example_copy(tmp_path, allow_byzantine=False)
    network(str(config_path))
    config = load_config(config_path)
    branches = ["master", "feature"] * 5
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        for branch in branches:
            time.sleep(IDLE_GAP_S)
            expect(webhook(base_url, config, branch), branch)
        wait_logged(config, len(branches))  # each build, and the batch that logged its verdict
        statuses = wait_for_statuses(config, range(4), lambda s: s["builds_running"] == 0)
    last = statuses[0]["last_executed"]
    for node_id, seen in statuses.items():
        assert seen["last_executed"] == last, statuses
        assert not [reason for reason in seen["dropped"] if "fetch" in reason], seen["dropped"]
        assert all(link["reconnects"] == 0 for link in seen["links"].values()), seen["links"]
        text = new_log_text(f"node-{node_id}.log", log_dir=config.log_dir)
        assert "phase=fetch" not in text, re.findall(r".*phase=fetch.*", text)[:3]
        records = node_builds(config, node_id, range(1, last + 1))
        own = [build["own_result"] for builds in records.values() for build in builds]
        assert len(own) == 10 and all(result is not None for result in own), (node_id, records)


def test_a_node_killed_in_the_middle_of_a_build_ends_with_its_peers_certified_verdict(network, tmp_path):
    config_path = example_copy(tmp_path, allow_byzantine=False)
    pids = network(str(config_path))
    config = load_config(config_path)
    victim = 2
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        expect(webhook(base_url, config, "master"), "master")  # mirrors fetched everywhere
        verdicts = []
        sender = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "feature")))
        sender.start()
        deadline = time.monotonic() + 30
        started = r"node=2 seq=(\d+) build=\S+ start"
        while len(seqs := set(re.findall(started, new_log_text(f"node-{victim}.log", log_dir=config.log_dir)))) < 2:
            assert time.monotonic() < deadline, "node 2 never started the build"
            time.sleep(0.01)
        built_at = (1, max(map(int, seqs)))  # the master build's and the feature build's (the verdict log's batches aside)
        kill_9(pids[victim])  # the build is running
        sender.join(timeout=120)
        expect(verdicts[0], "feature")
        network(str(config_path))  # starts only the missing node again
        deadline = time.monotonic() + 60
        while not all(build["verdict"]["state"] == "certified"
                      for builds in node_builds(config, victim, built_at).values() for build in builds):
            assert time.monotonic() < deadline, node_builds(config, victim, built_at)
            time.sleep(0.5)
        records = {node_id: node_builds(config, node_id, built_at) for node_id in range(4)}
        wait_logged(config, 2)
        statuses = wait_for_statuses(config, range(4), lambda s: s["last_executed"] == node_status(config, 0)["last_executed"])
    for seq in built_at:
        verdicts_at_seq = {node_id: [b["verdict"] for b in records[node_id][seq]] for node_id in range(4)}
        assert all(v == verdicts_at_seq[0] for v in verdicts_at_seq.values()), verdicts_at_seq
        assert all(b["verdict"]["state"] == "certified" for b in records[victim][seq]), records[victim][seq]
    assert len({status["last_executed"] for status in statuses.values()}) == 1, statuses
    # It really died mid-build: the restarted process ran that build again (and, if it
    # was still building seq 1 when the master webhook returned, that one too).
    text = new_log_text(f"node-{victim}.log", log_dir=config.log_dir)
    assert re.search(rf"node={victim} restored: .* unfinished_builds=[12]\b", text), text[-3000:]
    assert len(re.findall(rf"node={victim} seq={built_at[1]} build=\S+ start", text)) == 2, text[-3000:]
