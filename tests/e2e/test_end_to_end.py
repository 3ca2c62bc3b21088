"""End to end: the README's own commands, a real git repository, the real Docker engine.

Each test starts the network with ./startNetwork.sh and the client with
./scripts/startClient.sh, exactly as a user would, sends webhooks over HTTP and
checks the verdicts, the certificates behind them and the log files. The
network is always stopped with ./stopNetwork.sh, the client with a signal.
"""

from __future__ import annotations

import os
import re
import signal
import time

from harness.scripts import client, describe, run_script
from shared.config import load_config
from tests.e2e.example_network import (
    E2E_MARKS, EXAMPLE_CONFIG, check_logs, check_three_verdicts, liar_config, log_offsets, new_log_text, node_status,
    run_dir, running_node,
)

pytestmark = E2E_MARKS


def test_readme_commands_give_agreed_verdicts_even_with_a_node_killed(network, tmp_path):
    started_at = time.time() - 1  # file times have coarse resolution on some file systems
    offsets = log_offsets()
    pids = network()
    config = load_config(EXAMPLE_CONFIG)
    assert sorted(pids) == [node.id for node in config.nodes]

    with client(config, tmp_path / "client.out") as base_url:
        check_three_verdicts(base_url, config)
        check_logs(offsets, started_at)

        # Nodes keep their view across restarts, so ask which one leads now and
        # kill another: a backup's loss needs no view change.
        primary = node_status(config, 0)["primary"]
        victim = next(node.id for node in config.nodes if node.id != primary)
        assert running_node(pids[victim])
        os.kill(pids[victim], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running_node(pids[victim]):
            assert time.monotonic() < deadline, f"node {victim} survived SIGKILL"
            time.sleep(0.05)

        for verdict in check_three_verdicts(base_url, config):
            assert victim not in verdict["agreed_by"], verdict

    stopped = run_script("./stopNetwork.sh")
    assert stopped.returncode == 0, describe(stopped)
    assert not (run_dir() / "network.pids").exists()
    assert not [pid for pid in pids.values() if running_node(pid)]
    assert "was not running" in stopped.stdout, stopped.stdout  # the killed node is reported, not signalled


def test_a_lying_node_does_not_change_the_verdicts(network, tmp_path):
    offsets = log_offsets()
    config_path = liar_config(tmp_path)
    liar = 3
    network(str(config_path), "--byzantine", f"{liar}:lie")
    config = load_config(config_path)

    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        master, feature, _missing = check_three_verdicts(base_url, config)
        # The liar flips passed and failed builds (an error it reports truthfully).
        assert liar not in master["agreed_by"] + feature["agreed_by"], (master, feature)

    assert re.search(rf"node={liar} started as byzantine: lie", new_log_text(f"node-{liar}.log", offsets))
