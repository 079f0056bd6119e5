"""The repository is self-contained: no tracked file points outside it, and every requirement id that
code, policies and tests cite is defined in docs/requirements.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "docs" / "requirements.md"
REQUIREMENT_ID = re.compile(r"\bR-[A-Z]+-[0-9]+\b")
# A definition is a bold id at the start of a line: "**R-NET-1** — …".
DEFINITION = re.compile(r"^\*\*(R-[A-Z]+-[0-9]+)\*\*", re.MULTILINE)
# Pointers to the documents the requirements were distilled from, which live beside the repo, not in it.
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|\bshared[/](?:DESIGN|STYLE|seeds)|\bDESIGN[.]md\b|\bSTYLE[.]md\b")
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()


def _tracked_text_files() -> dict[str, str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("git ls-files failed: run the tests from a git checkout of the repository")
    texts: dict[str, str] = {}
    for relative in filter(None, listed):
        path = ROOT / relative
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        texts[relative] = data.decode("utf-8", errors="replace")
    return texts


def _defined() -> set[str]:
    return set(DEFINITION.findall(REQUIREMENTS.read_text()))


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = [
        f"{relative}:{number}: {line.strip()}"
        for relative, text in _tracked_text_files().items()
        if relative != THIS_FILE
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == [], "cite docs/requirements.md instead:\n" + "\n".join(offenders)


def test_every_cited_requirement_is_defined() -> None:
    defined = _defined()
    cited: dict[str, set[str]] = {}
    for relative, text in _tracked_text_files().items():
        if relative in {"docs/requirements.md", THIS_FILE}:
            continue
        for requirement in REQUIREMENT_ID.findall(text):
            cited.setdefault(requirement, set()).add(relative)
    undefined = {requirement: sorted(files) for requirement, files in cited.items() if requirement not in defined}
    assert cited, "no requirement id is cited anywhere: the scan is broken"
    assert undefined == {}, f"define these in docs/requirements.md: {undefined}"


def test_requirements_page_defines_each_id_once() -> None:
    ids = DEFINITION.findall(REQUIREMENTS.read_text())
    assert ids, "docs/requirements.md defines no requirement"
    assert sorted(ids) == sorted(set(ids)), "an id is defined twice"


def test_every_definition_names_its_source() -> None:
    text = REQUIREMENTS.read_text()
    starts = [(m.group(1), m.start()) for m in DEFINITION.finditer(text)]
    for index, (requirement, start) in enumerate(starts):
        end = starts[index + 1][1] if index + 1 < len(starts) else len(text)
        assert "Source:" in text[start:end], f"{requirement} in docs/requirements.md has no source"
