"""End to end: a cancel reaches a node that a fault kept from it, on a network of the test's own.

A cancel is a request ordered like any other, and its effect is a function of the order
(pbft/cancels.py): wherever it executes — executed there, learnt by state transfer, or replayed
from the node's store after a restart — its target is stopped and its verdict in that node's
ledger becomes `cancelled`. Each test runs one long build (`sleep 120`) on all four nodes,
cancels it, and puts node 3 through a fault at the moment that matters:

- killed between the cancel and its target's end (`--crash-at after-cancel 1`: the process
  ends like kill -9 right after it saved the cancel's execution, before it stopped the build,
  whose container outlives it): started again, node 3 answers the build `cancelled`, removes
  its container and never builds it again;
- stopped cleanly at the same moment (`--crash-at stop-after-cancel 1`: SIGTERM to itself,
  the build never told to stop, so the shutdown ends it and its result is never reported):
  started again, likewise;
- cut off (SIGSTOP) while its build runs, the cancel is ordered and a stable checkpoint passes
  it: let go, node 3 learns the cancel by state transfer and stops the build it still runs.

In each, the webhook that asked for the build answers `cancelled`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import yaml

from harness.builds import slow_repository
from harness.scripts import client, describe, run_script
from harness.verdicts import WEBHOOK_TIMEOUT_S, http_json
from node.crashpoints import CRASH_EXIT_CODE
from node.peers import MAX_FRAME_AGE_S
from shared.config import NetworkConfig, load_config
from tests.e2e.example_network import (
    OWN_NETWORK_MARKS, REPO_ROOT, example_copy, log_offsets, new_log_text, node_record, node_status, poll, runs_command,
    webhook, with_quick_branch,
)

pytestmark = OWN_NETWORK_MARKS

LONG_SPEC = "commands:\n  - echo build started\n  - sleep 120\n  - echo build finished\n"
VICTIM = 3  # a backup: node 0 stays the primary and nodes 0-2 are a quorum without it


def configured(tmp_path: Path, **protocol) -> tuple[Path, NetworkConfig]:
    """The example network with byzantine switches allowed (for --crash-at) and one repository:
    master builds for two minutes, branch `quick` passes at once."""
    repository = tmp_path / "long"
    slow_repository(repository, LONG_SPEC)
    with_quick_branch(repository)
    config_path = example_copy(tmp_path, allow_byzantine=True)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "long", "url": str(repository)}]
    data["protocol"].update(protocol)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_path, load_config(config_path)


def cancelled_in_ledger(config: NetworkConfig, node_id: int, build_id: str) -> dict | None:
    record = node_record(config, node_id, build_id)
    return record if record and (record["verdict"] or {}).get("state") == "cancelled" else None


def containers(config: NetworkConfig, node_id: int, build_id: str) -> list[str]:
    """The build's containers that node `node_id` made (labelled with its data directory), running
    or not: `name status`, and ` running` becomes ` scripted` once the build's script runs in it.
    A container runs from its start, held at its gate (builder/engine/gate.py) while the node
    fills its workspace; one whose node dies there gets no script and ends at once."""
    data_dir = (config.data_dir / f"node-{node_id}").resolve()
    engine = docker.from_env()
    try:
        listed = engine.containers.list(all=True, ignore_removed=True, filters={"label": [
            f"pbft-ci.build={config.clients[0].name}-{build_id}", f"pbft-ci.data={data_dir}"]})
        return [f"{container.name} {scripted(container)}" for container in listed]
    finally:
        engine.close()


def scripted(container) -> str:
    """The container's status, `scripted` once it runs LONG_SPEC's `sleep`."""
    return "scripted" if runs_command(container, "sleep 120") else container.status


def running_everywhere(config: NetworkConfig, build_id: str) -> bool:
    return all(any(line.endswith(" scripted") for line in containers(config, node.id, build_id))
               for node in config.nodes)


class LongBuild:
    """A webhook for master, waiting for its verdict in a thread; `build_id` once the client has
    a record of it, and once each node's build container runs."""

    def __init__(self, base_url: str, config: NetworkConfig) -> None:
        self.answers: list[tuple[int, dict]] = []
        self._thread = threading.Thread(target=lambda: self.answers.append(http_json(
            "POST", f"{base_url}/webHook", {"branch": "master"}, timeout_s=WEBHOOK_TIMEOUT_S)), daemon=True)
        self._thread.start()
        self.build_id = poll("the client's record of the build", lambda: next(
            (build["build_id"] for build in http_json("GET", f"{base_url}/builds?limit=1")[1]["builds"]), None), 30)
        poll("the build's container on every node", lambda: running_everywhere(config, self.build_id))

    def answer(self, timeout_s: float = 60) -> dict:
        """The webhook's answer: it waits for the build's verdict."""
        self._thread.join(timeout=timeout_s)
        assert self.answers, f"the webhook did not answer within {timeout_s} s"
        code, answer = self.answers[0]
        assert code == 200, answer
        return answer


