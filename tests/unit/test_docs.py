"""docs/ is generated from the program (`make docs`); committed docs must match what it generates."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _gendocs() -> ModuleType:
    from scripts import gendocs

    return gendocs


def test_committed_docs_match_the_program() -> None:
    stale = [
        relative
        for relative, text in _gendocs().documents().items()
        if not (ROOT / relative).exists() or (ROOT / relative).read_text() != text
    ]
    assert stale == [], f"run `make docs` and commit: {stale}"


def test_topology_shows_prod_public_entry_only_on_nginx() -> None:
    prod = _gendocs().render_topology("prod")
    public_edges = [line for line in prod.splitlines() if line.strip().startswith("users --")]
    assert public_edges and all(line.endswith("--> nginx") for line in public_edges)
