"""shared/ stays readable: every module under 500 lines, and no function that takes more than
six parameters (self and cls aside). A seventh is a sign that some of them belong together,
as one frozen dataclass (shared.logrequest.NodeRequest, shared.statuses.StatusReport)."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
MAX_LINES = 500
MAX_PARAMETERS = 6


def modules() -> list[Path]:
    return sorted(SHARED.rglob("*.py"))


def test_every_module_of_shared_is_under_500_lines():
    long = {path.relative_to(SHARED).as_posix(): lines for path in modules()
            if (lines := len(path.read_text().splitlines())) >= MAX_LINES}
    assert long == {}


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[str]:
    """Its parameters of every sort: positional, keyword-only, *args and **kwargs."""
    arguments = function.args
    names = [argument.arg for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    names += [argument.arg for argument in (arguments.vararg, arguments.kwarg) if argument is not None]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_function_of_shared_takes_more_than_six_parameters():
    over = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if len(parameters(node)) > MAX_PARAMETERS:
                    over.append(f"{path.relative_to(SHARED)}:{node.lineno} {getattr(node, 'name', 'lambda')}")
    assert over == []


def test_the_count_sees_every_sort_of_parameter():
    [function] = ast.parse("def f(self, a, /, b, *args, c, **kwargs): pass").body
    assert parameters(function) == ["a", "b", "c", "args", "kwargs"]
