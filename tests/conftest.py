"""Each test carries the marker of its layer, the folder it lives in, so that
`scripts/test.sh -m core` runs the pure protocol tests in seconds,
`-m simulation` the seeded simulator's sweeps and `-m "not e2e"` everything
but the real network. A layer's fixtures are in
its own conftest.py; helpers that more than one layer uses are in tests/support/.

scripts/test.sh runs the suite on pytest-xdist workers (`--dist loadgroup`). Tests that use
what the machine has one of -- the Docker engine, the example network's ports and
run/ files, network namespaces -- are one group, run in order on one worker and
collected first so that it starts them at once; the pure and process-private tests
(their own ports and folders) share the other workers, the simulator's sweeps last.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis's clocks (a deadline per example, the time spent making examples) measure the
# machine's load, not the code: with the engine's tests beside them on two cores they fail
# tests that are fine. What the properties check stays as each test's settings say.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

TESTS = Path(__file__).resolve().parent
LAYERS = ("core", "simulation", "shared", "node", "client", "runner", "e2e", "project")
# Layers whose every test uses the machine's one network, run/ folder or engine.
MACHINE_LAYERS = ("e2e", "project")
MACHINE_GROUP = pytest.mark.xdist_group("machine")


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
        if uses_the_machine(item, layer):
            item.add_marker(MACHINE_GROUP)
            rank[item.nodeid] = 0
        else:
            rank[item.nodeid] = 2 if layer == "simulation" else 1
    # Stable: the machine's group first, the simulator's long sweeps last (see the docstring).
    items.sort(key=lambda item: rank[item.nodeid])
