"""The production role setup: backup is no superuser (pg_read_all_data, REPLICATION, CREATEDB)."""

from __future__ import annotations

import dataclasses
import io
import sys

import pytest

from backup.__main__ import main
from backup.basebackup import take_base_backup
from backup.config import BackupSettings
from backup.dumps import run_dump_set
from backup.pg import BackupError, is_superuser
from backup.restore import run_restore_drill
from tests.backup.conftest import table_digest
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

ROLE = "backup"


@pytest.fixture
def backup_role(settings: BackupSettings, archiving_cluster: PostgresCluster) -> BackupSettings:
    """Settings that connect as a role like components/platform_databases.py's ``backup`` role."""
    if archiving_cluster.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'backup'") == "0":
        archiving_cluster.psql("CREATE ROLE backup LOGIN REPLICATION CREATEDB IN ROLE pg_read_all_data")
    if archiving_cluster.psql("SELECT count(*) FROM pg_database WHERE datname = 'template_postgis'") == "0":
        archiving_cluster.psql("CREATE DATABASE template_postgis IS_TEMPLATE true")
        archiving_cluster.psql("CREATE EXTENSION postgis", dbname="template_postgis")
    return dataclasses.replace(settings, pg=dataclasses.replace(settings.pg, user=ROLE))


def test_the_backup_role_dumps_drills_and_takes_base_backups(
    backup_role: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    assert not is_superuser(backup_role.pg)
    dump_set = run_dump_set(backup_role)

    assert dump_set.manifest["globals"]["role_passwords"] is False
    globals_sql = (dump_set.path / "globals.sql").read_text()
    assert f"CREATE ROLE {ROLE};" in globals_sql and "PASSWORD" not in globals_sql
    assert flights_db in dump_set.manifest["databases"]

    result = run_restore_drill(backup_role, databases=[flights_db])
    assert result["databases"][flights_db]["geometry_columns"] == 1
    assert archiving_cluster.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'drill\\_%'") == "0"

    assert take_base_backup(backup_role).start_segment


def test_without_the_template_the_drill_says_what_to_create(backup_role: BackupSettings, flights_db: str) -> None:
    settings = dataclasses.replace(backup_role, drill_template="template_missing")
    run_dump_set(settings, databases=[flights_db])
    with pytest.raises(BackupError, match="CREATE DATABASE template_missing IS_TEMPLATE true"):
        run_restore_drill(settings)


def test_production_restore_runs_as_the_superuser_with_the_password_from_stdin(
    backup_role: BackupSettings,
    flights_db: str,
    archiving_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archiving_cluster.psql("ALTER TABLE ops.notes OWNER TO backup", dbname=flights_db)
    before = table_digest(archiving_cluster, flights_db)
    run_dump_set(backup_role, databases=[flights_db])
    for name, value in {
        "PGHOST": backup_role.pg.host,
        "PGPORT": str(backup_role.pg.port),
        "PGUSER": ROLE,
        "BACKUP_DIR": str(backup_role.backup_dir),
        "BACKUP_WAL_ARCHIVE_DIR": str(backup_role.wal_archive_dir),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("superuser-password\n"))
    restored = f"{flights_db}_prod"

    argv = ["restore", "--as", "postgres", "--password-stdin", "--database", flights_db, "--into", restored]
    assert main(argv) == 0
    try:
        assert table_digest(archiving_cluster, restored) == before
        # Faithful: owners come back (the drill's unprivileged restore would make backup own everything).
        owners = archiving_cluster.psql(
            "SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables "
            "WHERE tablename IN ('flights', 'notes')",
            dbname=restored,
        )
        assert owners == "flights:postgres,notes:backup"
    finally:
        archiving_cluster.drop_database(restored)
