"""Shared fixtures: the real program evaluated under Pulumi mocks for each committed stack."""

from __future__ import annotations

import pytest

from policy_plan.program import ProgramGraph, evaluate_program


@pytest.fixture(scope="session")
def dev_graph() -> ProgramGraph:
    graph = evaluate_program("dev")
    assert graph.error is None, graph.error
    return graph


@pytest.fixture(scope="session")
def prod_graph() -> ProgramGraph:
    graph = evaluate_program("prod")
    assert graph.error is None, graph.error
    return graph


@pytest.fixture(params=["dev", "prod"])
def graph(request: pytest.FixtureRequest, dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> ProgramGraph:
    return dev_graph if request.param == "dev" else prod_graph
