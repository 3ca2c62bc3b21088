"""Parts a reader takes in at one sitting (docs/ARCHITECTURE.md). In the packages each check
names: every file, of any kind, is under 500 lines as `wc -l` counts them; no function takes
more than 6 parameters (positional, keyword-only, *args and **kwargs; not self or cls); no class
has more than 20 methods of its own; and no module imports more than 8 of its siblings, the
modules and packages beside it in its own folder (a package counts once, however many of its
modules are imported). A function that needs more parameters takes a value of its own (a
frozen dataclass: builder.settings.ExecutorSettings, shared.statuses.StatusReport). Each check
is also shown to catch a bad example, so that one that can no longer fail does not pass for a
kept rule."""

import ast
from pathlib import Path

import pytest

from tests.support.imports import imported_names

ROOT = Path(__file__).resolve().parents[2]
SHORT = ("builder", "client", "shared")  # files under MAX_LINES, functions of at most MAX_PARAMETERS
FEW_METHODS = ("client",)  # classes of at most MAX_METHODS
FEW_SIBLINGS = ("builder", "client")  # modules importing at most MAX_SIBLINGS of their siblings
MAX_LINES, MAX_PARAMETERS, MAX_METHODS, MAX_SIBLINGS = 500, 6, 20, 8


def files(package: str) -> list[Path]:
    return sorted(path for path in (ROOT / package).rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def modules(package: str) -> list[Path]:
    return [path for path in files(package) if path.suffix == ".py"]


def long_files(paths: list[Path]) -> dict[str, int]:
    """The files of `paths` with MAX_LINES lines or more, as `wc -l` counts them (newlines)."""
    counts = {path: path.read_bytes().count(b"\n") for path in paths}
    return {path.name: count for path, count in counts.items() if count >= MAX_LINES}


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> int:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    starred = [argument for argument in (arguments.vararg, arguments.kwarg) if argument is not None]
    return len(positional) + len(arguments.kwonlyargs) + len(starred)


def crowded_functions(source: str) -> list[str]:
    """The functions, methods and lambdas of `source`, nested ones too, that take more than MAX_PARAMETERS."""
    return [
        f"{getattr(node, 'name', 'lambda')}:{node.lineno} ({parameters(node)})" for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and parameters(node) > MAX_PARAMETERS
    ]


def large_classes(source: str) -> list[str]:
    classes = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)]
    counts = {node.name: sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)
              for node in classes}
    return [f"{name} ({count})" for name, count in counts.items() if count > MAX_METHODS]


def siblings(source: str, module: str, is_package: bool = False) -> set[str]:
    """The siblings module `module` imports, at its top or inside a function: the modules and
    packages of its own folder, each named by its first part there. A relative import is
    resolved against the module's package."""
    package = module if is_package else module.rpartition(".")[0]
    found = {name[len(package) + 1:].split(".")[0] for name in imported_names(source, package)
             if name.startswith(f"{package}.")}
    return found - {module.rpartition(".")[2]}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", SHORT)
def test_every_file_is_short_enough_to_read_at_one_sitting(package):
    assert long_files(files(package)) == {}


@pytest.mark.parametrize("package", SHORT)
def test_no_function_takes_more_than_six_parameters(package):
    found = {str(path.relative_to(ROOT)): names for path in modules(package)
             if (names := crowded_functions(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("package", FEW_METHODS)
def test_no_class_has_more_than_twenty_methods(package):
    found = {str(path.relative_to(ROOT)): names for path in modules(package)
             if (names := large_classes(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("package", FEW_SIBLINGS)
def test_no_module_imports_more_than_eight_of_its_siblings(package):
    found = {module_name(path): sorted(names) for path in modules(package)
             if len(names := siblings(path.read_text(), module_name(path), path.name == "__init__.py")) > MAX_SIBLINGS}
    assert found == {}


def test_the_length_check_sees_a_file_of_500_lines_of_any_kind(tmp_path):
    long, short = tmp_path / "long.js", tmp_path / "short.py"
    long.write_text("x\n" * MAX_LINES)
    short.write_text("x\n" * (MAX_LINES - 1) + "no newline at the end")  # 499 lines, as wc -l counts
    assert long_files([long, short]) == {"long.js": MAX_LINES}
    assert ROOT / "client" / "static" / "dashboard.js" in files("client")  # not only the Python modules


def test_the_parameter_check_counts_every_kind_of_parameter_but_self():
    source = (
        "def seven(a, b, c, d, e, f, g): pass\n"
        "def starred(a, *args, b, c, d, e, **kwargs): pass\n"
        "def keyword_only(a, /, b, *, c, d, e, f, g): pass\n"
        "class Service:\n"
        "    def six(self, a, b, c, d, e, f): pass\n"
        "    @classmethod\n"
        "    def made(cls, a, b, c, d, e, f): pass\n"
        "    async def seven(self, a, b, c, d, e, f, g): pass\n"
        "def outer():\n"
        "    def inner(a, b, c, d, e, f, g): pass\n"
        "late = lambda a, b, c, d, e, f, g: a\n"
    )
    assert crowded_functions(source) == ["seven:1 (7)", "starred:2 (7)", "keyword_only:3 (7)", "seven:8 (7)",
                                         "inner:10 (7)", "lambda:11 (7)"]


def test_the_method_check_sees_a_class_of_21_methods():
    methods = "".join(f"    def method_{index}(self): pass\n" for index in range(MAX_METHODS))
    source = f"class Fine:\n{methods}class Crowded:\n{methods}    async def one_more(self): pass\n"
    assert large_classes(source) == [f"Crowded ({MAX_METHODS + 1})"]


def test_the_sibling_check_counts_each_sibling_once_however_it_is_imported():
    source = (
        "import client.records\n"
        "from client.records import BuildRecords\n"  # the same module again
        "from client import outcome, events\n"  # modules named in a from-import
        "from client.tables.builds import Builds\n"  # a package beside it, counted once
        "from client.tables import approvals\n"
        "from . import about\n"  # relative: in client.app, client.about; in client.routes.webhook, routes.about
        "from .. import links\n"  # two levels up from client: not the client's
        "from pbft.build import Operation\n"  # not the client's
        "def later():\n"
        "    from client.metrics import ClientMetrics\n"
        "    import client.service\n"
    )
    assert siblings(source, "client.app") == {
        "records", "outcome", "events", "tables", "about", "metrics", "service"}
    assert siblings(source, "client.routes.webhook") == {"about"}
    assert siblings("from . import about\nfrom client.routes import params\n", "client.routes.webhook") == {
        "about", "params"}
    assert siblings("from client.routes import about\n", "client.routes", is_package=True) == {"about"}
    assert len(siblings((ROOT / "builder" / "run.py").read_text(), "builder.run")) > 3
