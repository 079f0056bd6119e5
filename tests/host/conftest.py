"""Host tier: the scripts pulumi-command runs, executed for real (network namespaces, stub docker, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components.catalog import Zone
from components.settings import Settings, parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, stack_config
from tests.host.netns import OUTSIDE_NET, Lab

# The dev stack with the host guardrails on and an allow-list aimed at the lab's outside host.
GUARDED = {
    "host.egress_rules": True,
    "host.command_timeout_seconds": 30,
    "egress": [
        {"service": "alertmanager", "purpose": "smtp", "port": 587, "destinations": [OUTSIDE_NET]},
        {"service": "backup", "purpose": "ntp", "port": 123, "protocol": "udp"},
    ],
    "datalens": {"allow_list": ["198.51.100.2/32"]},
    "host_ports": {"datalens": 6432},
}


@pytest.fixture(scope="session")
def guarded_settings() -> Settings:
    return parse_settings(stack_config("dev", GUARDED), stack="dev")


@pytest.fixture(scope="session")
def guarded_graph() -> ProgramGraph:
    graph = evaluate_program("dev", GUARDED)
    assert graph.error is None, graph.error
    return graph


@pytest.fixture(scope="session")
def egress_command(guarded_graph: ProgramGraph) -> PlannedResource:
    return guarded_graph.by_name("host-guardrails-egress")


@pytest.fixture(scope="session")
def datalens_command(guarded_graph: ProgramGraph) -> PlannedResource:
    return guarded_graph.by_name("host-guardrails-datalens")


@pytest.fixture(scope="module")
def lab(guarded_settings: Settings) -> Iterator[Lab]:
    built = Lab(
        egress_subnet=guarded_settings.zone_subnets[Zone.EGRESS],
        data_subnet=guarded_settings.zone_subnets[Zone.DATA],
    )
    try:
        built.build()
    except Exception as exc:
        built.teardown()
        pytest.fail(f"could not build the network-namespace lab: {exc}", pytrace=False)
    try:
        yield built
    finally:
        built.teardown()


def prop(resource: PlannedResource, key: str) -> Any:
    return resource.prop(key)
