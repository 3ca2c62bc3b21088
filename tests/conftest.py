"""Each test carries the marker of its layer, the folder it lives in, so that
`scripts/test.sh -m core` runs the pure protocol tests in seconds,
`-m simulation` the seeded simulator's sweeps and `-m "not e2e"` everything
but the real network. A layer's fixtures are in
its own conftest.py; helpers that more than one layer uses are in tests/support/.
"""

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LAYERS = ("core", "simulation", "shared", "node", "client", "e2e", "project")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        layer = item.path.relative_to(TESTS).parts[0]
        assert layer in LAYERS, f"{item.nodeid}: a test lives in the folder of its layer, one of {LAYERS}"
        item.add_marker(getattr(pytest.mark, layer))
