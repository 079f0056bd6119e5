"""Every documented flow is possible: source and target share a zone in both stacks (R-NET-4)."""

from __future__ import annotations

import pytest

from components.catalog import FLOWS, LISTENERS
from components.settings import parse_settings
from policy_plan.program import stack_config


@pytest.mark.parametrize(
    ("stack", "overrides"),
    [("dev", {}), ("prod", {}), ("prod", {"datalens.allow_list": ["203.0.113.0/24"], "host_ports.datalens": 15433})],
)
def test_active_flows_share_a_zone(stack: str, overrides: dict[str, object]) -> None:
    settings = parse_settings(stack_config(stack, overrides), stack=stack)
    for flow in filter(settings.flow_active, FLOWS):
        target = LISTENERS[flow.target_listener].service
        shared = set(settings.zones_of(flow.source)) & set(settings.zones_of(target))
        assert shared, f"{flow.source} cannot reach {target} ({flow.purpose}) in {stack}"


def test_nginx_joins_the_data_zone_only_for_datalens() -> None:
    plain = parse_settings(stack_config("prod"), stack="prod")
    datalens = parse_settings(
        stack_config("prod", {"datalens.allow_list": ["203.0.113.0/24"], "host_ports.datalens": 15433}), stack="prod"
    )
    assert "data" not in plain.zones_of("nginx")
    assert "data" in datalens.zones_of("nginx")
    assert {"edge", "app"}.isdisjoint(datalens.zones_of("postgres"))
