"""The protocol core is pure (docs/ARCHITECTURE.md): no I/O, no clock, nothing from the node or client."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ["pbft.replica", "pbft.sim.cluster"]  # entry points: everything they reach inside pbft is core
FORBIDDEN = {"asyncio", "sqlite3", "os", "time", "socket", "subprocess", "aiohttp", "docker", "git", "node", "client",
             "shared"}


def imports_of(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def reachable(entry: str) -> dict[str, set[str]]:
    """Every pbft module `entry` imports, directly or not, with what each imports."""
    seen: dict[str, set[str]] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = imports_of(module)
        todo += [name for name in seen[module] if name.startswith("pbft.") or name == "pbft"]
    return seen


@pytest.mark.parametrize("entry", CORE)
def test_the_core_imports_no_io_clock_or_node_code(entry):
    offending = {
        module: sorted(name for name in names if name.split(".")[0] in FORBIDDEN)
        for module, names in reachable(entry).items()
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_everything_in_pbft_is_protocol_that_the_replica_or_the_simulator_reaches():
    """Nothing in pbft/ outside the protocol: utilities of the node and the client live in shared/."""
    modules = {".".join(path.relative_to(ROOT).with_suffix("").parts) for path in (ROOT / "pbft").rglob("*.py")
               if path.name != "__init__.py"}
    reached = set().union(*(reachable(entry) for entry in CORE))
    assert sorted(modules - reached) == []


def test_the_check_sees_a_forbidden_import():
    assert "os" in imports_of("shared.crypto")  # key files: outside the core, and the check notices


# The replica's parts (docs/ARCHITECTURE.md): each owns its state and is read and tested alone,
# so none reaches the replica or another part.
PARTS = [
    "pbft.views", "pbft.transfer", "pbft.relay", "pbft.message_log", "pbft.checkpoints",
    "pbft.clients", "pbft.votes", "pbft.catchup", "pbft.admission",
]


@pytest.mark.parametrize("part", PARTS)
def test_a_part_reaches_neither_the_replica_nor_another_part(part):
    reached = set(reachable(part)) - {part}
    assert reached & {"pbft.replica", *PARTS} == set()


def test_the_replica_inherits_from_no_mixin():
    tree = ast.parse((ROOT / "pbft/replica.py").read_text())
    replica = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Replica")
    assert replica.bases == []


# The CI's share of the replicated state (`pbft/ci`) is fed by the order and knows nothing of how
# the order is made: neither the replica nor its views, view changes or epochs.
ORDERING = {"pbft.replica", "pbft.views", "pbft.viewchange", "pbft.epochs"}
CI_MODULES = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                    for path in (ROOT / "pbft" / "ci").glob("*.py") if path.name != "__init__.py")


def ordering_reached(module: str) -> list[str]:
    return sorted(set(reachable(module)) & ORDERING)


@pytest.mark.parametrize("module", CI_MODULES)
def test_the_ci_share_reaches_nothing_of_how_the_order_is_made(module):
    assert ordering_reached(module) == []


def test_the_ci_check_sees_a_module_that_reaches_the_ordering():
    assert len(CI_MODULES) >= 4  # ordered, ports, verdicts, answers: the check runs over them all
    assert ordering_reached("pbft.statetransfer") == ["pbft.epochs", "pbft.viewchange", "pbft.views"]
