"""The client is small parts over a small request core: every file of client/ can be read in one
sitting, no function takes a crowd of parameters, no class does everything, and no module reaches
for most of its siblings. Each check is also shown to catch a bad example, so that a check that
can no longer fail does not pass for a kept rule."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"

MAX_LINES = 500  # every file has fewer, as `wc -l` counts them
MAX_PARAMETERS = 6  # positional, keyword-only, *args and **kwargs; not self or cls
MAX_METHODS = 20
MAX_SIBLING_IMPORTS = 8


def client_files() -> list[Path]:
    return sorted(path for path in CLIENT.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def client_modules() -> list[Path]:
    return [path for path in client_files() if path.suffix == ".py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def long_files(paths: list[Path]) -> dict[Path, int]:
    """The files of `paths` with MAX_LINES lines or more, as `wc -l` counts them (newlines)."""
    counts = {path: path.read_bytes().count(b"\n") for path in paths}
    return {path: count for path, count in counts.items() if count >= MAX_LINES}


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    starred = [argument for argument in (arguments.vararg, arguments.kwarg) if argument is not None]
    return len(positional) + len(arguments.kwonlyargs) + len(starred)


def crowded_functions(source: str) -> dict[str, int]:
    """The functions and methods of `source`, nested ones too, that take more than MAX_PARAMETERS."""
    return {f"{node.name} (line {node.lineno})": parameter_count(node) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameter_count(node) > MAX_PARAMETERS}


def large_classes(source: str) -> dict[str, int]:
    """The classes of `source` with more than MAX_METHODS methods of their own."""
    counts = {node.name: sum(isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) for child in node.body)
              for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)}
    return {name: count for name, count in counts.items() if count > MAX_METHODS}


def client_imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """The modules of client/ that the module `module` imports, at its top or inside a function:
    `from client.x import y` is client.x.y if that is a module, else client.x; a relative import
    is resolved against the module's package."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.add(candidate if is_module(candidate) else base)
    return {name for name in names if (name == "client" or name.startswith("client.")) and name != module}


def test_every_file_of_the_client_is_under_500_lines():
    assert {str(path.relative_to(ROOT)): count for path, count in long_files(client_files()).items()} == {}


def test_no_function_of_the_client_takes_more_than_6_parameters():
    crowded = {str(path.relative_to(ROOT)): crowded_functions(path.read_text()) for path in client_modules()}
    assert {path: functions for path, functions in crowded.items() if functions} == {}


def test_no_class_of_the_client_has_more_than_20_methods():
    large = {str(path.relative_to(ROOT)): large_classes(path.read_text()) for path in client_modules()}
    assert {path: classes for path, classes in large.items() if classes} == {}


def test_no_module_of_the_client_imports_more_than_8_of_its_siblings():
    imports = {module_name(path): client_imports(path.read_text(), module_name(path), path.name == "__init__.py")
               for path in client_modules()}
    assert {module: sorted(names) for module, names in imports.items() if len(names) > MAX_SIBLING_IMPORTS} == {}


# --- each check catches a bad example ----------------------------------------------------------------


def test_the_length_check_sees_a_file_of_500_lines_of_any_kind(tmp_path):
    long, short = tmp_path / "long.js", tmp_path / "short.py"
    long.write_text("x\n" * MAX_LINES)
    short.write_text("x\n" * (MAX_LINES - 1) + "no newline at the end")  # 499 lines, as wc -l counts
    assert long_files([long, short]) == {long: MAX_LINES}
    assert CLIENT / "static" / "dashboard.js" in client_files()  # not only the Python modules


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
    )
    assert crowded_functions(source) == {"seven (line 1)": 7, "starred (line 2)": 7, "keyword_only (line 3)": 7,
                                         "seven (line 8)": 7, "inner (line 10)": 7}


def test_the_method_check_sees_a_class_of_21_methods():
    methods = "".join(f"    def method_{index}(self): pass\n" for index in range(MAX_METHODS))
    source = (f"class Fine:\n{methods}"
              f"class Crowded:\n{methods}    async def one_more(self): pass\n"
              "    class Inner:\n        pass\n")
    assert large_classes(source) == {"Crowded": MAX_METHODS + 1}


def test_the_import_check_counts_each_sibling_module_once_however_it_is_imported():
    source = (
        "import client.records\n"
        "from client.records import BuildRecords\n"  # the same module again
        "from client import outcome, events\n"  # modules named in a from-import
        "from client.tables.builds import Builds\n"
        "from client.verbs import Verbs\n"  # a package's own name
        "from . import about\n"  # relative, from client.routes.webhook's package: client.routes.about
        "from .. import links\n"  # relative, two levels up: client.links
        "from pbft.build import Operation\n"  # not the client's
        "def later():\n"
        "    from client.metrics import ClientMetrics\n"
        "    import client.service\n"
    )
    found = client_imports(source, "client.routes.webhook")
    assert found == {"client.records", "client.outcome", "client.events", "client.tables.builds", "client.verbs",
                     "client.routes.about", "client.links", "client.metrics", "client.service"}
    assert len(found) > MAX_SIBLING_IMPORTS
    assert client_imports("from client.routes import about\n", "client.routes", is_package=True) == {
        "client.routes.about"}
