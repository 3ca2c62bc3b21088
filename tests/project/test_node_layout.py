"""A node is two halves (docs/ARCHITECTURE.md): the protocol side in node/ (server, driver, peers,
storage) and the build side in node/build/, a library the driver calls with an agreed request.
The build side never reaches back, so it can be read, tested and changed without the protocol."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "node" / "build"


def node_imports(path: Path) -> set[str]:
    """The modules of node/ that `path` imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))  # relative: named as written, so it shows
    return {name for name in names if name == "node" or name.startswith(("node.", "."))}


def outside_the_build_side(names: set[str]) -> list[str]:
    return sorted(name for name in names if name != "node.build" and not name.startswith("node.build."))


def test_the_build_side_imports_nothing_of_the_protocol_side():
    offending = {
        str(path.relative_to(ROOT)): outside_the_build_side(node_imports(path))
        for path in sorted(BUILD.rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_check_sees_an_import_of_the_protocol_side():
    # The driver imports the store: the check would name it in a build module.
    assert "node.storage" in outside_the_build_side(node_imports(ROOT / "node" / "driver.py"))
    assert outside_the_build_side({"node.build.executor", "node.build"}) == []
