"""What a module imports, as the layout tests of tests/project/ read it, and which modules the
project's code is."""

import ast
from pathlib import Path


def import_statements(source: str, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every import of `source`, at its top, inside a function or under `if TYPE_CHECKING:`, as
    (module, names), absolutely: `import a.b` gives ("a.b", ()), `from a import b, c` gives
    ("a", ("b", "c")) (b may be a module of a, or a name in it). A relative import is resolved
    against `package`, the package the module lives in (for a package's __init__, the package
    itself)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, tuple(alias.name for alias in node.names)))
    return found


def imported_names(source: str, package: str) -> set[str]:
    """Every name `source` imports, at its top or inside a function, absolutely: `from a import b`
    gives both `a` and `a.b` (b may be a module of a, or a name in it). A relative import is
    resolved against `package`, as in `import_statements`."""
    names = set()
    for module, imported in import_statements(source, package):
        names.add(module)
        names.update(f"{module}.{name}" for name in imported)
    return names


def code_packages(root: Path) -> list[str]:
    """The top-level folders of the project's code at `root`: every package (a folder with an
    __init__.py) but tests/, and scripts/, whose programs are modules too."""
    return sorted(path.name for path in root.iterdir()
                  if path.name != "tests" and ((path / "__init__.py").is_file() or path.name == "scripts"))


def code_modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module of `code_packages(root)` by its dotted name (a package by its own, for its
    __init__.py; scripts/lint.py as scripts.lint): its file, and whether it is a package."""
    modules = {}
    for package in code_packages(root):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules
