"""Parts a reader takes in at one sitting (docs/ARCHITECTURE.md). In the packages each check
names: every file, of any kind, is under 500 lines as `wc -l` counts them; no function takes
more than 6 parameters (positional, keyword-only, *args and **kwargs; not self or cls); no class
has more than 20 methods of its own; and no module imports more than 8 of its siblings, the
modules and packages beside it in its own folder (a package counts once, however many of its
modules are imported). A function that needs more parameters takes a value of its own (a
frozen dataclass: builder.settings.ExecutorSettings, shared.statuses.StatusReport). Each check
is also shown to catch a bad example, so that one that can no longer fail does not pass for a
kept rule.

`node/` and `pbft/` are held to the same lines, parameters and methods with a list of the
exceptions they had when the rule came to them, each with its count then: a listed one may
shrink but never grow, no unlisted one may pass the limit, and one back within it must leave
the list, so that the list only gets shorter."""

import ast
from pathlib import Path

import pytest

from tests.support.imports import imported_names

ROOT = Path(__file__).resolve().parents[2]
SHORT = ("builder", "cli", "client", "shared")  # files under MAX_LINES, functions of at most MAX_PARAMETERS
FEW_METHODS = ("client",)  # classes of at most MAX_METHODS
FEW_SIBLINGS = ("builder", "cli", "client")  # modules importing at most MAX_SIBLINGS of their siblings
MAX_LINES, MAX_PARAMETERS, MAX_METHODS, MAX_SIBLINGS = 500, 6, 20, 8
RATCHETED = ("node", "pbft")  # the same limits, but for the exceptions listed below
# Files of RATCHETED with MAX_LINES lines or more, functions with more than MAX_PARAMETERS and
# classes with more than MAX_METHODS, as `path` or `path:Qualified.name`, with their counts.
LONG_FILES = {
    "node/byzantine.py": 513,
    "pbft/replica.py": 974,
    "pbft/sim/cluster.py": 949,
}
CROWDED_FUNCTIONS = {
    "node/peers.py:PeerLink.__init__": 7,
}
LARGE_CLASSES = {
    "node/driver.py:Driver": 33,
    "pbft/replica.py:Replica": 68,
    "pbft/replies.py:ReplyCollector": 21,
    "pbft/sim/cluster.py:SimCluster": 42,
    "pbft/views.py:Views": 26,
}


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


def definitions(source: str) -> tuple[dict[str, int], dict[str, int]]:
    """The parameters of every function, method and lambda of `source`, and the methods of every
    class, by qualified name (`Class.method`, `outer.inner`, `outer.<lambda>`); of two with one
    name, the larger count."""
    functions: dict[str, int] = {}
    classes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                name = prefix + getattr(child, "name", "<lambda>")
                functions[name] = max(functions.get(name, 0), parameters(child))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                name = prefix + child.name
                methods = sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in child.body)
                classes[name] = max(classes.get(name, 0), methods)
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return functions, classes


def ratchet(found: dict[str, int], most: int, listed: dict[str, int], unit: str) -> list[str]:
    """What breaks a list of exceptions that may only get shorter, given the counts `found` of
    everything checked and `most`, the largest count the rule allows: an unlisted count over it,
    a listed one grown past its entry, and an entry whose count is within it (or gone)."""
    over = {name: count for name, count in found.items() if count > most}
    problems = [f"{name}: {count} {unit}, over {most} and not listed" for name, count in over.items()
                if name not in listed]
    problems += [f"{name}: {count} {unit}, grown past the {listed[name]} listed" for name, count in over.items()
                 if name in listed and count > listed[name]]
    problems += [f"{name}: {found.get(name, 'no')} {unit}, within {most}: its entry can go" for name in listed
                 if name not in over]
    return sorted(problems)


