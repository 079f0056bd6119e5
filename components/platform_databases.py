"""PlatformDatabases: what lives inside Postgres — databases, schemas, roles and their rights (R-DB-1).

Managed with the ``pulumi_postgresql`` provider, which connects as the superuser through the operator bind
(or an SSH tunnel to it) and only after the Postgres container reports healthy. Every role has a generated
password that rotates with the stack's rotation epoch (R-SEC-4); DSNs built from them are Pulumi secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_postgresql as postgresql

from components.catalog import SERVICES, Zone
from components.secrets import generated_password
from components.settings import Settings

TYPE = "fly-potato:database:PlatformDatabases"

SUPERUSER = "postgres"
APP_DATABASE = "flypotato"
KEYCLOAK_DATABASE = "keycloak"
MAINTENANCE_DATABASE = "postgres"
# PostGIS preinstalled, IS_TEMPLATE: the backup role (no superuser) clones it for its restore drills.
POSTGIS_TEMPLATE_DATABASE = "template_postgis"
APP_SCHEMA = "app"
ANALYTICS_SCHEMA = "analytics"
# Alembic's version table (app.db.VERSION_SCHEMA): the app role reads it, only the migrator writes it (R-DB-1).
VERSION_SCHEMA = "migrations"
# The SQL exporter's business metrics (app.db.METRICS_SCHEMA): aggregate-only SECURITY DEFINER functions the
# migrations create; the exporter role may call them and reads no table (R-DB-1, R-OBS-1).
METRICS_SCHEMA = "metrics"
POSTGIS = "postgis"

TABLE_DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_USE = ("USAGE", "SELECT", "UPDATE")


@dataclass(frozen=True)
class RoleSpec:
    """A login role of the platform: who uses it, where it may connect, what it is."""

    name: str
    purpose: str
    clients: tuple[str, ...]  # services that log in with it; pg_hba admits their shared zones with postgres
    databases: tuple[str, ...]  # databases it may connect to ("replication" for streaming)
    member_of: tuple[str, ...] = ()
    connection_limit: int = -1
    replication: bool = False
    create_database: bool = False
    search_path: tuple[str, ...] = ()
    statement_timeout_ms: int = 0


def role_specs(settings: Settings) -> dict[str, RoleSpec]:
    """The roles of R-DB-1, in creation order."""
    specs = (
        RoleSpec(
            "migrator",
            "owns the app database and its schemas; runs the DDL (alembic)",
            clients=("migration",),
            databases=(APP_DATABASE,),
        ),
        RoleSpec(
            "app",
            "the backend: DML on schema app only",
            clients=("backend",),
            databases=(APP_DATABASE,),
            search_path=(APP_SCHEMA, "public"),
        ),
        RoleSpec(
            "datalens",
            "DataLens: SELECT on schema analytics only",
            clients=("nginx",),
            databases=(APP_DATABASE,),
            connection_limit=settings.raw.datalens.connection_limit,
            search_path=(ANALYTICS_SCHEMA, "public"),
            statement_timeout_ms=60_000,
        ),
        RoleSpec("keycloak", "Keycloak: owns its own database", clients=("keycloak",), databases=(KEYCLOAK_DATABASE,)),
        RoleSpec(
            "exporter",
            "metrics: pg_monitor, and EXECUTE on the business-metric functions of schema metrics",
            clients=("postgres_exporter", "sql_exporter"),
            databases=(MAINTENANCE_DATABASE, APP_DATABASE),
            member_of=("pg_monitor",),
            connection_limit=5,
        ),
        # pg_read_all_data lets pg_dump read every table without owning any or being superuser; REPLICATION is
        # what pg_basebackup needs; CREATEDB lets the restore drill create its scratch drill_* databases.
        RoleSpec(
            "backup",
            "dumps, base backups and restore drills",
            clients=("backup",),
            databases=("all", "replication"),
            member_of=("pg_read_all_data",),
            replication=True,
            create_database=True,
        ),
    )
    return {spec.name: spec for spec in specs}


def _source_zones(
    settings: Settings, spec: RoleSpec, zones_of: Callable[[str], Sequence[Zone]] | None = None
) -> list[Zone]:
    """Zones where a role's clients meet postgres: the only networks its connections can come from."""
    zones = zones_of or settings.zones_of
    shared: set[Zone] = set()
    for client in spec.clients:
        shared |= set(zones(client)) & set(zones("postgres"))
    return sorted(shared, key=lambda zone: list(Zone).index(zone))


def operator_ingress_zone(settings: Settings) -> Zone:
    """The network a connection to postgres' published port arrives through (it then comes from the
    bridge gateway): the operator zone when postgres needs it to publish, else its own non-internal zone."""
    zones = settings.zones_of("postgres")
    if Zone.OPERATOR in zones:
        return Zone.OPERATOR
    return next((z for z in zones if not settings.zone_internal[z]), zones[0])


