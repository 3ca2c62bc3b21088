"""What a module imports, as the layout tests of tests/project/ read it."""

import ast


def imported_names(source: str, package: str) -> set[str]:
    """Every name `source` imports, at its top or inside a function, absolutely: `from a import b`
    gives both `a` and `a.b` (b may be a module of a, or a name in it). A relative import is
    resolved against `package`, the package the module lives in (for a package's __init__,
    the package itself)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names