def ratcheted_counts(package: str) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The lines of every file of `package`, the parameters of every function and the methods
    of every class, each named as the lists name it."""
    lines = {str(path.relative_to(ROOT)): path.read_bytes().count(b"\n") for path in files(package)}
    functions: dict[str, int] = {}
    classes: dict[str, int] = {}
    for path in modules(package):
        found_functions, found_classes = definitions(path.read_text())
        functions.update((f"{path.relative_to(ROOT)}:{name}", count) for name, count in found_functions.items())
        classes.update((f"{path.relative_to(ROOT)}:{name}", count) for name, count in found_classes.items())
    return lines, functions, classes


def listed_in(prefix: str, listed: dict[str, int]) -> dict[str, int]:
    """The entries of `listed` under `prefix`: a package (`node/`), a file (`node/driver.py:`)."""
    return {name: count for name, count in listed.items() if name.startswith(prefix)}


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


@pytest.mark.parametrize("package", RATCHETED)
def test_no_file_grows_to_500_lines_but_the_listed_ones_and_those_never_grow(package):
    lines, _, _ = ratcheted_counts(package)
    assert ratchet(lines, MAX_LINES - 1, listed_in(f"{package}/", LONG_FILES), "lines") == []


@pytest.mark.parametrize("package", RATCHETED)
def test_no_function_takes_more_than_six_parameters_but_the_listed_ones_and_those_no_more(package):
    _, functions, _ = ratcheted_counts(package)
    assert ratchet(functions, MAX_PARAMETERS, listed_in(f"{package}/", CROWDED_FUNCTIONS), "parameters") == []


@pytest.mark.parametrize("package", RATCHETED)
def test_no_class_has_more_than_twenty_methods_but_the_listed_ones_and_those_no_more(package):
    _, _, classes = ratcheted_counts(package)
    assert ratchet(classes, MAX_METHODS, listed_in(f"{package}/", LARGE_CLASSES), "methods") == []


def test_the_driver_is_made_whole_from_at_most_six_parameters():
    """The driver's context (node/contexts.py) hands it everything as it is made (node/driver.py
    DriverParts, Listeners, Conduct): it takes no wiring afterwards, and no exception."""
    _, functions, _ = ratcheted_counts("node")
    assert functions["node/driver.py:Driver.__init__"] <= MAX_PARAMETERS
    assert not any(name.startswith("node/driver.py:Driver.") for name in CROWDED_FUNCTIONS)


# The replica orders; the CI's rules, state transfer, admission and the relay are parts beside it
# (docs/ARCHITECTURE.md). Its own bounds, below the general ratchet's: it may not grow back.
REPLICA_MOST_LINES, REPLICA_MOST_METHODS = 999, 69


def replica_over_its_bounds(lines: int, methods: int) -> list[str]:
    found = []
    if lines > REPLICA_MOST_LINES:
        found.append(f"pbft/replica.py: {lines} lines, over {REPLICA_MOST_LINES}")
    if methods > REPLICA_MOST_METHODS:
        found.append(f"pbft/replica.py:Replica: {methods} methods, over {REPLICA_MOST_METHODS}")
    return found


def test_the_replica_stays_under_1000_lines_and_70_methods():
    lines, _, classes = ratcheted_counts("pbft")
    assert replica_over_its_bounds(lines["pbft/replica.py"], classes["pbft/replica.py:Replica"]) == []
    # And its entries in the lists can only say so.
    assert replica_over_its_bounds(LONG_FILES["pbft/replica.py"], LARGE_CLASSES["pbft/replica.py:Replica"]) == []


def test_the_replica_bounds_catch_the_replica_as_it_was():
    assert replica_over_its_bounds(1664, 111) == [
        "pbft/replica.py: 1664 lines, over 999", "pbft/replica.py:Replica: 111 methods, over 69"]


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


def test_the_lists_of_exceptions_catch_growth_an_unlisted_excess_and_an_entry_no_longer_needed():
    listed = {"a.py:grown": 8, "a.py:kept": 8, "a.py:shrunk": 9, "a.py:fixed": 7, "a.py:gone": 7}
    found = {"a.py:grown": 9, "a.py:kept": 8, "a.py:shrunk": 8, "a.py:fixed": 6, "a.py:new": 7, "a.py:fine": 6}
    assert ratchet(found, 6, listed, "parameters") == [
        "a.py:fixed: 6 parameters, within 6: its entry can go",
        "a.py:gone: no parameters, within 6: its entry can go",
        "a.py:grown: 9 parameters, grown past the 8 listed",
        "a.py:new: 7 parameters, over 6 and not listed",
    ]


def test_the_ratcheted_checks_name_functions_and_classes_by_where_they_are():
    source = (
        "class Outer:\n"
        "    def six(self, a, b, c, d, e, f): pass\n"
        "    class Inner:\n"
        "        def seven(self, a, b, c, d, e, f, g): pass\n"
        "def outer(a):\n"
        "    late = lambda a, b, c, d, e, f, g: a\n"
        "    def inner(a, b): pass\n"
        "def outer(a, b, c, d, e, f, g): pass\n"  # redefined: the larger count
    )
    functions, classes = definitions(source)
    assert functions == {"Outer.six": 6, "Outer.Inner.seven": 7, "outer": 7, "outer.<lambda>": 7, "outer.inner": 2}
    assert classes == {"Outer": 1, "Outer.Inner": 1}
    lines, functions, classes = ratcheted_counts("node")
    assert lines["node/__init__.py"] == 0 and functions["node/driver.py:Driver.__init__"] > 0
    assert classes["node/driver.py:Driver"] > MAX_METHODS


def test_the_ratcheted_checks_catch_the_driver_as_it_was_and_any_growth():
    old_driver = (  # ten parameters, and wired after it was made
        "class Driver:\n"
        "    def __init__(self, replica, config, build, peers, *, behaviour=None, store=None, fail_stop=None,\n"
        "                 cancel=None, slots=None, on_result=None): pass\n"
    )
    functions, _ = definitions(old_driver)
    found = {f"node/driver.py:{name}": count for name, count in functions.items()}
    assert ratchet(found, MAX_PARAMETERS, listed_in("node/driver.py:", CROWDED_FUNCTIONS), "parameters") == [
        "node/driver.py:Driver.__init__: 10 parameters, over 6 and not listed"]
    methods = LARGE_CLASSES["node/driver.py:Driver"]
    assert ratchet({"node/driver.py:Driver": methods + 1}, MAX_METHODS, listed_in("node/driver.py:", LARGE_CLASSES),
                   "methods") == [f"node/driver.py:Driver: {methods + 1} methods, grown past the {methods} listed"]
    assert ratchet({"node/server.py": MAX_LINES, "pbft/replica.py": MAX_LINES - 1}, MAX_LINES - 1,
                   {"pbft/replica.py": LONG_FILES["pbft/replica.py"]}, "lines") == [
        "node/server.py: 500 lines, over 499 and not listed", "pbft/replica.py: 499 lines, within 499: its entry can go"]


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
