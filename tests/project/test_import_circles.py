"""No import circle anywhere in the project's code: the modules of every code package (pbft,
node, client, builder, shared, runner, bench, harness, scripts: whatever tests/support/imports.py's
`code_packages` finds; not tests/) import one another as a graph without a cycle, so each can
be read, loaded and tested above the ones it uses. Two modules that need each other are one
module, or share a smaller one that both import.

A module depends on every module it imports anywhere: at its top, inside a function (an import
deferred to a call still runs, and still ties the two modules together) and under
`if TYPE_CHECKING:`. Those count because an import a type checker alone reads is how one module
names another's types: a reader follows it as much as one that runs, and a circle closed that
way is hidden, not gone. Were they left out, the checker would be satisfied by exactly the
trick it exists to rule out.

What a module depends on: `import a.b.c` and `from a.b import c` depend on the module a.b.c when
there is one, `from a.b import c` on a.b itself when c is a name in it (its __init__.py, for a
package), and `from a.b import *` on a.b. Importing a.b.c also runs the __init__.py of a and of
a.b first; that is no dependency of the importer's: a package's __init__.py that names its
modules (shared/schema/__init__.py) would otherwise close a circle with every module of it that
imports a sibling, which Python resolves without harm. A module that needs a name of its
package's __init__.py imports it by that name, and that is counted. Imports by a name computed
at run time (builder/__init__.py's lazy names, importlib) are not seen.

A circle is a strongly connected component of more than one module, or a module that imports
itself; each is printed as a chain from its first module back to it. The checker is also
shown to catch one in a small set of sources, so that a check that can no longer fail does not
pass for a kept rule."""

from collections.abc import Mapping
from pathlib import Path

from tests.support.imports import code_modules, code_packages, import_statements

ROOT = Path(__file__).resolve().parents[2]


def owner(name: str, modules: Mapping) -> str | None:
    """The module of `modules` that `name` is, or is a name in: its longest dotted prefix there."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def dependencies(source: str, module: str, is_package: bool, modules: Mapping) -> set[str]:
    """The modules of `modules` that `module` (whose text is `source`) imports, as the docstring
    above counts them."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for imported, names in import_statements(source, package):
        for name in names or ("",):
            target = f"{imported}.{name}" if name else imported
            found.add(target if target in modules else owner(imported, modules))
    return found - {None}


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Each module of `sources` (its text, and whether it is a package) to the modules of
    `sources` it imports."""
    return {module: dependencies(source, module, is_package, sources)
            for module, (source, is_package) in sources.items()}


def reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """The modules `start` reaches through one import or more (itself only through a circle)."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def chain(graph: Mapping[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest way from `start` back to itself through modules of `within`."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for imported in sorted(graph[module] & within):
                if imported == start:
                    return paths[module] + [start]
                if imported not in paths:
                    paths[imported] = paths[module] + [imported]
                    following.append(imported)
        frontier = following
    raise AssertionError(f"{start} is on no circle")


def circles(graph: Mapping[str, set[str]]) -> list[str]:
    """Every circle of `graph`, one line each: the chain through its first module and, when the
    circle's component holds more modules than that chain, the others."""
    reach = {module: reachable(graph, module) for module in graph}
    found, placed = [], set()
    for module in sorted(graph):
        if module in placed or module not in reach[module]:
            continue
        component = {other for other in reach[module] if module in reach[other]}
        placed |= component
        path = chain(graph, module, component)
        others = sorted(component - set(path))
        found.append(" -> ".join(path) + (f" (and {', '.join(others)} in the same circle)" if others else ""))
    return found


def project_graph() -> dict[str, set[str]]:
    return import_graph({module: (path.read_text(), is_package)
                         for module, (path, is_package) in code_modules(ROOT).items()})


def test_no_module_of_the_project_imports_itself_through_others():
    found = circles(project_graph())
    assert not found, "import circles:\n" + "\n".join(found)


def test_the_graph_holds_every_code_package_and_its_deferred_imports():
    graph = project_graph()
    assert {"pbft", "node", "client", "builder", "shared", "runner", "bench", "scripts"} <= set(code_packages(ROOT))
    assert {"scripts.bench", "bench.network", "pbft.replica", "client.app"} <= graph.keys()
    assert not any(module.startswith("tests") for module in graph)
    assert "bench.builds" in graph["scripts.bench"]  # from bench import builds: the module, not the package
    assert "shared.schema" in graph["shared.config"]  # from shared.schema import Reading: a name of the package


def test_the_checker_finds_circles_however_their_imports_are_written():
    sources = {
        "pkg": ("from pkg.top import Top\nfrom pkg import low\n", True),  # names its modules: no circle
        "pkg.low": ("import json\nfrom pkg import sibling\n", False),
        "pkg.sibling": ("from . import low as _\n", False),  # sibling -> low -> sibling
        "pkg.top": ("def later():\n    from pkg.middle import Middle\n", False),  # deferred
        "pkg.middle": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.bottom import Bottom\n", False),
        "pkg.bottom": ("from pkg import Top\n", False),  # a name of the package's __init__: top -> ... -> pkg
        "pkg.alone": ("import pkg.alone.inner\n", False),  # imports itself
        "pkg.fine": ("from pkg.low import value\nimport os.path\n", False),
    }
    assert circles(import_graph(sources)) == [
        "pkg -> pkg.top -> pkg.middle -> pkg.bottom -> pkg",
        "pkg.alone -> pkg.alone",
        "pkg.low -> pkg.sibling -> pkg.low",
    ]
    assert circles(import_graph({name: sources[name] for name in ("pkg.top", "pkg.middle", "pkg.fine")})) == []
    graph = import_graph({"a": ("import b\n", False), "b": ("import c\nimport a\n", False),
                          "c": ("import b\nimport d\n", False), "d": ("", False)})
    assert circles(graph) == ["a -> b -> a (and c in the same circle)"]
