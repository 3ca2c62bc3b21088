"""Fixtures of the end-to-end tests: the example network, started and stopped around a test; a
scratch folder removed after it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.builds import remove_builds_under
from harness.scripts import START_TIMEOUT_S, describe, run_script
from tests.e2e.example_network import network_pids, running_node


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


@pytest.fixture
def browser(tmp_path) -> Iterator:
    """Headless Chromium (tests/e2e/browser.py), quit whatever the test did."""
    from tests.e2e.browser import chromium  # selenium only for the tests that open a browser

    with chromium(tmp_path / "chromedriver.log") as driver:
        yield driver


@pytest.fixture
def scratch(tmp_path) -> Path:
    """The test's temporary folder, removed afterwards. Asked for before `network`,
    so it is torn down after it: the nodes are stopped before their data goes."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(autouse=True)
def own_run_dir(tmp_path_factory, monkeypatch) -> Path:
    """The scripts keep their pid files in a folder of the test's own (PBFT_CI_RUN_DIR), so that
    ./stopNetwork.sh stops this test's network and never one another worker's test started.
    Not under tmp_path: `scratch` removes that before `network` has stopped the nodes."""
    folder = tmp_path_factory.mktemp("run")
    monkeypatch.setenv("PBFT_CI_RUN_DIR", str(folder))
    return folder
