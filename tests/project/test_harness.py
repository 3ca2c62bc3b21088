"""The benches and the tests share harness/ (starting real networks and reading them), and no
code outside tests/ imports anything of tests/: bench/ measures with the harness, never with
the test suite's helpers or fixtures, so scripts/bench.py runs without the suite's code and a
change of a test never changes what a bench measures. Imports count wherever they stand: at a
module's top, inside a function, under `if TYPE_CHECKING:` (tests/support/imports.py). The
check is also shown to catch a bad example, so that one that can no longer fail does not pass
for a kept rule."""

from pathlib import Path

from tests.support.imports import code_modules, imported_names

ROOT = Path(__file__).resolve().parents[2]


def names_of_tests(source: str, module: str, is_package: bool = False) -> list[str]:
    """What of tests/ the module `module` (whose text is `source`) imports."""
    package = module if is_package else module.rpartition(".")[0]
    return sorted(name for name in imported_names(source, package) if name == "tests" or name.startswith("tests."))


def importers_of_tests() -> dict[str, list[str]]:
    found = {module: names_of_tests(path.read_text(), module, is_package)
             for module, (path, is_package) in code_modules(ROOT).items()}
    return {module: names for module, names in found.items() if names}


def test_no_bench_nor_any_other_code_imports_anything_of_tests():
    modules = code_modules(ROOT)
    assert {"bench.builds", "bench.cost", "bench.network", "harness.network", "scripts.bench"} <= modules.keys()
    assert importers_of_tests() == {}


def test_the_benches_use_the_harness():
    imported = {name for module, (path, is_package) in code_modules(ROOT).items() if module.startswith("bench.")
                for name in imported_names(path.read_text(), "bench")}
    assert {"harness.network", "harness.real_project", "harness.scripts", "harness.verdicts"} <= imported


def test_the_check_sees_tests_imported_however_the_import_is_written():
    source = (
        "import json\n"
        "from harness.network import write_network\n"
        "from tests.support.network import free_ports\n"
        "def later():\n"
        "    import tests.e2e.example_network\n"
        "    from tests import conftest\n"
        "if TYPE_CHECKING:\n"
        "    from tests.support.cluster import Cluster\n"
    )
    assert names_of_tests(source, "bench.builds") == [
        "tests", "tests.conftest", "tests.e2e.example_network", "tests.support.cluster", "tests.support.cluster.Cluster",
        "tests.support.network", "tests.support.network.free_ports",
    ]
    assert names_of_tests("from harness.testsuite import x\nimport testsome\n", "bench.builds") == []
