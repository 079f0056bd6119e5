"""Postgres under mocks: roles, databases, schemas, grants, pg_hba and the provider's gate (R-DB-1, R-SEC-1, R-SEC-4).

These tests read the graph the real program declares. Whether the rights work on a real server (app cannot
DDL, datalens sees only analytics, PUBLIC cannot connect) is for the end-to-end tier.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from functools import cache
from typing import Any

import pytest

from components.platform_databases import pg_hba
from components.settings import SettingsError, parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, is_secret, stack_config

PG = "postgresql:index"
ROLE, GRANT, DEFAULTS = f"{PG}/role:Role", f"{PG}/grant:Grant", f"{PG}/defaultPrivileges:DefaultPrivileges"
DATALENS_ON = {"datalens.allow_list": ["203.0.113.0/24"], "host_ports.datalens": 15433}


@cache
def _graph(stack: str, overrides: str) -> ProgramGraph:
    graph = evaluate_program(stack, json.loads(overrides))
    assert graph.error is None, graph.error
    return graph


def graph(stack: str, **overrides: Any) -> ProgramGraph:
    return _graph(stack, json.dumps(overrides, sort_keys=True))


def by_role(g: ProgramGraph) -> dict[str, PlannedResource]:
    return {r.prop("name"): r for r in g.of_type(ROLE)}


def mock_secrets(g: ProgramGraph) -> set[str]:
    """The values the mocks gave every generated password (see policy_plan.program._fake_state)."""
    found = set()
    for r in g.of_type("random:index/randomPassword:RandomPassword"):
        digest = hashlib.sha256(f"{r.type}/{r.name}".encode()).hexdigest()
        found.add("Mock" + digest[: max(8, int(r.prop("length", 32)) - 4)])
    return found


STACKS = pytest.mark.parametrize("stack", ["dev", "prod"])


# --- roles ------------------------------------------------------------------------------------------


@STACKS
def test_every_role_of_r_db_1_exists_with_its_attributes(stack: str) -> None:
    roles = by_role(graph(stack))
    assert set(roles) == {"migrator", "app", "datalens", "keycloak", "exporter", "backup"}
    for name, role in roles.items():
        assert role.prop("login") is True, name
        assert role.prop("superuser") is False, name
        assert role.prop("createRole") is False, name
        assert is_secret(role.inputs["password"]), f"{name}'s password must be a Pulumi secret"
    assert roles["exporter"].prop("roles") == ["pg_monitor"]
    assert roles["backup"].prop("roles") == ["pg_read_all_data"]
    assert roles["backup"].prop("replication") is True
    assert roles["backup"].prop("createDatabase") is True
    for name in ("migrator", "app", "datalens", "keycloak"):
        assert not roles[name].prop("roles"), name
        assert roles[name].prop("replication") is False, name
        assert roles[name].prop("createDatabase") is False, name
    assert roles["datalens"].prop("connectionLimit") == 5
    assert roles["datalens"].prop("statementTimeout") == 60000
    assert roles["app"].prop("searchPaths") == ["app", "public"]


def test_the_datalens_connection_limit_comes_from_config() -> None:
    roles = by_role(graph("prod", **{"datalens.connection_limit": 3}))
    assert roles["datalens"].prop("connectionLimit") == 3


@STACKS
def test_role_passwords_rotate_with_the_stack_epoch(stack: str) -> None:
    def keepers(g: ProgramGraph) -> dict[str, Any]:
        passwords = {r.urn: r for r in g.of_type("random:index/randomPassword:RandomPassword")}
        found = {}
        for name, role in by_role(g).items():
            (source,) = [u for u in role.property_dependencies["password"] if u in passwords]
            found[name] = passwords[source].prop("keepers")
        return found

    assert set(map(json.dumps, keepers(graph(stack)).values())) == {json.dumps({"rotation_epoch": "1"})}
    bumped = keepers(graph(stack, **{"secrets.rotation_epoch": 2}))
    assert set(map(json.dumps, bumped.values())) == {json.dumps({"rotation_epoch": "2"})}


@STACKS
def test_the_superuser_password_is_pinned_because_the_image_applies_it_at_initdb_only(stack: str) -> None:
    superuser = graph(stack, **{"secrets.rotation_epoch": 7}).by_name("data-postgres-superuser")
    assert "rotation_epoch" not in superuser.prop("keepers")
    assert "result" in superuser.options["additional_secret_outputs"]


# --- databases, extension, schemas ------------------------------------------------------------------


@STACKS
def test_databases_extension_and_schemas(stack: str) -> None:
    g = graph(stack)
    databases = {r.prop("name"): r for r in g.of_type(f"{PG}/database:Database")}
    assert {name: db.prop("owner") for name, db in databases.items()} == {
        "flypotato": "migrator",
        "keycloak": "keycloak",
        "template_postgis": "postgres",  # the restore drill's template (tests/unit/test_backup_wiring.py)
    }
    for db in databases.values():
        assert db.prop("template") == "template0"
        assert db.prop("encoding") == "UTF8"
    assert [name for name, db in databases.items() if db.prop("isTemplate")] == ["template_postgis"]
    extensions = {r.prop("database"): r for r in g.of_type(f"{PG}/extension:Extension")}
    assert {db: (e.prop("name"), e.prop("schema")) for db, e in extensions.items()} == {
        "flypotato": ("postgis", "public"),
        "template_postgis": ("postgis", "public"),
    }
    schemas = {r.prop("name"): r for r in g.of_type(f"{PG}/schema:Schema")}
    assert {name: (s.prop("database"), s.prop("owner")) for name, s in schemas.items()} == {
        "app": ("flypotato", "migrator"),
        "analytics": ("flypotato", "migrator"),
        "migrations": ("flypotato", "migrator"),  # alembic_version, read-only for app (R-DB-1)
        "metrics": ("flypotato", "migrator"),  # the exporter's aggregate-only functions (R-DB-1, R-OBS-1)
    }
    # What the migrations fill is never dropped piecemeal: forgotten on delete, gone with its database.
    assert all(s.options["retain_on_delete"] for s in schemas.values())
    assert extensions["flypotato"].options["retain_on_delete"] is True


# --- grants ------------------------------------------------------------------------------------------

EXPECTED_GRANTS = {
    # PUBLIC gets nothing
    ("public", "database", "flypotato", None, ()),
    ("public", "database", "keycloak", None, ()),
    ("public", "database", "postgres", None, ()),
    ("public", "database", "template_postgis", None, ()),
    ("public", "schema", "flypotato", "public", ()),
    # CONNECT (owners migrator and keycloak have it implicitly)
    ("app", "database", "flypotato", None, ("CONNECT",)),
    ("datalens", "database", "flypotato", None, ("CONNECT",)),
    ("exporter", "database", "flypotato", None, ("CONNECT",)),
    ("exporter", "database", "postgres", None, ("CONNECT",)),
    ("backup", "database", "flypotato", None, ("CONNECT",)),
    ("backup", "database", "keycloak", None, ("CONNECT",)),
    ("backup", "database", "postgres", None, ("CONNECT",)),
    ("backup", "database", "template_postgis", None, ("CONNECT",)),
    # schemas
    ("app", "schema", "flypotato", "public", ("USAGE",)),
    ("datalens", "schema", "flypotato", "public", ("USAGE",)),
    ("app", "schema", "flypotato", "app", ("USAGE",)),
    ("app", "schema", "flypotato", "migrations", ("USAGE",)),
    ("datalens", "schema", "flypotato", "analytics", ("USAGE",)),
    ("exporter", "schema", "flypotato", "metrics", ("USAGE",)),
    # existing objects
    ("exporter", "function", "flypotato", "metrics", ("EXECUTE",)),
    ("app", "table", "flypotato", "app", ("DELETE", "INSERT", "SELECT", "UPDATE")),
    ("app", "sequence", "flypotato", "app", ("SELECT", "UPDATE", "USAGE")),
    ("app", "table", "flypotato", "migrations", ("SELECT",)),
    ("datalens", "table", "flypotato", "analytics", ("SELECT",)),
}

EXPECTED_DEFAULTS = {
    ("app", "migrator", "app", "table", ("DELETE", "INSERT", "SELECT", "UPDATE")),
    ("app", "migrator", "app", "sequence", ("SELECT", "UPDATE", "USAGE")),
    ("app", "migrator", "app", "function", ("EXECUTE",)),
    ("app", "migrator", "migrations", "table", ("SELECT",)),
    ("datalens", "migrator", "analytics", "table", ("SELECT",)),
    ("datalens", "migrator", "analytics", "function", ("EXECUTE",)),
    ("exporter", "migrator", "metrics", "function", ("EXECUTE",)),
    ("public", "migrator", None, "function", ()),
}


@STACKS
def test_grants_are_exactly_the_least_privilege_set(stack: str) -> None:
    found = {
        (
            r.prop("role"),
            r.prop("objectType"),
            r.prop("database"),
            r.prop("schema"),
            tuple(sorted(r.prop("privileges"))),
        )
        for r in graph(stack).of_type(GRANT)
    }
    assert found == EXPECTED_GRANTS


@STACKS
def test_default_privileges_name_the_migrator_as_owner(stack: str) -> None:
    found = {
        (r.prop("role"), r.prop("owner"), r.prop("schema"), r.prop("objectType"), tuple(sorted(r.prop("privileges"))))
        for r in graph(stack).of_type(DEFAULTS)
    }
    assert found == EXPECTED_DEFAULTS
    assert {r.prop("database") for r in graph(stack).of_type(DEFAULTS)} == {"flypotato"}


@STACKS
def test_nothing_is_granted_to_public_or_to_datalens_outside_analytics(stack: str) -> None:
    g = graph(stack)
    for r in g.of_type(GRANT) + g.of_type(DEFAULTS):
        if r.prop("role") == "public":
            assert r.prop("privileges") == [], r.name
        if r.prop("role") == "datalens" and r.prop("objectType") != "database":
            assert r.prop("schema") in {"analytics", "public"}, r.name
            assert set(r.prop("privileges")) <= {"SELECT", "USAGE", "EXECUTE"}, r.name
        if r.prop("role") == "app" and r.prop("objectType") != "database":
            assert r.prop("schema") in {"app", "public", "migrations"}, r.name
        if r.prop("role") == "app" and r.prop("schema") == "migrations":
            assert set(r.prop("privileges")) <= {"SELECT", "USAGE"}, r.name  # reads alembic_version only


def _acl(r: PlannedResource) -> tuple[Any, ...]:
    """The catalog row a grant rewrites: the same key means the same tuple in pg_database, pg_namespace,
    pg_class (all tables or all sequences of a schema) or pg_default_acl."""
    if r.type == GRANT:
        return ("grant", r.prop("objectType"), r.prop("database"), r.prop("schema"))
    return ("default", r.prop("owner"), r.prop("schema"), r.prop("objectType"))


@STACKS
def test_grants_on_one_catalog_row_form_a_chain(stack: str) -> None:
    """Parallel GRANTs on one row collide ("tuple concurrently updated"): each waits for the one before."""
    g = graph(stack)
    chained = g.of_type(GRANT) + g.of_type(DEFAULTS)
    groups: dict[tuple[Any, ...], list[PlannedResource]] = {}
    for r in chained:
        groups.setdefault(_acl(r), []).append(r)
    assert max(len(members) for members in groups.values()) >= 5  # flypotato's ACL: PUBLIC and 4 CONNECTs
    for key, members in groups.items():
        urns = {r.urn for r in members}
        before = {r.urn: [u for u in r.dependencies if u in urns] for r in members}
        assert sum(1 for deps in before.values() if not deps) == 1, key
        assert all(len(deps) <= 1 for deps in before.values()), key
        followers = [u for deps in before.values() for u in deps]
        assert len(followers) == len(set(followers)) == len(members) - 1, key


# --- the provider and its gate ------------------------------------------------------------------------


@STACKS
def test_the_provider_waits_for_the_health_gated_container(stack: str) -> None:
    g = graph(stack)
    (provider,) = g.of_type("pulumi:providers:postgresql")
    postgres = g.containers()["postgres"]
    assert postgres.prop("wait") is True
    assert postgres.prop("healthcheck")["tests"][0] == "CMD"
    assert postgres.urn in provider.dependencies
    assert (provider.prop("host"), provider.prop("port")) == ("127.0.0.1", "5433")
    assert provider.prop("username") == "postgres"
    assert provider.prop("superuser") == "true"
    assert provider.prop("sslmode") == "disable"
    assert int(provider.prop("connectTimeout")) > 0
    assert is_secret(provider.inputs["password"])


@STACKS
def test_every_postgres_resource_goes_through_that_provider(stack: str) -> None:
    g = graph(stack)
    (provider,) = g.of_type("pulumi:providers:postgresql")
    managed = [r for r in g.resources if r.type.startswith("postgresql:")]
    assert len(managed) > 30
    for r in managed:
        assert r.provider.startswith(provider.urn + "::"), r.name


def test_provider_endpoint_follows_a_tunnel() -> None:
    g = graph("prod", **{"operator_endpoints.postgres_host": "localhost", "operator_endpoints.postgres_port": 15433})
    (provider,) = g.of_type("pulumi:providers:postgresql")
    assert (provider.prop("host"), provider.prop("port")) == ("localhost", "15433")


@STACKS
def test_everything_that_logs_in_waits_for_roles_and_grants(stack: str) -> None:
    g = graph(stack)
    (component,) = g.of_type("fly-potato:database:PlatformDatabases")
    containers = g.containers()
    for service in ("migration", "backend", "keycloak", "backup", "postgres_exporter", "sql_exporter"):
        assert component.urn in g.ancestors_and_dependencies(containers[service].urn), service


# --- the container: secrets as files, pg_hba ----------------------------------------------------------


@STACKS
def test_postgres_gets_its_password_and_pg_hba_as_files(stack: str) -> None:
    postgres = graph(stack).containers()["postgres"]
    env = dict(item.split("=", 1) for item in postgres.prop("envs"))
    assert env["POSTGRES_PASSWORD_FILE"] == "/etc/fly-potato/secrets/postgres_password"
    assert env["POSTGRES_HBA_FILE"] == "/etc/fly-potato/pg_hba.conf"
    assert "POSTGRES_PASSWORD" not in env
    assert is_secret(postgres.inputs["uploads"])
    files = {u["file"]: u for u in postgres.prop("uploads")}
    assert files["/etc/fly-potato/secrets/postgres_password"]["permissions"] == "0400"
    assert "scram-sha-256" in files["/etc/fly-potato/pg_hba.conf"]["content"]


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("prod", {}), ("prod", DATALENS_ON)])
def test_pg_hba_admits_each_role_only_from_its_clients_zones(stack: str, overrides: dict[str, Any]) -> None:
    settings = parse_settings(stack_config(stack, overrides), stack=stack)
    subnets = {str(net) for net in settings.zone_subnets.values()}
    rows = [line.split("#")[0].split() for line in pg_hba(settings).splitlines()]
    rows = [row for row in rows if row]
    assert all(row[-1] == "scram-sha-256" for row in rows)
    hosts = [row for row in rows if row[0] == "host"]
    for _, _database, user, address, _ in hosts:
        network = ipaddress.ip_network(address)
        assert network.prefixlen >= 24, address
        if network.prefixlen == 24:
            assert address in subnets
        if user == "all":
            assert network.prefixlen == 32, "only the Docker host's gateway may try every role"
    by_user: dict[tuple[str, str], set[str]] = {}
    for _, database, user, address, _ in hosts:
        by_user.setdefault((user, database), set()).add(address)
    data = settings.zone_subnets[next(z for z in settings.zone_subnets if z.value == "data")]
    assert by_user[("app", "flypotato")] == {data}
    assert by_user[("migrator", "flypotato")] == {data}
    assert data in by_user[("keycloak", "keycloak")]
    assert ("replication", "backup") in {(d, u) for _, d, u, _, _ in hosts}
    assert (("datalens", "flypotato") in by_user) == settings.datalens_enabled


def test_pg_hba_is_known_at_preview() -> None:
    g = evaluate_program("prod", preview=True)
    postgres = g.containers()["postgres"]
    files = {u["file"]: u for u in postgres.prop("uploads")}
    assert "10.231." in files["/etc/fly-potato/pg_hba.conf"]["content"]


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("prod", {}), ("prod", DATALENS_ON)])
def test_no_generated_secret_travels_in_plain_container_env(stack: str, overrides: dict[str, Any]) -> None:
    g = graph(stack, **overrides)
    secrets = mock_secrets(g)
    assert secrets
    for service, container in g.containers().items():
        assert not is_secret(container.inputs.get("envs")), f"{service}'s env must hold no secret at all"
        for item in container.prop("envs") or []:
            assert not any(secret in item for secret in secrets), f"{service} env {item.split('=')[0]}"
        uploads = container.prop("uploads") or []
        if any(secret in u["content"] for u in uploads for secret in secrets):
            assert is_secret(container.inputs["uploads"]), service


# --- outputs -------------------------------------------------------------------------------------------


@STACKS
def test_connection_outputs_are_secrets(stack: str) -> None:
    outputs = graph(stack, **DATALENS_ON).outputs if stack == "prod" else graph(stack).outputs
    for key, user, host in (
        ("database_url", "app", "postgres:5433"),
        ("migrator_url", "migrator", "postgres:5433"),
    ):
        assert outputs[key]["secret"] is True
        assert outputs[key]["value"].startswith(f"postgresql://{user}:Mock")
        assert outputs[key]["value"].endswith(f"@{host}/flypotato")
    assert outputs["datalens_dsn"]["secret"] is True
    assert outputs["datalens_dsn"]["value"].startswith("postgresql://datalens:")


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"zones.data.subnet": "10.9.0.0/24", "zones.app.subnet": "10.9.0.128/25"}, "overlaps"),
        ({"zones.data.subnet": "10.9.0.0/30"}, "at least 16 addresses"),
        ({"publish.postgres": "none"}, "operator_endpoints.postgres_host"),
        ({"publish.keycloak": "none"}, "operator_endpoints.keycloak_url"),
    ],
)
def test_settings_refuse_what_the_providers_or_pg_hba_cannot_use(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings(stack_config("prod", overrides), stack="prod")
    assert expected in str(error.value)


def test_dev_and_prod_subnets_do_not_collide() -> None:
    dev = parse_settings(stack_config("dev"), stack="dev").zone_subnets.values()
    prod = parse_settings(stack_config("prod"), stack="prod").zone_subnets.values()
    assert not any(ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b)) for a in dev for b in prod)
    assert len(set(dev)) == len(set(prod)) == 6


def test_networks_carry_the_fixed_subnets() -> None:
    g = graph("prod")
    settings = parse_settings(stack_config("prod"), stack="prod")
    for network in g.of_type("docker:index/network:Network"):
        zone = next(label["value"] for label in network.prop("labels") if label["label"] == "org.flypotato.zone")
        (ipam,) = network.prop("ipamConfigs")
        assert ipam["subnet"] == next(v for k, v in settings.zone_subnets.items() if k.value == zone)
