"""Each test carries the marker of its layer, the folder it lives in, so that
`scripts/test.sh -m core` runs the pure protocol tests in seconds,
`-m simulation` the seeded simulator's sweeps and `-m "not e2e"` everything
but the real network. A layer's fixtures are in
its own conftest.py; helpers that more than one layer uses are in tests/support/, and those the
benches use too in harness/.

scripts/test.sh runs the suite on pytest-xdist workers (`--dist loadgroup`). Tests that use
what the machine has one of -- the Docker engine, the example network's ports and
run/ files, network namespaces -- are one group, run in order on one worker and
collected first so that it starts them at once. The executor's own tests use the engine
only through containers and volumes labelled with their own data directory, so they are a
second group, collected next, which another worker runs beside the first. End-to-end tests
marked `own_network` start a network with ports, data, logs and pid files of their own
(`example_copy`, PBFT_CI_RUN_DIR): they are a third group, collected next, run in order beside
the other two, but for a few files the machine's group runs, so that neither group is the run's
longest path. Groups, not one test per worker: three networks of four nodes building at once
on two cores stretch the waits that some of these tests bound; only the quick benches, which
bound none, run apart from them. The pure and process-private tests (their own ports and folders)
share the workers, the simulator's sweeps last.

A test that hangs fails after PBFT_CI_TEST_TIMEOUT_S (tests/support/watchdog.py) with the
stacks of the threads and tasks it waited in, and the run goes on.
"""

import getpass
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.watchdog import pytest_configure, pytest_runtest_protocol  # noqa: F401 - hooks of the suite

# Hypothesis's clocks (a deadline per example, the time spent making examples) measure the
# machine's load, not the code: with the engine's tests beside them on two cores they fail
# tests that are fine. What the properties check stays as each test's settings say.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

# Every node the suite starts, in this process or as a process of its own, checks its
# replica's invariants after each step and stops at the first broken one (node/contexts.py).
os.environ["PBFT_CI_CHECK_INVARIANTS"] = "1"

TESTS = Path(__file__).resolve().parent
LAYERS = ("core", "simulation", "shared", "builder", "node", "client", "runner", "e2e", "project")
# Layers whose every test uses the machine's one network, run/ folder or engine.
MACHINE_LAYERS = ("e2e", "project")
MACHINE_GROUP = pytest.mark.xdist_group("machine")
ENGINE_GROUP = pytest.mark.xdist_group("engine")
NETWORKS_GROUP = pytest.mark.xdist_group("networks")
# Executor tests that make only what their own executor labels: they share the engine with the
# machine's group. Not those that change the engine's or the host's state for everyone (host
# faults, a second engine, the build network's firewall rules, hostile builds) or use the
# registry on its one port.
ENGINE_FILES = frozenset({
    "test_executor.py", "test_executor_artifacts.py", "test_executor_cancel.py", "test_executor_caches.py",
    "test_executor_checkout.py", "test_executor_matrix.py", "test_executor_pipeline.py", "test_executor_secrets.py",
    "test_executor_services.py", "test_executor_triggers.py", "test_ready_containers.py",
})
# End-to-end tests on networks of their own that the machine's group runs: on the networks' group
# alone they made it the suite's longest path (1,248 s of a 1,278 s run of the e2e layer by
# itself), and a third group would put three networks on the two cores at once.
MACHINE_GROUP_NETWORK_FILES = frozenset({
    "test_end_to_end_transfers.py", "test_end_to_end_dashboard.py", "test_end_to_end_actions.py",
    "test_end_to_end_build_output.py", "test_end_to_end_postgres_project.py", "test_end_to_end_signin.py",
})
# End-to-end tests on networks of their own that bound no wait: the quick benches, whose numbers
# are not checked. They run beside the networks' group, on whichever worker is free.
UNTIMED_NETWORK_FILES = frozenset({"test_bench_builds.py"})


def uses_the_machine(item: pytest.Item, layer: str) -> bool:
    return (
        layer in MACHINE_LAYERS
        or item.get_closest_marker("docker") is not None
        or "docker_client" in getattr(item, "fixturenames", ())
    )


# First: pytest-xdist's own hook reads the group markers this one adds.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {}
    for item in items:
        layer = item.path.relative_to(TESTS).parts[0]
        assert layer in LAYERS, f"{item.nodeid}: a test lives in the folder of its layer, one of {LAYERS}"
        item.add_marker(getattr(pytest.mark, layer))
        if layer == "e2e" and item.get_closest_marker("own_network") is not None:
            if item.path.name in UNTIMED_NETWORK_FILES:
                rank[item.nodeid] = 0.8
            elif item.path.name in MACHINE_GROUP_NETWORK_FILES:
                item.add_marker(MACHINE_GROUP)
                rank[item.nodeid] = 0.1
            else:
                item.add_marker(NETWORKS_GROUP)
                rank[item.nodeid] = 0.7
        elif uses_the_machine(item, layer) and layer == "builder" and item.path.name in ENGINE_FILES:
            item.add_marker(ENGINE_GROUP)
            rank[item.nodeid] = 0.5
        elif uses_the_machine(item, layer):
            item.add_marker(MACHINE_GROUP)
            rank[item.nodeid] = 0
        else:
            rank[item.nodeid] = 2 if layer == "simulation" else 1
    # Stable: the machine's group first, the engine's and the networks' next, the simulator's long
    # sweeps last (see the docstring).
    items.sort(key=lambda item: rank[item.nodeid])


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove what an earlier run killed before its teardown left in the engine (its machine's
    session ended, or a timeout killed it): build containers and volumes labelled with a data
    directory in a run's temporary folder (pytest-NNN) that is gone or whose lock names a
    process that is not running: pytest removes the lock when a run ends, and a test's own
    teardown removes what it made, killed nodes included; a killed run does neither. Done once,
    by the run's controller, never for a folder a live run holds."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: its controller did it
        return
    import docker.errors
    import requests.exceptions

    from harness.builds import remove_builds

    root = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    try:
        remove_builds(lambda data_dir: data_dir.is_relative_to(root)
                      and _killed_run(root / data_dir.relative_to(root).parts[0]))
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass  # no engine here: nothing was left in one


def _killed_run(folder: Path) -> bool:
    """Whether the run whose temporary folder is `folder` was killed: the folder is gone, or
    its lock names a process that is no pytest run now."""
    try:
        pid = int((folder / ".lock").read_text())
    except FileNotFoundError:
        return not folder.exists()  # a run that ended removed its lock, and its teardowns ran
    except ValueError:
        return False
    try:
        return b"pytest" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