def pg_hba(
    settings: Settings, *, operator_source: str | None = None, zones_of: Callable[[str], Sequence[Zone]] | None = None
) -> str:
    """pg_hba.conf for the stack: scram-sha-256 everywhere, each role only from the zones its clients share
    with postgres, and the Docker host (the operator bind: provider, tunnel, backups by hand) from the
    gateway of the ingress zone. Anything not listed is rejected.

    On a swarm, ``operator_source`` is the operator proxy's fixed address (``components.swarm.operator_proxy``)
    and ``zones_of`` the services' zones there."""
    source = operator_source or settings.zone_gateway(operator_ingress_zone(settings))
    where = "the operator proxy on the manager" if operator_source else "the Docker host via the operator bind"
    rows = [
        ("local", "all", "all", "", "# docker exec psql, with a password"),
        ("host", "all", SUPERUSER, "127.0.0.1/32", "# tools inside the container"),
        ("host", "all", "all", f"{source}/32", f"# {where} (providers, tunnels)"),
    ]
    for spec in role_specs(settings).values():
        for zone in _source_zones(settings, spec, zones_of):
            for database in spec.databases:
                rows.append(("host", database, spec.name, settings.zone_subnets[zone], f"# {spec.purpose} ({zone})"))
    lines = [
        f"# pg_hba.conf of {settings.project}-{settings.stack}, generated from the stack settings (R-DB-1).",
        "# TYPE  DATABASE      USER        ADDRESS             METHOD",
    ]
    for kind, database, user, address, why in rows:
        lines.append(f"{kind:<7} {database:<13} {user:<11} {address:<19} scram-sha-256  {why}".rstrip())
    return "\n".join(lines) + "\n"


def dsn(role: str, password: pulumi.Input[str], host: str, port: int, database: str) -> pulumi.Output[str]:
    """A libpq URL; always a Pulumi secret because it carries the password."""
    return pulumi.Output.secret(
        pulumi.Output.concat("postgresql://", role, ":", password, "@", host, ":", str(port), "/", database)
    )


@dataclass(frozen=True)
class DatabaseArgs:
    """The roles to create, where the provider reaches Postgres as the superuser, and the running server."""

    roles: Mapping[str, RoleSpec]  # :func:`role_specs`, in creation order
    endpoint: tuple[str, int]  # host and port of the operator bind (or a tunnel's local end)
    connect_timeout_seconds: int
    rotation_epoch: int  # the role passwords rotate with it (R-SEC-4)
    protect: bool  # prod: the databases cannot be deleted by the stack
    postgres: pulumi.Resource  # the server's container or service: the provider dials once it reports healthy
    superuser_password: pulumi.Input[str]


