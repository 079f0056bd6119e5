"""Import direction, enforced with import-linter (contracts in pyproject.toml, ``[tool.importlinter]``).

The program (components/) and the pack (policy/) never import the services, tasks, benchmarks or tests; the
services (app/, migrations/, backup/, monitoring/) never import the program or the pack. Each contract is
also shown to break: a copy of the tree with one forbidden import added must fail the check, naming it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        config: dict[str, object] = tomllib.load(handle)["tool"]["importlinter"]
    return config


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: run `make venv` (requirements-dev.txt pins import-linter)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(target: Path) -> Path:
    root_packages = _config()["root_packages"]
    assert isinstance(root_packages, list)
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "*.pyc", ".mypy_cache")
    for package in root_packages:
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_tree_keeps_every_import_contract() -> None:
    result = _lint(ROOT)
    contracts = _config()["contracts"]
    assert isinstance(contracts, list)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("components/outputs.py", "import app.contract", "components is not allowed to import app"),
        ("components/network_zones.py", "import tests.support", "components is not allowed to import tests"),
        ("policy/props.py", "import components.catalog", "policy is not allowed to import components"),
        ("app/contract.py", "import components.outputs", "app is not allowed to import components"),
        ("backup/pg.py", "import policy.props", "backup is not allowed to import policy"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert re.search(r"Contracts: \d+ kept, 1 broken\.", result.stdout)
