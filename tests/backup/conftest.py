"""Fixtures for the backup tests: a real PostgreSQL 15 (+ PostGIS) cluster that archives its WAL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup.config import BackupSettings, PgTarget
from backup.wal import archive_command, bare_name, wal_files
from tests.support.postgres import PostgresCluster, PostgresNotInstalled, postgis_available

ARCHIVE_TIMEOUT = 60


@pytest.fixture(scope="session")
def archiving_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the session, configured like production's WAL archiving."""
    try:
        cluster = PostgresCluster()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    if not postgis_available(cluster.pg_bin):
        pytest.fail("PostGIS is not installed; run scripts/deps/postgres.sh.", pytrace=False)
    archive = cluster.make_dir("wal-archive")
    cluster.settings.update(
        wal_level="replica",
        archive_mode="on",
        archive_command=archive_command(archive),
        archive_timeout=ARCHIVE_TIMEOUT,
    )
    cluster.archive_dir = archive  # type: ignore[attr-defined]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def settings(archiving_cluster: PostgresCluster, tmp_path: Path) -> BackupSettings:
    return BackupSettings(
        pg=PgTarget(host=archiving_cluster.host, port=archiving_cluster.port, user=archiving_cluster.superuser),
        backup_dir=tmp_path / "backups",
        wal_archive_dir=archiving_cluster.archive_dir,  # type: ignore[attr-defined]
        archive_timeout_seconds=ARCHIVE_TIMEOUT,
        pg_bin=archiving_cluster.pg_bin,
    )


FLIGHTS_TEMPLATE = "flights_template"


@pytest.fixture(scope="session")
def flights_template(archiving_cluster: PostgresCluster) -> str:
    """A PostGIS database with a small flights table (valid geometries) and a second schema, built once."""
    archiving_cluster.create_database(FLIGHTS_TEMPLATE)
    archiving_cluster.psql(
        """
        CREATE EXTENSION postgis;
        CREATE TABLE flights (
            id bigint PRIMARY KEY,
            callsign text NOT NULL,
            departed_at timestamptz NOT NULL,
            track geometry(LineString, 4326) NOT NULL
        );
        INSERT INTO flights
        SELECT g, 'FP' || g, timestamptz '2025-01-01' + g * interval '1 minute',
               ST_SetSRID(ST_MakeLine(ST_MakePoint(g % 180, g % 80), ST_MakePoint(g % 180 + 1, g % 80 + 1)), 4326)
        FROM generate_series(1, 500) g;
        CREATE SCHEMA ops;
        CREATE TABLE ops.notes (id serial PRIMARY KEY, body text);
        INSERT INTO ops.notes (body) VALUES ('one'), ('two'), ('three');
        """,
        dbname=FLIGHTS_TEMPLATE,
    )
    # A template is not dumped (datistemplate), so only the per-test copies appear in dump sets.
    archiving_cluster.psql(f"ALTER DATABASE {FLIGHTS_TEMPLATE} IS_TEMPLATE true")
    return FLIGHTS_TEMPLATE


@pytest.fixture
def flights_db(
    archiving_cluster: PostgresCluster, flights_template: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh copy of the flights database for one test."""
    name = f"flights_{request.node.name[:40].lower().replace('[', '_').replace(']', '_')}"
    archiving_cluster.drop_database(name)
    archiving_cluster.create_database(name, template=flights_template)
    yield name
    archiving_cluster.drop_database(name)


def table_digest(cluster: PostgresCluster, dbname: str) -> dict[str, str]:
    """md5 of every user table's rows in primary-key order: equal digests mean identical data."""
    tables = cluster.psql(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        dbname=dbname,
    ).splitlines()
    return {
        t: cluster.psql(
            f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x",
            dbname=dbname,
        )
        for t in tables
    }


def wait_archived(cluster: PostgresCluster, segment: str, timeout: float = 30.0) -> float:
    """Wait until ``segment`` is in the archive; return how long it took."""
    archive: Path = cluster.archive_dir  # type: ignore[attr-defined]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(bare_name(p) == segment for p in wal_files(archive)):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"WAL segment {segment} was not archived within {timeout} s:\n{cluster.log_tail()}")
