"""Backup → change → restore → identical, on a real PostgreSQL 15 + PostGIS."""

from __future__ import annotations

import json

import pytest

from backup.config import BackupSettings
from backup.dumps import latest_dump_set, run_dump_set
from backup.restore import restore_dump
from tests.backup.conftest import table_digest
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


def test_dump_set_has_globals_every_database_and_manifests(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    dump_set = run_dump_set(settings)

    assert dump_set.path.parent == settings.dumps_dir and not dump_set.path.name.startswith(".")
    assert "CREATE ROLE postgres" in (dump_set.path / "globals.sql").read_text()
    assert {flights_db, "postgres"} <= set(dump_set.manifest["databases"])
    entry = dump_set.manifest["databases"][flights_db]
    db_manifest = json.loads((dump_set.path / entry["manifest"]).read_text())
    assert db_manifest["row_counts"]["public.flights"] == 500
    assert db_manifest["row_counts"]["ops.notes"] == 3
    assert db_manifest["geometry_columns"] == [{"schema": "public", "table": "flights", "column": "track"}]
    assert (dump_set.path / entry["dump"]).read_bytes()[:5] == b"PGDMP"  # custom format
    assert latest_dump_set(settings).path == dump_set.path


def test_restore_after_changes_gives_the_data_as_dumped(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    before = table_digest(archiving_cluster, flights_db)
    dump_set = run_dump_set(settings, databases=[flights_db])

    archiving_cluster.psql(
        "DELETE FROM flights WHERE id <= 100; UPDATE flights SET callsign = 'XX' WHERE id = 200;"
        "INSERT INTO ops.notes (body) VALUES ('after the dump'); TRUNCATE ops.notes;",
        dbname=flights_db,
    )
    assert table_digest(archiving_cluster, flights_db) != before

    restored = f"{flights_db}_restored"
    restore_dump(settings, dump_set, flights_db, restored, replace=True)
    try:
        assert table_digest(archiving_cluster, restored) == before
    finally:
        archiving_cluster.drop_database(restored)

    # Restoring over the changed database itself (the runbook's procedure) also gives it back.
    restore_dump(settings, dump_set, flights_db, flights_db, replace=True)
    assert table_digest(archiving_cluster, flights_db) == before
    assert archiving_cluster.psql("SELECT count(*) FROM flights WHERE NOT ST_IsValid(track)", dbname=flights_db) == "0"


def test_globals_restore_recreates_roles(settings: BackupSettings, archiving_cluster: PostgresCluster) -> None:
    archiving_cluster.psql("DROP ROLE IF EXISTS backup_probe; CREATE ROLE backup_probe LOGIN CONNECTION LIMIT 3")
    dump_set = run_dump_set(settings, databases=["postgres"])
    archiving_cluster.psql("DROP ROLE backup_probe")

    statements = (dump_set.path / "globals.sql").read_text()
    assert "CREATE ROLE backup_probe" in statements
    archiving_cluster.psql(
        "\n".join(line for line in statements.splitlines() if "backup_probe" in line and not line.startswith("--"))
    )
    assert archiving_cluster.psql("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'backup_probe'") == "3"
    archiving_cluster.psql("DROP ROLE backup_probe")
