"""Alembic: upgrade → downgrade → upgrade is clean, as the migrator role, with pre-existing schemas;
the models and the migrations agree."""

from __future__ import annotations

from alembic import command

from tests.app.conftest import alembic_config, prepare_database
from tests.app.platform import HEAD, alembic_cli
from tests.support.postgres import PostgresCluster

APP_TABLES = "flight_daily_region_stats,flight_hourly_stats,flight_monthly_region_stats,flights,flow_events,regions"
VIEWS = "flights,hourly_stats,region_daily_stats,regions"


def objects(pg: PostgresCluster, db: str) -> tuple[str, str, str]:
    tables = pg.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'app'", db)
    views = pg.psql(
        "SELECT string_agg(viewname, ',' ORDER BY viewname) FROM pg_views WHERE schemaname = 'analytics'", db
    )
    gist = pg.psql(
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
        "WHERE schemaname = 'app' AND indexdef LIKE '%USING gist%'",
        db,
    )
    return tables, views, gist


def test_up_down_up_as_migrator(pg: PostgresCluster) -> None:
    prepare_database(pg, "migrations_cycle")
    cfg = alembic_config(pg.dsn("migrations_cycle", user="migrator"))
    command.upgrade(cfg, "head")
    first = objects(pg, "migrations_cycle")
    assert first == (
        APP_TABLES,
        VIEWS,
        "ix_flights_end_point,ix_flights_start_point,ix_flights_track,ix_regions_geom",
    )
    owners = pg.psql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'app'", "migrations_cycle")
    assert owners == "migrator"
    command.downgrade(cfg, "base")
    assert objects(pg, "migrations_cycle") == ("", "", "")
    command.upgrade(cfg, "head")
    assert objects(pg, "migrations_cycle") == first
    command.check(cfg)  # models and migrations agree (no autogenerate diff)


def test_migrations_create_missing_schemas(pg: PostgresCluster) -> None:
    pg.psql("CREATE DATABASE migrations_fresh")
    pg.psql("CREATE EXTENSION postgis", "migrations_fresh")
    command.upgrade(alembic_config(pg.dsn("migrations_fresh")), "head")
    assert objects(pg, "migrations_fresh")[:2] == (APP_TABLES, VIEWS)


def test_alembic_cli_reads_the_migrator_url_from_settings(pg: PostgresCluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the migration container runs: ``alembic upgrade head`` with the URL from a secret file."""
    prepare_database(pg, "migrations_cli")
    secret = tmp_path / "migrator_url"
    secret.write_text(pg.dsn("migrations_cli", user="migrator") + "\n")
    result = alembic_cli({"FLY_POTATO_MIGRATOR_URL_FILE": str(secret)})
    assert result.returncode == 0, result.stderr
    assert pg.psql("SELECT version_num FROM migrations.alembic_version", "migrations_cli") == HEAD


def test_missing_postgis_is_explained(pg: PostgresCluster) -> None:
    prepare_database(pg, "migrations_nopostgis")
    pg.psql("DROP EXTENSION postgis", "migrations_nopostgis")
    result = alembic_cli({"FLY_POTATO_MIGRATOR_URL": pg.dsn("migrations_nopostgis", user="migrator")})
    assert result.returncode != 0
    assert "CREATE EXTENSION postgis" in result.stderr


def test_an_earlier_releases_version_table_moves_out_of_reach_of_the_app_role(pg: PostgresCluster) -> None:
    """Earlier releases kept alembic_version in schema app, where the app role's DML reached it (R-DB-1)."""
    prepare_database(pg, "migrations_moved")
    cfg = alembic_config(pg.dsn("migrations_moved", user="migrator"))
    command.upgrade(cfg, "0002")
    pg.psql(
        "ALTER TABLE migrations.alembic_version SET SCHEMA app;"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON app.alembic_version TO app;",
        "migrations_moved",
    )
    command.upgrade(cfg, "head")
    assert pg.psql("SELECT version_num FROM migrations.alembic_version", "migrations_moved") == HEAD
    assert pg.psql("SELECT to_regclass('app.alembic_version') IS NULL", "migrations_moved") == "t"
    held = pg.psql(
        "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) FROM information_schema.role_table_grants "
        "WHERE table_schema = 'migrations' AND grantee = 'app'",
        "migrations_moved",
    )
    assert held == "SELECT"
