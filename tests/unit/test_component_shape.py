"""Every component finishes in its constructor (``register_outputs`` last) and every module of components/
stays readable (at most 500 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
MODULES = sorted(COMPONENTS.rglob("*.py"))
MAX_LINES = 500


def component_classes(path: Path) -> list[ast.ClassDef]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).endswith("ComponentResource") for base in node.bases)
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(COMPONENTS).as_posix())
def test_module_is_short(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(COMPONENTS).as_posix())
def test_constructor_ends_with_register_outputs(path: Path) -> None:
    for cls in component_classes(path):
        init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        last = init.body[-1]
        assert isinstance(last, ast.Expr) and ast.unparse(last.value).startswith("self.register_outputs("), (
            f"{cls.name}.__init__ must end with self.register_outputs(...)"
        )
