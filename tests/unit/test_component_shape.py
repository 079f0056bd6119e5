"""Every component finishes in its constructor (``register_outputs`` last), takes its own args rather than the
settings (only the platforms read them), and every module of components/ stays readable (at most 500 lines)."""

from __future__ import annotations

import ast
import re
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


def constructor_annotations(cls: ast.ClassDef) -> dict[str, str]:
    """Parameter name -> annotation text of the class's ``__init__``."""
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return {}
    given = init.args
    params = [*given.posonlyargs, *given.args, *given.kwonlyargs, given.vararg, given.kwarg]
    return {p.arg: ast.unparse(p.annotation) for p in params if p is not None and p.annotation is not None}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(COMPONENTS).as_posix())
def test_no_component_but_the_platform_takes_the_settings(path: Path) -> None:
    """Each component takes its own ``XxxArgs``; only the platforms (``Platform`` on a host, ``SwarmPlatform`` on a
    swarm) read the whole ``Settings``."""
    for cls in component_classes(path):
        if cls.name in ("Platform", "SwarmPlatform"):
            continue
        for name, annotation in constructor_annotations(cls).items():
            assert not re.search(r"\bSettings\b", annotation), (
                f"{cls.name}.__init__({name}: {annotation}) takes the settings; give it its own args"
            )
