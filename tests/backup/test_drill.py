"""The restore drill passes on a good dump set and fails loudly on a corrupt, missing or wrong one."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from backup.__main__ import main
from backup.config import BackupSettings
from backup.dumps import DumpSet, run_dump_set
from backup.pg import BackupError, sha256_of, write_json_atomic
from backup.restore import run_restore_drill
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


def _no_scratch_left(cluster: PostgresCluster) -> bool:
    return cluster.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'drill\\_%'") == "0"


def _rewrite_checksum(dump_set: DumpSet, database: str) -> None:
    """Make the manifest agree with a tampered file, so only pg_restore itself can notice."""
    manifest = dump_set.manifest
    manifest["databases"][database]["sha256"] = sha256_of(dump_set.dump_path(database))
    write_json_atomic(dump_set.path / "manifest.json", manifest)


def test_drill_restores_and_verifies_the_newest_set(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    run_dump_set(settings, databases=[flights_db])
    result = run_restore_drill(settings)

    assert result["ok"] is True
    assert result["databases"][flights_db]["geometry_columns"] == 1
    assert result["databases"][flights_db]["rows"] >= 503  # flights + notes (+ spatial_ref_sys)
    assert json.loads((settings.drills_dir / "dump.json").read_text())["dump_set"] == result["dump_set"]
    assert _no_scratch_left(archiving_cluster)


def test_drill_without_any_dump_fails(settings: BackupSettings) -> None:
    with pytest.raises(BackupError, match="no dump set"):
        run_restore_drill(settings)


def test_drill_on_missing_dump_file_fails(settings: BackupSettings, flights_db: str) -> None:
    dump_set = run_dump_set(settings, databases=[flights_db])
    dump_set.dump_path(flights_db).unlink()
    with pytest.raises(BackupError, match=f"dump of database {flights_db} is missing"):
        run_restore_drill(settings)


def test_drill_on_flipped_bytes_fails_on_checksum(settings: BackupSettings, flights_db: str) -> None:
    dump_set = run_dump_set(settings, databases=[flights_db])
    path = dump_set.dump_path(flights_db)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="is corrupt"):
        run_restore_drill(settings)


def test_drill_on_truncated_dump_fails_in_pg_restore(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    dump_set = run_dump_set(settings, databases=[flights_db])
    path = dump_set.dump_path(flights_db)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _rewrite_checksum(dump_set, flights_db)
    with pytest.raises(BackupError, match="pg_restore of database"):
        run_restore_drill(settings)
    assert _no_scratch_left(archiving_cluster)


def test_drill_on_incomplete_newest_set_fails_instead_of_falling_back(
    settings: BackupSettings, flights_db: str
) -> None:
    good = run_dump_set(settings, databases=[flights_db])
    broken = settings.dumps_dir / "29991231T000000Z"
    shutil.copytree(good.path, broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(BackupError, match="incomplete or damaged"):
        run_restore_drill(settings)


def test_drill_detects_row_count_mismatch(settings: BackupSettings, flights_db: str) -> None:
    dump_set = run_dump_set(settings, databases=[flights_db])
    db_manifest_path = dump_set.path / dump_set.manifest["databases"][flights_db]["manifest"]
    db_manifest = json.loads(db_manifest_path.read_text())
    db_manifest["row_counts"]["public.flights"] = 501
    write_json_atomic(db_manifest_path, db_manifest)
    with pytest.raises(BackupError, match=r"public\.flights has 500 rows after restore, 501 at dump time"):
        run_restore_drill(settings)


def test_drill_detects_invalid_geometry(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    # A self-intersecting "bow-tie" polygon is not valid (ST_IsValid = false).
    archiving_cluster.psql(
        "CREATE TABLE zones (id int PRIMARY KEY, area geometry(Polygon, 4326));"
        "INSERT INTO zones VALUES (1, ST_GeomFromText('POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))', 4326));",
        dbname=flights_db,
    )
    run_dump_set(settings, databases=[flights_db])
    with pytest.raises(BackupError, match=r"1 invalid geometries in public.zones.area \(ST_IsValid\)"):
        run_restore_drill(settings)


def test_drill_command_exits_non_zero_and_records_the_failure(
    settings: BackupSettings, flights_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dump_set = run_dump_set(settings, databases=[flights_db])
    dump_set.dump_path(flights_db).write_bytes(b"not a dump")
    monkeypatch.setenv("PGHOST", settings.pg.host)
    monkeypatch.setenv("PGPORT", str(settings.pg.port))
    monkeypatch.setenv("PGUSER", settings.pg.user)
    monkeypatch.setenv("BACKUP_DIR", str(settings.backup_dir))
    monkeypatch.setenv("BACKUP_WAL_ARCHIVE_DIR", str(settings.wal_archive_dir))

    assert main(["drill"]) == 1
    failure = json.loads(Path(settings.state_dir / "drill.failure.json").read_text())
    assert "is corrupt" in failure["error"]
    assert 'backup_job_last_run_ok{job="drill"} 0' in _metrics(main, capsys)


def _metrics(entry, capsys: pytest.CaptureFixture[str]) -> str:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert entry(["metrics"]) == 0
    return capsys.readouterr().out


def test_counts_come_from_the_dump_snapshot_while_writes_continue(
    settings: BackupSettings, flights_db: str, archiving_cluster: PostgresCluster
) -> None:
    """Rows committed during the dump are in neither the dump nor the manifest, so the drill still agrees."""
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            archiving_cluster.psql(
                "INSERT INTO ops.notes (body) SELECT 'during' FROM generate_series(1, 50)", flights_db
            )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        dump_set = run_dump_set(settings, databases=[flights_db])
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()

    recorded = json.loads((dump_set.path / f"{flights_db}.manifest.json").read_text())["row_counts"]["ops.notes"]
    final = int(archiving_cluster.psql("SELECT count(*) FROM ops.notes", flights_db))
    assert 3 < recorded < final
    assert run_restore_drill(settings)["databases"][flights_db]["rows"] >= recorded
