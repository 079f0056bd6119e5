"""Base backups (``pg_basebackup``) that, with the WAL archive, allow point-in-time restore."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BackupSettings
from .pg import BackupError, run, utc_stamp, write_json_atomic
from .wal import parse_lsn, segment_name

log = logging.getLogger("backup")

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
ARCHIVE_WAIT_SECONDS = 60


def _wait_archived(archive_dir: Path, segment: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (archive_dir / f"{segment}.gz").exists() or (archive_dir / segment).exists():
            return True
        time.sleep(0.1)
    return False


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    manifest: dict[str, Any]

    @property
    def finished_at(self) -> float:
        return float(self.manifest["finished_at"])

    @property
    def start_segment(self) -> str:
        return str(self.manifest["start_wal_segment"])


def take_base_backup(settings: BackupSettings, *, now: float | None = None) -> BaseBackup:
    """``pg_basebackup`` as compressed tar with the WAL it needs streamed alongside."""
    stamp = utc_stamp(now)
    settings.base_dir.mkdir(parents=True, exist_ok=True)
    final = settings.base_dir / stamp
    if final.exists():
        raise BackupError(f"base backup {final} already exists; wait a second and run again.")
    partial = settings.base_dir / f"{PARTIAL_PREFIX}{stamp}"
    started = time.time()
    try:
        run(
            [
                "pg_basebackup",
                "-D",
                str(partial),
                "-Ft",
                "-z",
                "-Xstream",
                "--checkpoint=fast",
                f"--label=fly-potato-{stamp}",
                "--no-password",
            ],
            settings.pg,
            what="pg_basebackup",
        )
        backup_manifest = json.loads((partial / "backup_manifest").read_text())
        wal_range = backup_manifest["WAL-Ranges"][0]
        timeline = int(wal_range["Timeline"])
        start_lsn = parse_lsn(wal_range["Start-LSN"])
        manifest = {
            "stamp": stamp,
            "started_at": started,
            "finished_at": time.time(),
            "timeline": timeline,
            "start_lsn": wal_range["Start-LSN"],
            "end_lsn": wal_range["End-LSN"],
            "start_wal_segment": segment_name(timeline, start_lsn, settings.wal_segment_bytes),
            "size_bytes": sum(p.stat().st_size for p in partial.iterdir() if p.is_file()),
        }
        write_json_atomic(partial / MANIFEST, manifest)
        os.rename(partial, final)
        end_segment = segment_name(timeline, parse_lsn(wal_range["End-LSN"]), settings.wal_segment_bytes)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    # pg_basebackup does not wait for the archive; the WAL check right after it would see a false gap.
    if not _wait_archived(settings.wal_archive_dir, end_segment, ARCHIVE_WAIT_SECONDS):
        log.warning(
            "WAL segment %s of base backup %s is not archived after %d s", end_segment, stamp, ARCHIVE_WAIT_SECONDS
        )
    log.info(
        "base backup %s complete: %d bytes, starts at WAL %s",
        stamp,
        manifest["size_bytes"],
        manifest["start_wal_segment"],
    )
    return BaseBackup(final, manifest)


def list_base_backups(settings: BackupSettings) -> list[BaseBackup]:
    """Complete base backups, oldest first."""
    if not settings.base_dir.is_dir():
        return []
    found = []
    for path in sorted(settings.base_dir.iterdir()):
        manifest = path / MANIFEST
        if path.is_dir() and not path.name.startswith(".") and manifest.is_file():
            try:
                found.append(BaseBackup(path, json.loads(manifest.read_text())))
            except ValueError:
                log.warning("ignoring base backup %s: its %s is not valid JSON", path, MANIFEST)
    return found


def base_backup_for(settings: BackupSettings, target_epoch: float | None) -> BaseBackup:
    """The newest base backup that finished before ``target_epoch`` (the newest of all if None)."""
    backups = list_base_backups(settings)
    if target_epoch is not None:
        backups = [b for b in backups if b.finished_at <= target_epoch]
    if not backups:
        when = "" if target_epoch is None else " that finished before the target time"
        raise BackupError(f"no base backup{when} in {settings.base_dir}; point-in-time restore needs one.")
    return backups[-1]
