"""Fixtures of the end-to-end tests: the example network, started and stopped around a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.example_network import (
    START_TIMEOUT_S,
    describe,
    network_pids,
    remove_builds_under,
    run_script,
    running_node,
)


@pytest.fixture
def network(tmp_path) -> Iterator:
    """`start(*args)` runs ./startNetwork.sh ARGS; ./stopNetwork.sh always runs afterwards,
    and what killed nodes of the test's own data directories left in Docker is removed."""
    started: list[dict[int, int]] = []

    def start(*args: str) -> dict[int, int]:
        result = run_script("./startNetwork.sh", *args, timeout_s=START_TIMEOUT_S)
        assert result.returncode == 0, describe(result)
        assert "network up" in result.stdout, describe(result)
        started.append(network_pids())
        return started[-1]

    try:
        yield start
    finally:
        stopped = run_script("./stopNetwork.sh")
        assert stopped.returncode == 0, describe(stopped)
        leftovers = [pid for pids in started for pid in pids.values() if running_node(pid)]
        remove_builds_under(tmp_path)
        assert not leftovers, f"node processes still running after ./stopNetwork.sh: {leftovers}"