def cancel(base_url: str, build_id: str) -> str:
    """POST /builds/<id>/cancel; the cancel's own build id."""
    code, answer = http_json("POST", f"{base_url}/builds/{build_id}/cancel")
    assert code == 202 and answer["build_id"] == build_id, answer
    return answer["cancel_id"]


def answers(config: NetworkConfig, node_id: int, process: subprocess.Popen) -> bool:
    """Whether node `node_id` answers GET /status as `process`; fails once the process is gone."""
    assert process.poll() is None, f"node {node_id} exited with {process.returncode}"
    try:
        return node_status(config, node_id)["pid"] == process.pid
    except OSError:
        return False


@contextmanager
def armed_node(config_path: Path, config: NetworkConfig, point: str) -> Iterator[subprocess.Popen]:
    """Node 3 running with `--crash-at POINT 1`, which the scripts do not pass: started by hand
    (as tests/node/test_crash_points.py starts its nodes) after ./stopNetwork.sh --node 3, so
    that once it has stopped ./startNetwork.sh starts it again and ./stopNetwork.sh stops it at
    the end. Killed, whatever happens, if it still runs."""
    stopped = run_script("./stopNetwork.sh", "--node", str(VICTIM))
    assert stopped.returncode == 0, describe(stopped)
    with (config.log_dir / f"node-{VICTIM}.stdout").open("ab") as output:
        armed = subprocess.Popen(
            [".venv/bin/python", "node/index.py", "--config", str(config_path), "--id", str(VICTIM),
             "--crash-at", point, "1"],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        poll(f"node {VICTIM} started by hand to answer", lambda: answers(config, VICTIM, armed), 30)
        yield armed
    finally:
        if armed.poll() is None:
            os.killpg(armed.pid, signal.SIGKILL)
            armed.wait()


def restarted_without_the_build(network, base_url: str, config_path: Path, config: NetworkConfig, build_id: str) -> None:
    """Start node 3 again: its ledger says `cancelled` for the build, as its own result too, no
    container of it is left, and a quick build after the restart shows it has executed
    everything since without ever starting the cancelled build again."""
    offsets = log_offsets(config.log_dir)
    network(str(config_path))  # ./startNetwork.sh starts the nodes that do not run: node 3
    record = poll(f"node {VICTIM}'s ledger to say cancelled", lambda: cancelled_in_ledger(config, VICTIM, build_id), 30)
    assert record["own_result"]["status"] == "cancelled", record
    poll(f"node {VICTIM} to remove the build's container", lambda: not containers(config, VICTIM, build_id), 30)
    quick = webhook(base_url, config, "quick")
    assert quick["status"] == "success", quick
    record = poll(f"node {VICTIM}'s own result of the quick build",
                  lambda: (node_record(config, VICTIM, quick["build_id"]) or {}).get("own_result"), 30)
    assert record["status"] == "success", record
    restarted = new_log_text(f"node-{VICTIM}.log", offsets, config.log_dir)
    assert f"build={config.clients[0].name}-{build_id} start" not in restarted, restarted[-3000:]
    assert not containers(config, VICTIM, build_id)


def test_a_node_killed_between_a_cancel_and_its_targets_end_never_runs_it_again(network, tmp_path):
    """Node 3 runs with `--crash-at after-cancel 1`: it exits as kill -9 would right after it
    saved the cancel's execution, before it stopped the build, whose container outlives it."""
    config_path, config = configured(tmp_path)
    network(str(config_path))
    with armed_node(config_path, config, "after-cancel") as armed, \
            client(config, tmp_path / "client.out", str(config_path)) as base_url:
        build = LongBuild(base_url, config)
        cancel(base_url, build.build_id)
        assert armed.wait(timeout=60) == CRASH_EXIT_CODE
        crashed = new_log_text(f"node-{VICTIM}.log", log_dir=config.log_dir)
        assert [line for line in crashed.splitlines() if f"node={VICTIM} crash-at after-cancel" in line
                and f"{config.clients[0].name}-{build.build_id}" in line], crashed[-3000:]
        # The window: the cancel is in node 3's store, its build's container still runs its script.
        assert [line for line in containers(config, VICTIM, build.build_id) if line.endswith(" scripted")]
        assert build.answer()["status"] == "cancelled"
        restarted_without_the_build(network, base_url, config_path, config, build.build_id)


def test_a_node_stopped_cleanly_between_a_cancel_and_its_targets_end_never_runs_it_again(network, tmp_path):
    """Node 3 runs with `--crash-at stop-after-cancel 1`: right after it saved the cancel's
    execution it stops cleanly (SIGTERM to itself), its build never told to stop: the shutdown
    ends the build, whose result is never reported, so its store holds it unfinished."""
    config_path, config = configured(tmp_path)
    network(str(config_path))
    with armed_node(config_path, config, "stop-after-cancel") as armed, \
            client(config, tmp_path / "client.out", str(config_path)) as base_url:
        build = LongBuild(base_url, config)
        cancel(base_url, build.build_id)
        assert armed.wait(timeout=60) == 0  # a clean stop
        stopped = new_log_text(f"node-{VICTIM}.log", log_dir=config.log_dir)
        assert [line for line in stopped.splitlines() if f"node={VICTIM} crash-at stop-after-cancel" in line
                and f"{config.clients[0].name}-{build.build_id}" in line], stopped[-3000:]
        assert (node_record(config, VICTIM, build.build_id) or {}).get("own_result") is None  # not while it is down
        assert build.answer()["status"] == "cancelled"
        restarted_without_the_build(network, base_url, config_path, config, build.build_id)


def test_a_node_cut_off_while_a_cancel_is_ordered_stops_its_build_once_it_learns_it(network, tmp_path):
    """Node 3 is stopped (SIGSTOP) while its build runs: its container, a process of the engine,
    runs on. Once the others' links to it have dropped (their heartbeats go unanswered), nodes
    0-2 order the cancel, then quick builds until a stable checkpoint (every 2 sequence numbers
    here) passes it, and the frames they queued for node 3 expire (node/peers.py): nothing of
    the cancel is left for node 3 but the checkpoint. Let go (SIGCONT), node 3 catches up by
    state transfer and stops the build it still runs, within a minute."""
    config_path, config = configured(tmp_path, checkpoint_interval=2, log_window=4)
    pids = network(str(config_path))
    offsets = log_offsets(config.log_dir)
    others = [node.id for node in config.nodes if node.id != VICTIM]
    try:
        with client(config, tmp_path / "client.out", str(config_path)) as base_url:
            build = LongBuild(base_url, config)
            os.kill(pids[VICTIM], signal.SIGSTOP)
            poll(f"nodes {others} to lose their links to node {VICTIM}", lambda: not any(
                node_status(config, node_id)["links"][str(VICTIM)]["connected"] for node_id in others))
            cancel_id = cancel(base_url, build.build_id)
            assert build.answer()["status"] == "cancelled"
            ordered_at = time.monotonic()
            cancel_seq = poll("the cancel in node 0's ledger", lambda: node_record(config, 0, cancel_id))["seq"]
            quick = 0
            while min(node_status(config, node_id)["low_watermark"] for node_id in others) <= cancel_seq:
                assert quick < 8, f"no stable checkpoint passed the cancel's seq {cancel_seq} after {quick} builds"
                assert webhook(base_url, config, "quick")["status"] == "success"
                quick += 1
            poll("nodes 0-2 to remove the build's containers",
                 lambda: not any(containers(config, node_id, build.build_id) for node_id in others), 30)
            # Cut off all along, node 3 still runs the build the others stopped.
            assert [line for line in containers(config, VICTIM, build.build_id) if line.endswith(" scripted")]
            assert node_record(config, 0, build.build_id)["verdict"]["state"] == "cancelled"
            # Nothing to poll for: a frame queued for node 3 is dropped once it is this old.
            time.sleep(max(0.0, ordered_at + MAX_FRAME_AGE_S + 1 - time.monotonic()))
            os.kill(pids[VICTIM], signal.SIGCONT)

            poll(f"node {VICTIM}'s ledger to say cancelled",
                 lambda: cancelled_in_ledger(config, VICTIM, build.build_id))
            poll(f"node {VICTIM}'s build container to go", lambda: not containers(config, VICTIM, build.build_id))
            own = poll(f"node {VICTIM}'s own result", lambda: node_record(config, VICTIM, build.build_id)["own_result"])
            assert own["status"] == "cancelled", own
            log = new_log_text(f"node-{VICTIM}.log", offsets, config.log_dir)
            learnt = [line for line in log.splitlines() if "phase=state-transfer" in line
                      or f"cancels build={config.clients[0].name}-{build.build_id}" in line]
            assert any("phase=state-transfer" in line for line in learnt), log[-3000:]
            assert any(line.endswith(": stopping it") for line in learnt), log[-3000:]
            print(f"{quick} quick builds took a stable checkpoint past the cancel (seq {cancel_seq}); node {VICTIM}:",
                  *learnt, sep="\n  ")
    finally:
        os.kill(pids[VICTIM], signal.SIGCONT)  # stopped, it could not stop cleanly
