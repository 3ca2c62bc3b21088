"""End to end: a cancel racing a build's end is never `disputed`, on a network of the test's own.

A build of about a second (`sleep 1`) is cancelled at a moment drawn around its end, 20 times
at n = 4: uniformly from 0.6 s before to 0.3 s after the time an uncancelled build's verdict
took from its webhook (measured first; about 1.4 s on the 2-core machine). Some cancels reach
the client after the verdict (409) and change nothing; others are ordered after nodes that
finished first have voted `success` — before cancels were a function of the order
(pbft/cancels.py), such a round could split honest nodes 2-2 and end `disputed`. For every
round: the webhook's answer, the client's record and every node's ledger say one decided
verdict, `cancelled` wherever the cancel was accepted (202) and a certified `success` wherever
it was refused, and never `disputed`. The seed of the delays is printed
(CANCEL_RACE_SEED=<seed> in the environment draws the same ones again).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import docker

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import WEBHOOK_TIMEOUT_S, http_json
from shared.config import NetworkConfig, load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, node_record, poll

pytestmark = OWN_NETWORK_MARKS

ROUNDS = 20
# From the webhook to its cancel, around the moment a build's verdict came without one.
BEFORE_END_S, AFTER_END_S = 0.6, 0.3
DECIDED = ("certified", "cancelled")






def build_containers(config: NetworkConfig) -> list[str]:
    """This network's build containers (its nodes label theirs with their data directories)."""
    engine = docker.from_env()
    try:
        listed = engine.containers.list(all=True, ignore_removed=True, filters={"label": "pbft-ci.role=build"})
        return [container.name for container in listed
                if container.labels.get("pbft-ci.data", "").startswith(f"{config.data_dir}/")]
    finally:
        engine.close()


def new_build(base_url: str, known: set[str]) -> str | None:
    """The newest build (not a cancel) the client has a record of that is not in `known`."""
    builds = http_json("GET", f"{base_url}/builds?limit=5")[1]["builds"]
    return next((b["build_id"] for b in builds if b["cancels"] is None and b["build_id"] not in known), None)


def decided(config: NetworkConfig, build_id: str) -> list[dict] | None:
    """Every node's ledger record of the build once each holds a decided verdict; None before.
    A `disputed` one fails at once."""
    records = [node_record(config, node.id, build_id) for node in config.nodes]
    states = [(record["verdict"] or {}).get("state") if record else None for record in records]
    assert "disputed" not in states, records
    return records if all(state in DECIDED for state in states) else None


def settled(base_url: str, build_id: str, verdict: str) -> dict | None:
    """The client's record of the build once its verdict is `verdict`; a `disputed` one fails at once."""
    code, record = http_json("GET", f"{base_url}/builds/{build_id}")
    assert code == 200 and record["verdict"] != "disputed", record
    return record if record["state"] != "pending" and record["verdict"] == verdict else None


def test_a_cancel_racing_a_builds_end_is_never_disputed(network, tmp_path):
    seed = int(os.environ.get("CANCEL_RACE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"CANCEL_RACE_SEED={seed}")
    delays = random.Random(seed)
    slow_repository(tmp_path / "repo", "commands:\n  - sleep 1\n")
    repositories = [{"name": "race", "url": str(tmp_path / "repo")}]
    config_path = example_copy(tmp_path, allow_byzantine=False, repositories=repositories)
    network(str(config_path))
    config = load_config(config_path)
    ended = Counter()
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        known = set()
        for _ in range(2):  # the first build of a fresh network also clones the nodes' mirrors
            sent_s = time.monotonic()
            code, uncancelled = http_json("POST", f"{base_url}/webHook", {"branch": "master"})
            end_s = time.monotonic() - sent_s
            assert code == 200 and uncancelled["status"] == "success", uncancelled
            known.add(uncancelled["build_id"])
        print(f"a build's verdict came {end_s:.2f} s after its webhook")
        for round_ in range(ROUNDS):
            delay_s = max(0.0, delays.uniform(end_s - BEFORE_END_S, end_s + AFTER_END_S))
            # Each round on an idle engine, so that the build ends when the first one did.
            poll("the last round's build containers to go", lambda: not build_containers(config), 30)
            answers = []
            sent_s = time.monotonic()
            sender = threading.Thread(target=lambda: answers.append(http_json(
                "POST", f"{base_url}/webHook", {"branch": "master"}, timeout_s=WEBHOOK_TIMEOUT_S)), daemon=True)
            sender.start()
            build_id = poll("the build's record", lambda: new_build(base_url, known), 30, every_s=0.02)
            known.add(build_id)
            time.sleep(max(0.0, sent_s + delay_s - time.monotonic()))  # the race is the point: no condition to wait for
            code, answer = http_json("POST", f"{base_url}/builds/{build_id}/cancel")
            assert code in (202, 409), answer
            expected = {202: ("cancelled", "cancelled"), 409: ("success", "certified")}[code]
            sender.join(timeout=WEBHOOK_TIMEOUT_S)
            where = f"round {round_} (cancel {delay_s:.2f} s after the webhook, answered {code})"
            assert answers and answers[0][0] == 200, (where, answers)
            assert answers[0][1]["status"] == expected[0], (where, answers[0][1])

            if code == 202:  # once the cancel has executed on a node, its target's verdict there is final
                poll(f"{where}: the cancel to execute on every node", lambda: all(
                    node_record(config, node.id, answer["cancel_id"]) for node in config.nodes))
            records = poll(f"{where}: a decided verdict on every node", lambda: decided(config, build_id))
            states = [record["verdict"]["state"] for record in records]
            assert states == [expected[1]] * config.n, (where, [(r["verdict"], r["own_result"]) for r in records])
            poll(f"{where}: the client's record to say {expected[0]}", lambda: settled(base_url, build_id, expected[0]))
            finished_first = sum((r["own_result"] or {}).get("status") == "success" for r in records)
            ended[expected[0] if code == 409 or not finished_first else "cancelled after some nodes finished"] += 1
            print(f"{where}: {expected[0]}, {finished_first} node(s) had finished")
    print(f"{ROUNDS} rounds:", dict(ended))
