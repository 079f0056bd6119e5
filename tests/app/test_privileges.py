"""Least privilege for every role (R-DB-1), on a real PostgreSQL 15 + PostGIS server.

The roles, databases, schemas, grants and default privileges are the ones the program declares (the Postgres
resources of the prod graph under mocks), applied as the postgresql provider applies them: a grant on the
tables of a schema is ``REVOKE ALL ... ON ALL TABLES IN SCHEMA`` then ``GRANT``. Then the migrations run as
the migrator, and the program's grants are applied once more, as a ``pulumi refresh`` + ``up`` would. The
privileges each role then holds, read from the catalog, must be exactly the expected table below.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from policy_plan.program import PlannedResource, evaluate_program
from tests.app.platform import HEAD, alembic_cli
from tests.support.postgres import PostgresCluster, postgis_available, start_cluster_or_fail

PG = "postgresql:index"
ORDER = ["role:Role", "database:Database", "extension:Extension", "schema:Schema"]
DB = "flypotato"
APP_TABLES = (
    "flight_daily_region_stats",
    "flight_hourly_stats",
    "flight_monthly_region_stats",
    "flights",
    "flow_events",
    "regions",
)
VIEWS = ("flights", "hourly_stats", "region_daily_stats", "regions")
METRICS_FUNCTIONS = ("flights", "flow_events")
DML = ("DELETE", "INSERT", "SELECT", "UPDATE")
SEQUENCE_USE = ("SELECT", "UPDATE", "USAGE")

# role -> {(kind, object, privilege)}: everything a role holds beyond owning what it owns.
EXPECTED: dict[str, set[tuple[str, str, str]]] = {
    "migrator": set(),  # owns the database flypotato, its schemas and every table (checked below)
    "app": {
        ("database", DB, "CONNECT"),
        ("schema", "app", "USAGE"),
        ("schema", "migrations", "USAGE"),
        ("schema", "public", "USAGE"),
        *{("table", f"app.{t}", p) for t in APP_TABLES for p in DML},
        *{("sequence", f"app.{s}_id_seq", p) for s in ("flights", "flow_events", "regions") for p in SEQUENCE_USE},
        ("table", "migrations.alembic_version", "SELECT"),  # readiness reports it; never writes it
    },
    "datalens": {
        ("database", DB, "CONNECT"),
        ("schema", "analytics", "USAGE"),
        ("schema", "public", "USAGE"),
        *{("table", f"analytics.{v}", "SELECT") for v in VIEWS},
    },
    "keycloak": set(),  # owns the database keycloak
    "exporter": {
        ("database", DB, "CONNECT"),
        ("database", "postgres", "CONNECT"),
        ("member", "pg_monitor", ""),
        ("schema", "metrics", "USAGE"),
        *{("function", f"metrics.{f}", "EXECUTE") for f in METRICS_FUNCTIONS},  # aggregates; no table
    },
    "backup": {
        *{("database", d, "CONNECT") for d in (DB, "keycloak", "postgres", "template_postgis")},
        ("member", "pg_read_all_data", ""),
    },
    "PUBLIC": set(),
}
OWNED = {
    "migrator": {("database", DB), *{("schema", s) for s in ("analytics", "app", "metrics", "migrations")}},
    "keycloak": {("database", "keycloak")},
}


def _q(name: str) -> str:
    return "PUBLIC" if name == "public" else f'"{name}"'


def _plural(object_type: str) -> str:
    return {"table": "TABLES", "sequence": "SEQUENCES", "function": "FUNCTIONS"}[object_type]


def provider_sql(resource: PlannedResource) -> tuple[str, str]:
    """(database, SQL) the postgresql provider runs for one resource of the graph."""
    p: dict[str, Any] = {k: resource.prop(k) for k in resource.inputs}
    kind = resource.type.removeprefix(f"{PG}/")
    if kind == "role:Role":
        options = ["LOGIN", f"CONNECTION LIMIT {int(p['connectionLimit'])}"]
        options += ["REPLICATION"] if p.get("replication") else []
        options += ["CREATEDB"] if p.get("createDatabase") else []
        sql = f"CREATE ROLE {_q(p['name'])} {' '.join(options)};"
        sql += "".join(f" GRANT {_q(member)} TO {_q(p['name'])};" for member in p.get("roles") or [])
        return "postgres", sql
    if kind == "database:Database":
        sql = f"CREATE DATABASE {_q(p['name'])} OWNER {_q(p['owner'])} TEMPLATE template0 ENCODING 'UTF8';"
        return "postgres", sql + (f" ALTER DATABASE {_q(p['name'])} IS_TEMPLATE true;" if p.get("isTemplate") else "")
    if kind == "extension:Extension":
        return p["database"], f"CREATE EXTENSION {p['name']} SCHEMA {p['schema']};"
    if kind == "schema:Schema":
        return p["database"], f"CREATE SCHEMA {_q(p['name'])} AUTHORIZATION {_q(p['owner'])};"
    privileges = ", ".join(p["privileges"])
    role, database, schema, object_type = _q(p["role"]), p["database"], p.get("schema"), p["objectType"]
    if kind == "grant:Grant":
        target = {
            "database": f"DATABASE {_q(database)}",
            "schema": f"SCHEMA {_q(schema or '')}",
            "table": f"ALL TABLES IN SCHEMA {_q(schema or '')}",
            "sequence": f"ALL SEQUENCES IN SCHEMA {_q(schema or '')}",
            "function": f"ALL FUNCTIONS IN SCHEMA {_q(schema or '')}",
        }[object_type]
        sql = f"REVOKE ALL ON {target} FROM {role};"
        return database, sql + (f" GRANT {privileges} ON {target} TO {role};" if privileges else "")
    assert kind == "defaultPrivileges:DefaultPrivileges", kind
    scope = f"ALTER DEFAULT PRIVILEGES FOR ROLE {_q(p['owner'])}" + (f" IN SCHEMA {_q(schema)}" if schema else "")
    sql = f"{scope} REVOKE ALL ON {_plural(object_type)} FROM {role};"
    return database, sql + (f" {scope} GRANT {privileges} ON {_plural(object_type)} TO {role};" if privileges else "")


@functools.cache
def _declared_resources() -> tuple[PlannedResource, ...]:
    """The prod graph's Postgres resources under mocks (evaluated once per session)."""
    graph = evaluate_program("prod")
    assert graph.error is None, graph.error
    return tuple(r for r in graph.resources if r.type.startswith(PG) and not r.type.endswith("Provider"))