class PlatformDatabases(pulumi.ComponentResource):
    """Databases ``flypotato`` and ``keycloak``, PostGIS, schemas ``app``, ``analytics``, ``migrations`` and
    ``metrics`` owned by the migrator, the login roles of :func:`role_specs`, and their grants — PUBLIC gets nothing."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.specs = dict(args.roles)
        host, port = args.endpoint

        # Gated on the health-checked container (wait=True): the provider must not dial a server still in
        # initdb. sslmode=disable: the path is the host's loopback or an SSH tunnel, and the server has no TLS.
        self.provider = postgresql.Provider(
            f"{name}-provider",
            host=host,
            port=port,
            username=SUPERUSER,
            password=pulumi.Output.secret(args.superuser_password),
            superuser=True,
            sslmode="disable",
            connect_timeout=args.connect_timeout_seconds,
            database=MAINTENANCE_DATABASE,
            expected_version="15",
            max_connections=4,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.postgres]),
        )
        on_server = pulumi.ResourceOptions(parent=self, provider=self.provider)

        self.passwords: dict[str, pulumi.Output[str]] = {}
        self.roles: dict[str, postgresql.Role] = {}
        for spec in self.specs.values():
            secret = generated_password(f"{name}-{spec.name}-password", args.rotation_epoch, parent=self)
            self.passwords[spec.name] = secret.result
            self.roles[spec.name] = postgresql.Role(
                f"{name}-role-{spec.name}",
                name=spec.name,
                login=True,
                password=secret.result,
                connection_limit=spec.connection_limit,
                replication=spec.replication,
                create_database=spec.create_database,
                create_role=False,
                superuser=False,
                inherit=True,
                roles=list(spec.member_of),
                search_paths=list(spec.search_path) or None,
                statement_timeout=spec.statement_timeout_ms or None,
                opts=on_server,
            )

        def database(db_name: str, owner: str) -> postgresql.Database:
            return postgresql.Database(
                f"{name}-{db_name}",
                name=db_name,
                owner=self.roles[owner].name,
                template="template0",
                encoding="UTF8",
                lc_collate="C.UTF-8",
                lc_ctype="C.UTF-8",
                opts=pulumi.ResourceOptions.merge(on_server, pulumi.ResourceOptions(protect=args.protect)),
            )

        self.app_database = database(APP_DATABASE, "migrator")
        self.keycloak_database = database(KEYCLOAK_DATABASE, "keycloak")
        # Created by the superuser: PostGIS is not a trusted extension.
        # PostGIS and the schemas hold what the migrations created (tables, views, geometry columns):
        # dropping them is never Pulumi's job. On delete they are only forgotten and go with their database;
        # a DROP of each during a destroy would race (views across the schemas deadlock) and fail on the
        # columns that use PostGIS types.
        kept_with_database = pulumi.ResourceOptions.merge(on_server, pulumi.ResourceOptions(retain_on_delete=True))
        self.postgis = postgresql.Extension(
            f"{name}-postgis",
            name=POSTGIS,
            database=self.app_database.name,
            schema="public",
            opts=kept_with_database,
        )
        # The restore drill runs as the backup role, which may not CREATE EXTENSION postgis; it clones this
        # template instead (backup/restore.py, BACKUP_DRILL_TEMPLATE). Owned by the superuser.
        self.template_database = postgresql.Database(
            f"{name}-{POSTGIS_TEMPLATE_DATABASE}",
            name=POSTGIS_TEMPLATE_DATABASE,
            owner=SUPERUSER,
            template="template0",
            encoding="UTF8",
            lc_collate="C.UTF-8",
            lc_ctype="C.UTF-8",
            is_template=True,
            allow_connections=True,
            opts=on_server,
        )
        self.template_postgis = postgresql.Extension(
            f"{name}-{POSTGIS_TEMPLATE_DATABASE}-postgis",
            name=POSTGIS,
            database=self.template_database.name,
            schema="public",
            opts=on_server,
        )
        self.schemas = {
            schema: postgresql.Schema(
                f"{name}-schema-{schema}",
                name=schema,
                database=self.app_database.name,
                owner=self.roles["migrator"].name,
                drop_cascade=False,
                opts=kept_with_database,
            )
            for schema in (APP_SCHEMA, ANALYTICS_SCHEMA, VERSION_SCHEMA, METRICS_SCHEMA)
        }

        self.grants: list[pulumi.CustomResource] = []
        self.acl_chains: dict[str, list[pulumi.CustomResource]] = {}
        self._grant_all(name, on_server)
        self.register_outputs({"roles": list(self.specs)})

    # -- grants ------------------------------------------------------------------------------------

    def _chain(self, acl: str, resource_name: str, make: type, opts: pulumi.ResourceOptions, **args: object) -> None:
        """Grants on one ACL (one catalog row: a database, a schema, the tables of a schema, one default-ACL
        entry) wait for each other: concurrent GRANTs on one row fail with "tuple concurrently updated".
        Different rows cannot collide, so their chains run side by side."""
        chain = self.acl_chains.setdefault(acl, [])
        after = pulumi.ResourceOptions(depends_on=chain[-1:])
        resource = make(resource_name, opts=pulumi.ResourceOptions.merge(opts, after), **args)
        chain.append(resource)
        self.grants.append(resource)

    def _grant(
        self,
        acl: str,
        name: str,
        opts: pulumi.ResourceOptions,
        *,
        role: pulumi.Input[str],
        object_type: str,
        database: pulumi.Input[str],
        privileges: Sequence[str],
        schema: pulumi.Input[str] | None = None,
    ) -> None:
        self._chain(
            acl,
            name,
            postgresql.Grant,
            opts,
            role=role,
            object_type=object_type,
            database=database,
            schema=schema,
            privileges=list(privileges),
        )

    def _grant_all(self, name: str, opts: pulumi.ResourceOptions) -> None:
        role = {key: r.name for key, r in self.roles.items()}
        databases: dict[str, pulumi.Input[str]] = {
            APP_DATABASE: self.app_database.name,
            KEYCLOAK_DATABASE: self.keycloak_database.name,
            MAINTENANCE_DATABASE: MAINTENANCE_DATABASE,
            POSTGIS_TEMPLATE_DATABASE: self.template_database.name,
        }
        app_db = databases[APP_DATABASE]
        schema: dict[str, pulumi.Input[str]] = {"public": "public", **{k: v.name for k, v in self.schemas.items()}}

        # PUBLIC gets nothing: no CONNECT/TEMP on any database, no USAGE on the app database's public schema.
        for label, database in databases.items():
            self._grant(
                f"database:{label}",
                f"{name}-revoke-public-{label}-db",
                opts,
                role="public",
                object_type="database",
                database=database,
                privileges=[],
            )
        self._grant(
            "schema:public",
            f"{name}-revoke-public-public-schema",
            opts,
            role="public",
            object_type="schema",
            database=app_db,
            schema="public",
            privileges=[],
        )

        # CONNECT where each role needs it (owners have it implicitly: migrator, keycloak). The backup role
        # dumps every database ("all" in pg_hba), so it connects to each of them, and to template_postgis,
        # which its restore drills clone.
        owners = {("migrator", APP_DATABASE), ("keycloak", KEYCLOAK_DATABASE)}
        for spec in self.specs.values():
            wanted = list(databases) if spec.name == "backup" else [d for d in spec.databases if d in databases]
            for label in wanted:
                if (spec.name, label) not in owners:
                    self._grant(
                        f"database:{label}",
                        f"{name}-connect-{spec.name}-{label}",
                        opts,
                        role=role[spec.name],
                        object_type="database",
                        database=databases[label],
                        privileges=["CONNECT"],
                    )

        # Schemas: PostGIS types and functions live in public; each role sees only its own schema.
        for grantee, target in (
            ("app", "public"),
            ("datalens", "public"),
            ("app", APP_SCHEMA),
            ("app", VERSION_SCHEMA),
            ("datalens", ANALYTICS_SCHEMA),
            ("exporter", METRICS_SCHEMA),
        ):
            if grantee not in role:  # a component given fewer roles grants nothing to the missing ones
                continue
            self._grant(
                f"schema:{target}",
                f"{name}-usage-{target}-{grantee}",
                opts,
                role=role[grantee],
                object_type="schema",
                database=app_db,
                schema=schema[target],
                privileges=["USAGE"],
            )

        # What already exists (re-applied by every `pulumi up`) ...
        existing: tuple[tuple[str, str, str, Sequence[str]], ...] = (
            ("app", APP_SCHEMA, "table", TABLE_DML),
            ("app", APP_SCHEMA, "sequence", SEQUENCE_USE),
            ("app", VERSION_SCHEMA, "table", ("SELECT",)),
            ("datalens", ANALYTICS_SCHEMA, "table", ("SELECT",)),
            # Also what a destroy revokes before it drops the role: DROP ROLE refuses while it holds a right
            # in the app database, and dropping the default privileges takes back none already given.
            ("exporter", METRICS_SCHEMA, "function", ("EXECUTE",)),
        )
        for grantee, target, object_type, privileges in existing:
            if grantee not in role:
                continue
            self._grant(
                f"{object_type}s:{target}",
                f"{name}-{object_type}s-{target}-{grantee}",
                opts,
                role=role[grantee],
                object_type=object_type,
                database=app_db,
                schema=schema[target],
                privileges=privileges,
            )

        # ... and what the migrator creates later: default privileges only cover objects created by the
        # named owner, so the owner is migrator, the role every migration runs as. The last entry takes
        # EXECUTE on the migrator's future functions away from PUBLIC.
        defaults: tuple[tuple[str, str | None, str, Sequence[str]], ...] = (
            ("app", APP_SCHEMA, "table", TABLE_DML),
            ("app", APP_SCHEMA, "sequence", SEQUENCE_USE),
            ("app", APP_SCHEMA, "function", ("EXECUTE",)),
            ("app", VERSION_SCHEMA, "table", ("SELECT",)),
            ("datalens", ANALYTICS_SCHEMA, "table", ("SELECT",)),
            ("datalens", ANALYTICS_SCHEMA, "function", ("EXECUTE",)),
            ("exporter", METRICS_SCHEMA, "function", ("EXECUTE",)),
            ("public", None, "function", ()),
        )
        for grantee, in_schema, object_type, privileges in defaults:
            if grantee != "public" and grantee not in role:
                continue
            self._chain(
                f"default:{in_schema or '*'}:{object_type}",
                f"{name}-default-{object_type}s-{in_schema or 'all'}-{grantee}",
                postgresql.DefaultPrivileges,
                opts,
                role=role.get(grantee, grantee),  # PUBLIC is no role of ours
                database=app_db,
                schema=schema[in_schema] if in_schema else None,
                owner=role["migrator"],
                object_type=object_type,
                privileges=list(privileges),
            )

    # -- connection strings --------------------------------------------------------------------------

    def url(
        self, role: str, *, host: str = SERVICES["postgres"].docker_alias, port: int, database: str = APP_DATABASE
    ) -> pulumi.Output[str]:
        return dsn(role, self.passwords[role], host, port, database)
