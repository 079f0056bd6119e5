"""One component under the Pulumi mocks of the program tests (``policy_plan.program.evaluate_program``), built from
hand-made args instead of the whole program, with the zones it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pulumi

from components.network_zones import NetworkZones
from components.placement import Placement
from components.platform import zones_args
from components.settings import Settings, parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, stack_config


def settings_of(stack: str) -> Settings:
    return parse_settings(stack_config(stack), stack=stack)


def component_graph(stack: str, build: Callable[[Settings, Placement, NetworkZones], Any]) -> ProgramGraph:
    """``build(settings, placement, zones)`` constructs the component(s) under test; their graph is returned."""
    asyncio.set_event_loop(asyncio.new_event_loop())  # the mocked engine needs a current loop

    def program() -> None:
        settings = settings_of(stack)
        build(settings, Placement.of(settings), NetworkZones("zones", zones_args(settings)))

    graph = evaluate_program(stack, program=program)
    assert graph.error is None, graph.error
    return graph


def children(graph: ProgramGraph, parent: PlannedResource) -> list[PlannedResource]:
    return [r for r in graph.resources if r.parent == parent.urn]


def component(graph: ProgramGraph, type_: str) -> PlannedResource:
    (found,) = graph.of_type(type_)
    return found


def resource_stub(name: str) -> pulumi.CustomResource:
    """A resource to depend on or alias to: a random string (no provider to mock beyond the default)."""
    import pulumi_random as random

    return random.RandomString(name, length=8)
