"""Alembic environment: async (asyncpg), connecting as the migrator role.

The URL comes from ``sqlalchemy.url`` when a caller set it (tests), else from ``migrator_url`` of
:class:`app.config.MigratorSettings` (the migration container is given nothing else). The ``app``,
``analytics``, ``migrations`` and ``metrics`` schemas may already exist (created and owned by the migrator
role in the real deployment); they are created only when missing, so the migrator needs no CREATE privilege
on the database when they exist. PostGIS must be installed in the database beforehand by a superuser (it is
not a trusted extension).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app import models  # noqa: F401 - registers the tables on Base.metadata
from app.config import get_migrator_settings, to_asyncpg_url
from app.db import ANALYTICS_SCHEMA, APP_SCHEMA, METRICS_SCHEMA, VERSION_SCHEMA, Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata
VERSION_TABLE_SCHEMA = VERSION_SCHEMA  # "migrations", as PROTECT_VERSION_TABLE and the app's readiness name it


def _url() -> str:
    explicit = config.get_main_option("sqlalchemy.url")
    if explicit:
        return to_asyncpg_url(explicit)
    return get_migrator_settings().async_migrator_url()


def _prepare(connection: Connection) -> None:
    if connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).first() is None:
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION postgis"))
        except Exception as exc:
            raise SystemExit(
                "The PostGIS extension is missing and the migrator role cannot create it; run "
                "`CREATE EXTENSION postgis;` as a superuser in this database, then migrate again."
            ) from exc
    for schema in (APP_SCHEMA, ANALYTICS_SCHEMA, VERSION_SCHEMA, METRICS_SCHEMA):
        exists = connection.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
        if exists is None:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    # Earlier releases kept the version table in schema app, where the app role's DML reaches it.
    moved = connection.execute(
        text("SELECT to_regclass(:old) IS NOT NULL AND to_regclass(:new) IS NULL"),
        {"old": f"{APP_SCHEMA}.alembic_version", "new": f"{VERSION_SCHEMA}.alembic_version"},
    ).scalar()
    if moved:
        connection.execute(text(f'ALTER TABLE "{APP_SCHEMA}".alembic_version SET SCHEMA "{VERSION_SCHEMA}"'))
    connection.commit()


# Nobody but the version table's owner (the migrator) may write it, whatever grants reached it (R-DB-1).
PROTECT_VERSION_TABLE = """
DO $$
DECLARE grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
    FROM pg_class c
    CROSS JOIN LATERAL aclexplode(c.relacl) acl
    LEFT JOIN pg_roles r ON r.oid = acl.grantee
    WHERE c.oid = 'migrations.alembic_version'::regclass AND acl.grantee <> c.relowner
  LOOP
    EXECUTE format(
      'REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON migrations.alembic_version FROM %s', grantee
    );
  END LOOP;
END $$;
"""


def _protect_version_table(connection: Connection) -> None:
    connection.execute(text(PROTECT_VERSION_TABLE))
    connection.commit()


def _configure(connection: Connection | None = None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=VERSION_TABLE_SCHEMA,
        include_schemas=True,
        include_object=alembic_helpers.include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _prepare(connection)
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
    _protect_version_table(connection)


async def run_migrations_online() -> None:
    engine = create_async_engine(
        _url(),
        poolclass=pool.NullPool,
        # search_path without "app": reflection must see app tables schema-qualified, as the models declare them.
        connect_args={"server_settings": {"search_path": "public", "application_name": "fly-potato-migrate"}},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
