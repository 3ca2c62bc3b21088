"""Modules a reader takes in at one sitting (docs/ARCHITECTURE.md): in the packages each check
names, every file is under 500 lines, no function takes more than 6 parameters, no class has
more than 20 methods, and no module imports more than 8 modules or packages beside it. The
parameters of a function that needs more are a value of their own (a frozen dataclass:
builder.settings.ExecutorSettings, shared.statuses.StatusReport)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ("builder", "shared")  # files under MAX_LINES, functions of at most MAX_PARAMETERS
FEW_METHODS: tuple[str, ...] = ()  # classes of at most MAX_METHODS
FEW_SIBLINGS = ("builder",)  # modules importing at most MAX_SIBLINGS of their siblings
MAX_LINES, MAX_PARAMETERS, MAX_METHODS, MAX_SIBLINGS = 500, 6, 20, 8


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> int:
    """Every parameter a caller may pass, `self` and `cls` aside."""
    arguments = function.args
    count = len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs)
    count += (arguments.vararg is not None) + (arguments.kwarg is not None)
    every = [*arguments.posonlyargs, *arguments.args]
    if every and every[0].arg in ("self", "cls"):
        count -= 1
    return count


def too_many_parameters(source: str) -> list[str]:
    return [
        f"{getattr(node, 'name', 'lambda')}:{node.lineno} ({parameters(node)})" for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and parameters(node) > MAX_PARAMETERS
    ]


def too_many_methods(source: str) -> list[str]:
    classes = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)]
    counts = {node.name: sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)
              for node in classes}
    return [f"{name} ({count})" for name, count in counts.items() if count > MAX_METHODS]


def siblings(path: Path) -> set[str]:
    """The modules and packages beside `path` (in its own package) that it imports."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for module in modules:
            if module.startswith(f"{package}."):
                found.add(module[len(package) + 1:].split(".")[0])
    return found - {path.stem}


@pytest.mark.parametrize("package", SHORT)
def test_every_file_is_short_enough_to_read_at_one_sitting(package):
    long = {str(path.relative_to(ROOT)): lines for path in python_files(package)
            if (lines := len(path.read_text().splitlines())) >= MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("package", SHORT)
def test_no_function_takes_more_than_six_parameters(package):
    found = {str(path.relative_to(ROOT)): names for path in python_files(package)
             if (names := too_many_parameters(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("package", FEW_METHODS)
def test_no_class_has_more_than_twenty_methods(package):
    found = {str(path.relative_to(ROOT)): names for path in python_files(package)
             if (names := too_many_methods(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("package", FEW_SIBLINGS)
def test_no_module_imports_more_than_eight_of_its_siblings(package):
    found = {str(path.relative_to(ROOT)): sorted(names) for path in python_files(package)
             if len(names := siblings(path)) > MAX_SIBLINGS}
    assert found == {}


def test_the_checks_count_what_they_say():
    source = (
        "class Wide:\n" + "".join(f"    def m{index}(self): pass\n" for index in range(21))
        + "def seven(a, b, c, d, e, *f, g, **h): pass\n"
        + "late = lambda a, b, c, d, e, f, g: a\n"
        + "class Fine:\n    def six(self, a, b, c, d, e, f): pass\n"
    )
    assert too_many_parameters(source) == ["seven:23 (8)", "lambda:24 (7)"]
    assert too_many_methods(source) == ["Wide (21)"]
    assert siblings(ROOT / "builder" / "run.py") >= {"engine", "plan", "workspace", "order"}
    assert "host" in siblings(ROOT / "builder" / "engine" / "container.py") | {"host"}
    assert len(siblings(ROOT / "builder" / "executor.py")) > 3
