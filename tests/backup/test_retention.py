"""Retention keeps exactly the right files; time is simulated through file mtimes and an injected clock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backup.config import BackupSettings, PgTarget
from backup.retention import DAY, plan_prune, prune

NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15)


def _age(path: Path, days: float) -> None:
    stamp = NOW - days * DAY
    os.utime(path, (stamp, stamp))


def _settings(tmp_path: Path, dump_days: int = 14, wal_days: int = 7) -> BackupSettings:
    return BackupSettings(
        pg=PgTarget(),
        backup_dir=tmp_path / "b",
        wal_archive_dir=tmp_path / "wal",
        dump_retention_days=dump_days,
        wal_retention_days=wal_days,
    )


def _dump_set(settings: BackupSettings, name: str, age_days: float, *, complete: bool = True) -> Path:
    path = settings.dumps_dir / name
    path.mkdir(parents=True)
    (path / "app.dump").write_bytes(b"PGDMP")
    if complete:
        (path / "manifest.json").write_text("{}")
        _age(path / "manifest.json", age_days)
    _age(path / "app.dump", age_days)
    _age(path, age_days)
    return path


def _base(settings: BackupSettings, name: str, age_days: float, start_segment: str) -> Path:
    path = settings.base_dir / name
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"start_wal_segment": start_segment, "finished_at": 0}))
    _age(path / "manifest.json", age_days)
    return path


def _wal(settings: BackupSettings, name: str, age_days: float) -> Path:
    settings.wal_archive_dir.mkdir(parents=True, exist_ok=True)
    path = settings.wal_archive_dir / name
    path.write_bytes(b"x")
    _age(path, age_days)
    return path


def test_dump_sets_older_than_retention_are_pruned(tmp_path: Path) -> None:
    s = _settings(tmp_path, dump_days=14)
    ages = {"20270101T023000Z": 14.5, "20270102T023000Z": 13.5, "20261201T023000Z": 45, "20270114T023000Z": 1}
    for name, age in ages.items():
        _dump_set(s, name, age)

    plan = prune(s, now=NOW)

    assert sorted(p.name for p in plan.dump_sets) == ["20261201T023000Z", "20270101T023000Z"]
    assert sorted(p.name for p in s.dumps_dir.iterdir()) == ["20270102T023000Z", "20270114T023000Z"]


def test_the_newest_dump_set_survives_even_when_backups_stopped(tmp_path: Path) -> None:
    s = _settings(tmp_path, dump_days=14)
    _dump_set(s, "20261101T023000Z", 70)
    _dump_set(s, "20261102T023000Z", 69)
    _dump_set(s, "20261103T023000Z", 68, complete=False)  # incomplete: never counts as the newest

    prune(s, now=NOW)

    assert [p.name for p in s.dumps_dir.iterdir()] == ["20261102T023000Z"]


def test_a_longer_retention_keeps_more(tmp_path: Path) -> None:
    s = _settings(tmp_path, dump_days=30)
    for name, age in {"a": 29.9, "b": 30.1, "c": 1}.items():
        _dump_set(s, name, age)
    assert [p.name for p in plan_prune(s, now=NOW).dump_sets] == ["b"]


def test_wal_is_pruned_by_age_but_never_what_a_kept_base_backup_needs(tmp_path: Path) -> None:
    s = _settings(tmp_path, wal_days=7)
    _base(s, "old", 10, "000000010000000000000010")  # outside the WAL window: pruned
    _base(s, "kept", 6, "000000010000000000000020")  # oldest kept base backup
    _base(s, "new", 1, "000000010000000000000030")
    old = [_wal(s, f"0000000100000000000000{n:02X}.gz", 9) for n in (0x0F, 0x10, 0x1F)]
    backup_label = _wal(s, "00000001000000000000001F.00000028.backup.gz", 9)
    needed_but_old = _wal(s, "000000010000000000000020.gz", 8)  # needed by "kept" despite its age
    recent = _wal(s, "000000010000000000000021.gz", 6.9)
    history = _wal(s, "00000002.history.gz", 30)
    stray = _wal(s, "not-a-wal-file", 30)

    plan = prune(s, now=NOW)

    assert [p.name for p in plan.base_backups] == ["old"]
    assert sorted(plan.wal_files) == sorted([*old, backup_label])
    assert sorted(p.name for p in s.wal_archive_dir.iterdir()) == sorted(
        [needed_but_old.name, recent.name, history.name, stray.name]
    )


def test_the_newest_base_backup_and_its_wal_survive_a_long_outage(tmp_path: Path) -> None:
    s = _settings(tmp_path, wal_days=7)
    _base(s, "only", 40, "000000010000000000000040")
    before = _wal(s, "00000001000000000000003F.gz", 41)
    after = _wal(s, "000000010000000000000040.gz", 40)

    plan = prune(s, now=NOW)

    assert plan.base_backups == [] and plan.wal_files == [before]
    assert after.exists()


def test_stale_partial_runs_are_removed_and_fresh_ones_left(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    s.dumps_dir.mkdir(parents=True)
    stale = s.dumps_dir / ".partial-20270101T023000Z"
    fresh = s.dumps_dir / ".partial-20270115T000000Z"
    for path, age in ((stale, 3), (fresh, 0.1)):
        path.mkdir()
        _age(path, age)

    stale_tmp = _wal(s, "000000010000000000000001.gz.tmp", 3)
    fresh_tmp = _wal(s, "000000010000000000000002.gz.tmp", 0)

    plan = prune(s, now=NOW)

    assert plan.partials == [stale, stale_tmp]
    assert fresh.exists() and fresh_tmp.exists() and not stale.exists() and not stale_tmp.exists()


def test_dry_run_deletes_nothing(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    old = _dump_set(s, "old", 40)
    _dump_set(s, "new", 1)
    assert prune(s, now=NOW, dry_run=True).dump_sets == [old]
    assert old.exists()


@pytest.mark.parametrize("days", [13, 31])
def test_clock_injection_is_the_only_time_source(tmp_path: Path, days: int) -> None:
    s = _settings(tmp_path, dump_days=14)
    _dump_set(s, "x", 0)
    _dump_set(s, "y", 0)
    pruned = plan_prune(s, now=NOW + days * DAY).dump_sets
    assert [p.name for p in pruned] == ([] if days == 13 else ["x"])