def declared_grants() -> list[PlannedResource]:
    return [r for r in _declared_resources() if r.type.removeprefix(f"{PG}/") not in ORDER]


def declared() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The program's objects (created once) and its grants (re-applied by every up)."""
    objects = sorted(
        (r for r in _declared_resources() if r.type.removeprefix(f"{PG}/") in ORDER),
        key=lambda r: ORDER.index(r.type.removeprefix(f"{PG}/")),
    )
    grants = declared_grants()
    assert objects and grants
    return [provider_sql(r) for r in objects], [provider_sql(r) for r in grants]


HELD = """
WITH roles AS (SELECT oid, rolname FROM pg_roles UNION ALL SELECT 0, 'PUBLIC')
SELECT r.rolname, 'database', d.datname, a.privilege_type
  FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN roles r ON r.oid = a.grantee
 WHERE a.grantee <> d.datdba AND d.datname IN ('flypotato', 'keycloak', 'postgres', 'template_postgis')
UNION ALL
SELECT r.rolname, 'schema', n.nspname, a.privilege_type
  FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN roles r ON r.oid = a.grantee
 WHERE a.grantee <> n.nspowner AND n.nspname IN ('app', 'analytics', 'metrics', 'migrations', 'public')
UNION ALL
SELECT r.rolname, CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, n.nspname || '.' || c.relname,
       a.privilege_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN roles r ON r.oid = a.grantee
 WHERE a.grantee <> c.relowner AND n.nspname IN ('app', 'analytics', 'metrics', 'migrations')
UNION ALL
SELECT r.rolname, 'function', n.nspname || '.' || p.proname, a.privilege_type
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  CROSS JOIN LATERAL aclexplode(p.proacl) a JOIN roles r ON r.oid = a.grantee
 WHERE a.grantee <> p.proowner AND n.nspname IN ('app', 'analytics', 'metrics', 'migrations')
UNION ALL
SELECT m.rolname, 'member', g.rolname, ''
  FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.roleid
"""


def deploy_declared(cluster: PostgresCluster) -> None:
    """The program's roles, databases, schemas and grants, then the migrations as the migrator, then the
    grants once more (as ``pulumi refresh`` + ``up`` after a release would)."""
    objects, grants = declared()
    for database, sql in objects + grants:
        cluster.psql(sql, database)
    migrate = alembic_cli({"FLY_POTATO_MIGRATOR_URL": cluster.dsn(DB, user="migrator")})
    assert migrate.returncode == 0, migrate.stderr
    for database, sql in grants:
        cluster.psql(sql, database)


