"""The tests' own layout: a folder per layer, each with its conftest.py, a marker per layer,
and no test module used as a library (shared helpers live in modules named for what they are,
fixtures in a conftest.py, where pytest finds them without an import)."""

import ast
import configparser
from pathlib import Path

from tests.conftest import LAYERS

TESTS = Path(__file__).resolve().parents[1]


def python_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def fixtures_of(path: Path) -> set[str]:
    """The names of the functions `path` declares as pytest fixtures."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target) in ("pytest.fixture", "fixture"):
                    names.add(node.name)
    return names


def test_every_layer_is_a_folder_with_its_conftest_and_its_marker():
    folders = {path.name for path in TESTS.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == set(LAYERS) | {"support"}
    for layer in LAYERS:
        assert (TESTS / layer / "conftest.py").is_file(), layer
        assert list((TESTS / layer).glob("test_*.py")), f"layer {layer} has no tests"
    assert not list(TESTS.glob("test_*.py")), "a test module outside every layer"
    assert not list((TESTS / "support").glob("test_*.py")), "tests/support holds helpers, not tests"

    ini = configparser.ConfigParser()
    ini.read(TESTS.parent / "pytest.ini")
    markers = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].strip().splitlines()}
    assert set(LAYERS) <= markers


def test_no_test_module_is_imported_by_another_module():
    importers = {
        str(path.relative_to(TESTS)): sorted(module for module in imported_modules(path)
                                             if module.rsplit(".", 1)[-1].startswith("test_"))
        for path in python_files()
    }
    assert {path: modules for path, modules in importers.items() if modules} == {}


def test_fixtures_are_found_by_pytest_not_imported():
    fixtures = {}
    for path in python_files():
        module = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        fixtures.update({f"{module}.{name}": path for name in fixtures_of(path)})
    imported = {
        str(path.relative_to(TESTS)): sorted(imported_modules(path) & fixtures.keys()) for path in python_files()
    }
    assert {path: names for path, names in imported.items() if names} == {}
