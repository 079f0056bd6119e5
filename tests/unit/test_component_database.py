"""PlatformDatabases alone, from hand-made args under the mocks: the roles it is given, their generated
passwords, the provider's endpoint and gate, the databases and grants (R-DB-1, R-SEC-1, R-SEC-4)."""

from __future__ import annotations

from typing import Any

import pytest

from components.data_services import DataServices
from components.platform_databases import APP_DATABASE, KEYCLOAK_DATABASE, DatabaseArgs, PlatformDatabases, RoleSpec
from policy_plan.program import ProgramGraph, is_secret
from tests.support.components import component, component_graph
from tests.unit.test_component_data import data_args

PG = "postgresql:index"
ROLES = {
    spec.name: spec
    for spec in (
        RoleSpec("migrator", "owns the app database", clients=("migration",), databases=(APP_DATABASE,)),
        RoleSpec("app", "the backend", clients=("backend",), databases=(APP_DATABASE,), search_path=("app",)),
        RoleSpec("datalens", "reads analytics", clients=("nginx",), databases=(APP_DATABASE,), connection_limit=3),
        RoleSpec("keycloak", "owns its database", clients=("keycloak",), databases=(KEYCLOAK_DATABASE,)),
    )
}


def build(_settings: Any, placement: Any, zones: Any) -> None:
    data = DataServices("data", data_args(placement, zones, None))
    databases = PlatformDatabases(
        "db",
        DatabaseArgs(
            roles=ROLES,
            endpoint=("192.0.2.9", 15432),
            connect_timeout_seconds=7,
            rotation_epoch=4,
            protect=True,
            postgres=data.postgres.container,
            superuser_password="superuser-secret",
        ),
    )
    assert set(databases.passwords) == set(ROLES)


@pytest.fixture(scope="module")
def graph() -> ProgramGraph:
    return component_graph("dev", build)


def test_the_provider_dials_the_given_endpoint_after_postgres(graph: ProgramGraph) -> None:
    (provider,) = graph.of_type("pulumi:providers:postgresql")
    assert provider.parent == component(graph, "fly-potato:database:PlatformDatabases").urn
    assert (provider.prop("host"), provider.prop("port"), provider.prop("connectTimeout")) == (
        "192.0.2.9",
        "15432",
        "7",
    )
    assert is_secret(provider.inputs["password"]) and provider.prop("password") == "superuser-secret"
    postgres = next(r for r in graph.of_type("docker:index/container:Container") if r.name == "data-postgres")
    assert postgres.urn in provider.dependencies


def test_the_given_roles_with_passwords_of_the_rotation_epoch(graph: ProgramGraph) -> None:
    roles = {r.prop("name"): r for r in graph.of_type(f"{PG}/role:Role")}
    assert set(roles) == set(ROLES)
    assert roles["datalens"].prop("connectionLimit") == 3
    assert all(is_secret(role.inputs["password"]) for role in roles.values())
    passwords = {r.name: r for r in graph.of_type("random:index/randomPassword:RandomPassword")}
    for name in ROLES:
        assert passwords[f"db-{name}-password"].prop("keepers") == {"rotation_epoch": "4"}


def test_databases_schemas_and_grants(graph: ProgramGraph) -> None:
    databases = {r.prop("name") for r in graph.of_type(f"{PG}/database:Database")}
    assert databases == {APP_DATABASE, KEYCLOAK_DATABASE, "template_postgis"}
    schemas = graph.of_type(f"{PG}/schema:Schema")
    assert {s.prop("name") for s in schemas} == {"app", "analytics", "migrations", "metrics"}
    assert all(s.options["retain_on_delete"] for s in schemas)
    grants = graph.of_type(f"{PG}/grant:Grant")
    public = [g for g in grants if g.prop("role") == "public"]
    assert public and all(g.prop("privileges") == [] for g in public)  # PUBLIC gets nothing
