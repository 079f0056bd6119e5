"""Point-in-time restore from pg_basebackup + archived WAL, on a real PostgreSQL 15."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from backup.basebackup import take_base_backup
from backup.config import BackupSettings
from backup.pg import BackupError
from backup.pitr import parse_target_time, prepare_recovery, recovered_server, run_pitr_drill
from backup.service import check_wal_archive
from backup.wal import check_continuity
from tests.backup.conftest import wait_archived
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

RUN_AS = "postgres" if os.geteuid() == 0 else None  # the server refuses to run as root


def _switch_and_wait(cluster: PostgresCluster) -> None:
    cluster.psql("SELECT txid_current()")  # some WAL, or pg_switch_wal() has nothing to switch away from
    segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_archived(cluster, segment)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A scratch directory the server user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pitr-test-"))
    if RUN_AS:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_pitr_between_two_inserts_gives_exactly_the_first(
    settings: BackupSettings, archiving_cluster: PostgresCluster, server_dir: Path
) -> None:
    db = "pitr_probe"
    archiving_cluster.drop_database(db)
    archiving_cluster.create_database(db)
    archiving_cluster.psql("CREATE TABLE events (id int PRIMARY KEY, note text)", dbname=db)
    base = take_base_backup(settings)

    archiving_cluster.psql("INSERT INTO events VALUES (1, 'first')", dbname=db)
    between = archiving_cluster.psql("SELECT clock_timestamp()")
    time.sleep(0.3)
    archiving_cluster.psql("INSERT INTO events VALUES (2, 'second')", dbname=db)
    _switch_and_wait(archiving_cluster)

    report = check_continuity(settings.wal_archive_dir, base.start_segment, settings.wal_segment_bytes)
    assert report.ok, report.missing

    data_dir = server_dir / "restored"
    prepare_recovery(base, data_dir, settings.wal_archive_dir, parse_target_time(between), archive_mode_off=True)
    with recovered_server(data_dir, settings.pg_bin, user="postgres", run_as=RUN_AS) as server:  # type: ignore[arg-type]
        assert server.query("SELECT id, note FROM events ORDER BY id", db) == [["1", "first"]]

    # Without a target everything archived is replayed: both rows.
    full_dir = server_dir / "full"
    prepare_recovery(base, full_dir, settings.wal_archive_dir, None, archive_mode_off=True)
    with recovered_server(full_dir, settings.pg_bin, user="postgres", run_as=RUN_AS) as server:  # type: ignore[arg-type]
        assert server.query("SELECT id FROM events ORDER BY id", db) == [["1"], ["2"]]
    archiving_cluster.drop_database(db)


def test_pitr_drill_records_its_result(
    settings: BackupSettings, archiving_cluster: PostgresCluster, server_dir: Path
) -> None:
    take_base_backup(settings)
    archiving_cluster.psql(
        "CREATE TABLE IF NOT EXISTS drill_marker (at timestamptz); INSERT INTO drill_marker VALUES (now())"
    )
    _switch_and_wait(archiving_cluster)

    result = run_pitr_drill(settings, run_as=RUN_AS, workdir=server_dir)
    assert result["ok"] and result["databases"] >= 1
    assert (settings.drills_dir / "pitr.json").is_file()


def test_pitr_to_a_time_before_any_base_backup_is_refused(settings: BackupSettings) -> None:
    base = take_base_backup(settings)
    too_early = parse_target_time("2000-01-01T00:00:00Z")
    with pytest.raises(BackupError, match="no base backup that finished before the target time"):
        run_pitr_drill(settings, too_early, run_as=RUN_AS)
    assert base.path.is_dir()


def test_pitr_to_a_time_after_the_archive_fails_loudly(
    settings: BackupSettings, archiving_cluster: PostgresCluster, server_dir: Path
) -> None:
    base = take_base_backup(settings)
    _switch_and_wait(archiving_cluster)
    future = parse_target_time(archiving_cluster.psql("SELECT now()")) + timedelta(hours=1)
    assert base.finished_at < future.timestamp()
    with pytest.raises(BackupError, match="no commit after the target time"):
        run_pitr_drill(settings, future, run_as=RUN_AS, workdir=server_dir)


def test_a_gap_in_the_wal_archive_fails_the_daily_check(
    settings: BackupSettings, archiving_cluster: PostgresCluster, tmp_path: Path
) -> None:
    base = take_base_backup(settings)
    for _ in range(3):
        _switch_and_wait(archiving_cluster)
    copy = tmp_path / "archive-copy"
    shutil.copytree(settings.wal_archive_dir, copy)
    checked = dataclasses.replace(settings, wal_archive_dir=copy)
    assert check_wal_archive(checked)["first"] == base.start_segment

    segments = sorted(p for p in copy.iterdir() if p.name.endswith(".gz") and "." not in p.name[:-3])
    hole = next(p for p in segments if p.name[:24] > base.start_segment)
    hole.unlink()
    with pytest.raises(BackupError, match=f"misses 1 segment\\(s\\) after base backup .*{hole.name[:24]}"):
        check_wal_archive(checked)