@pytest.fixture(scope="module")
def deployed() -> Iterator[PostgresCluster]:
    cluster = start_cluster_or_fail()
    if not postgis_available(cluster.pg_bin):
        cluster.remove()
        pytest.fail("PostGIS is not installed; run scripts/deps/postgres.sh.", pytrace=False)
    try:
        deploy_declared(cluster)
        yield cluster
    finally:
        cluster.remove()


def held(cluster: PostgresCluster) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = {role: set() for role in EXPECTED}
    for line in cluster.psql(f"COPY ({HELD}) TO STDOUT", DB).splitlines():
        role, kind, name, privilege = [*line.split("\t"), ""][:4]  # psql's output is stripped
        if role in found:
            found[role].add((kind, name, privilege))
    return found


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_holds_exactly_its_expected_privileges(deployed: PostgresCluster, role: str) -> None:
    assert held(deployed)[role] == EXPECTED[role]


def test_the_migrator_owns_the_app_database_schemas_and_tables(deployed: PostgresCluster) -> None:
    owners = deployed.psql(
        "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('app', 'analytics', 'metrics', 'migrations')",
        DB,
    )
    assert owners == "migrator"
    for role, objects in OWNED.items():
        for kind, name in objects:
            query = {
                "database": f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'",
                "schema": f"SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = '{name}'",
            }[kind]
            assert deployed.psql(query, DB) == role, (kind, name)


def test_the_exporter_reads_counts_through_the_metrics_functions_and_no_row(deployed: PostgresCluster) -> None:
    deployed.psql(
        "INSERT INTO app.flow_events (event_type, message, payload) VALUES ('probe', 'x', '{}'), ('probe', 'y', '{}')",
        DB,
    )
    exporter = {"user": "exporter"}
    assert deployed.psql("SELECT total, last_hour FROM metrics.flights()", DB, **exporter) == "0|0"
    events = deployed.psql("SELECT event_type, total, last_hour FROM metrics.flow_events()", DB, **exporter)
    assert "probe|2|2" in events.splitlines()
    for table in ("app.flights", "app.flow_events", "analytics.flights"):
        with pytest.raises(RuntimeError, match="permission denied for schema"):
            deployed.psql(f"SELECT count(*) FROM {table}", DB, **exporter)
    # Definer-rights functions with a fixed search_path: nothing the caller puts first can hijack them.
    settings = deployed.psql(
        "SELECT string_agg(p.proname || ':' || p.prosecdef || ':' || array_to_string(p.proconfig, ','), ' ' "
        "ORDER BY p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'metrics'",
        DB,
    )
    assert settings == " ".join(f"{f}:true:search_path=pg_catalog, pg_temp" for f in METRICS_FUNCTIONS)
    # Neither the app role nor PUBLIC may call them: no USAGE on the schema, and no EXECUTE either.
    with pytest.raises(RuntimeError, match="permission denied for schema metrics"):
        deployed.psql("SELECT * FROM metrics.flights()", DB, user="app")
    for grantee in ("app", "datalens", "public"):
        for function in METRICS_FUNCTIONS:
            query = f"SELECT has_function_privilege('{grantee}', 'metrics.{function}()', 'EXECUTE')"
            assert deployed.psql(query, DB) == "f", (grantee, function)


def test_the_app_role_reads_the_migration_state_and_cannot_rewrite_it(deployed: PostgresCluster) -> None:
    app = {"user": "app"}
    assert deployed.psql("SELECT version_num FROM migrations.alembic_version", DB, **app) == HEAD
    for statement in (
        "UPDATE migrations.alembic_version SET version_num = '0001'",
        "DELETE FROM migrations.alembic_version",
        "INSERT INTO migrations.alembic_version VALUES ('9999')",
        "TRUNCATE migrations.alembic_version",
    ):
        with pytest.raises(RuntimeError, match="permission denied for table alembic_version"):
            deployed.psql(statement, DB, **app)


@pytest.mark.parametrize("role", ["app", "datalens", "exporter", "backup"])
def test_a_destroy_drops_the_role_once_the_grants_naming_it_are_deleted(deployed: PostgresCluster, role: str) -> None:
    """What ``pulumi destroy`` does before it drops a role: it deletes every grant and default privilege naming the
    role (the provider's ``REVOKE ALL``). Nothing orders the role after the app database, so DROP ROLE must then
    succeed while that database and the migrations' objects still exist. In a transaction, rolled back."""
    revokes = [provider_sql(r)[1].split(";")[0] + ";" for r in declared_grants() if r.prop("role") == role]
    assert revokes
    deployed.psql("BEGIN; " + " ".join(revokes) + f' DROP ROLE "{role}"; ROLLBACK;', DB)
    assert deployed.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'", DB) == "1"
