"""The stack outputs: documented snake_case keys, secrets kept secret."""

from __future__ import annotations

import re

from components import outputs as keys
from policy_plan.program import ProgramGraph

DOCUMENTED = {value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}


def test_outputs_are_the_documented_snake_case_keys(graph: ProgramGraph) -> None:
    exported = set(graph.outputs)
    assert exported <= DOCUMENTED
    assert {"public_url", "port_matrix", "zones", "internal_urls"} <= exported
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in exported)


def test_sensitive_outputs_are_secrets(graph: ProgramGraph) -> None:
    for key in keys.SECRET_KEYS & set(graph.outputs):
        value = graph.outputs[key]
        assert isinstance(value, dict) and value.get("secret") is True, key


def test_public_url_per_profile(dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> None:
    assert dev_graph.outputs["public_url"] == "http://localhost"
    assert prod_graph.outputs["public_url"] == "https://flypotato.example.com"


def test_zones_output_lists_members(prod_graph: ProgramGraph) -> None:
    zones = prod_graph.outputs["zones"]
    assert zones["edge"]["services"] == ["nginx"]
    assert zones["data"]["internal"] is True
    assert zones["edge"]["network"] == "fly-potato-prod-edge"
