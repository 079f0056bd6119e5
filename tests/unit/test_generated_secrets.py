"""Real generated secrets for the local fallback of ``make up`` (``scripts.apply_graph.realize_secrets``).

Under mocks every RandomPassword/RandomBytes is a predictable ``Mock…`` value; before the graph is applied
to a real engine each one is replaced, everywhere it is used, by a fresh value of the same length and
alphabet, kept in a 0600 file so the next run reuses it.
"""

from __future__ import annotations

import base64
import json
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from components.oauth2_proxy import urlsafe_cookie_secret
from policy.program import ProgramGraph, _fake_state, unwrap
from scripts.apply_graph import RANDOM_BYTES, RANDOM_PASSWORD, realize_secrets
from scripts.local_stack import plain


class _Args:
    def __init__(self, typ: str, name: str, inputs: dict[str, Any]) -> None:
        self.typ, self.name, self.inputs = typ, name, inputs


def _mock(graph: ProgramGraph, name: str) -> dict[str, Any]:
    r = graph.by_name(name)
    return _fake_state(_Args(r.type, r.name, dict(r.inputs)))


def _delivered_text(graph: ProgramGraph) -> str:
    """Everything the containers and providers receive: env, command, files (base64 ones decoded), inputs."""
    parts = [json.dumps(unwrap(r.inputs)) for r in graph.resources]
    for r in graph.of_type("docker:index/container:Container"):
        for upload in r.prop("uploads") or []:
            if "contentBase64" in upload:
                parts.append(base64.b64decode(upload["contentBase64"]).decode(errors="replace"))
    parts.append(json.dumps(plain(graph.outputs)))
    return "\n".join(parts)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / ".secrets" / "dev" / "generated.json"


def test_mocks_are_what_the_graph_holds_before(dev_graph: ProgramGraph) -> None:
    assert "Mock" in _delivered_text(dev_graph)


def test_no_mock_value_remains_anywhere(dev_graph: ProgramGraph, store: Path) -> None:
    realized = realize_secrets(dev_graph, store)
    text = _delivered_text(realized)
    assert "Mock" not in text
    for r in dev_graph.of_type(RANDOM_BYTES):
        fake = _mock(dev_graph, r.name)
        assert fake["base64"] not in text and fake["hex"] not in text


def test_same_length_and_alphabet(dev_graph: ProgramGraph, store: Path) -> None:
    realize_secrets(dev_graph, store)
    kept = json.loads(store.read_text())
    passwords = dev_graph.of_type(RANDOM_PASSWORD)
    assert passwords and {r.name for r in passwords} | {r.name for r in dev_graph.of_type(RANDOM_BYTES)} == set(kept)
    for r in passwords:
        value = kept[r.name]["value"]
        assert len(value) == int(r.prop("length")) == len(_mock(dev_graph, r.name)["result"])
        assert re.fullmatch(r"[A-Za-z0-9]+", value)
        assert sum(c.islower() for c in value) >= int(r.prop("minLower", 0))
        assert sum(c.isupper() for c in value) >= int(r.prop("minUpper", 0))
        assert sum(c.isdigit() for c in value) >= int(r.prop("minNumeric", 0))
    for r in dev_graph.of_type(RANDOM_BYTES):
        assert len(base64.b64decode(kept[r.name]["value"])) == int(r.prop("length"))


def test_the_cookie_secret_reaches_oauth2_proxy_url_safe(dev_graph: ProgramGraph, store: Path) -> None:
    realized = realize_secrets(dev_graph, store)
    real = json.loads(store.read_text())["auth-oauth2-proxy-cookie"]["value"]
    assert urlsafe_cookie_secret(real) in _delivered_text(realized)


def test_kept_in_a_private_file_and_reused(dev_graph: ProgramGraph, store: Path) -> None:
    first = realize_secrets(dev_graph, store)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    second = realize_secrets(dev_graph, store)
    assert _delivered_text(first) == _delivered_text(second)
    assert _delivered_text(realize_secrets(dev_graph)) != _delivered_text(first)  # no store: fresh each time


def test_a_new_rotation_epoch_generates_new_values(dev_graph: ProgramGraph, store: Path) -> None:
    realize_secrets(dev_graph, store)
    before = json.loads(store.read_text())
    name = "database-app-password"
    rotated = replace(
        dev_graph,
        resources=[
            replace(r, inputs={**r.inputs, "keepers": {"rotation_epoch": "2"}}) if r.name == name else r
            for r in dev_graph.resources
        ],
    )
    realize_secrets(rotated, store)
    after = json.loads(store.read_text())
    assert after[name]["value"] != before[name]["value"]
    assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in before.items() if k != name}
