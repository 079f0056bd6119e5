"""Retention (R-DB-2): dump sets 14–30 days, base backups and WAL 7–14 days, judged by file timestamps.

``now`` is injectable so tests can simulate time. Rules that keep restores possible whatever the clock:
the newest dump set and the newest base backup are never deleted, and no WAL segment that a kept base
backup needs (at or after its start segment) is deleted.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .basebackup import MANIFEST as BASE_MANIFEST
from .basebackup import list_base_backups
from .config import BackupSettings
from .dumps import MANIFEST as DUMP_MANIFEST
from .dumps import PARTIAL_PREFIX, list_dump_sets
from .wal import SEGMENT_RE, bare_name, wal_files

log = logging.getLogger("backup")

DAY = 86400.0
STALE_PARTIAL_SECONDS = 2 * DAY  # an interrupted run leaves .partial-* behind


@dataclass
class PrunePlan:
    dump_sets: list[Path] = field(default_factory=list)
    base_backups: list[Path] = field(default_factory=list)
    wal_files: list[Path] = field(default_factory=list)
    partials: list[Path] = field(default_factory=list)

    @property
    def all(self) -> list[Path]:
        return [*self.dump_sets, *self.base_backups, *self.wal_files, *self.partials]


def _timestamp(path: Path) -> float:
    """A dump set's or base backup's time is its manifest's mtime (when it completed); a file's is its own."""
    for name in (DUMP_MANIFEST, BASE_MANIFEST):
        if path.is_dir() and (path / name).is_file():
            return (path / name).stat().st_mtime
    return path.stat().st_mtime


def plan_prune(settings: BackupSettings, now: float | None = None) -> PrunePlan:
    now = time.time() if now is None else now
    plan = PrunePlan()

    dump_cutoff = now - settings.dump_retention_days * DAY
    complete_sets = [p for p in list_dump_sets(settings) if (p / DUMP_MANIFEST).is_file()]
    newest_set = max(complete_sets, key=lambda p: (_timestamp(p), p.name), default=None)
    for path in list_dump_sets(settings):
        if path != newest_set and _timestamp(path) < dump_cutoff:
            plan.dump_sets.append(path)

    wal_cutoff = now - settings.wal_retention_days * DAY
    bases = sorted(list_base_backups(settings), key=lambda b: (_timestamp(b.path), b.path.name))
    kept_bases = [b for b in bases if b is bases[-1] or _timestamp(b.path) >= wal_cutoff]
    plan.base_backups = [b.path for b in bases if b not in kept_bases]
    # WAL at or after the oldest kept base backup's start is needed to restore from it.
    oldest_needed = min((b.start_segment[8:] for b in kept_bases), default=None)
    for path in wal_files(settings.wal_archive_dir):
        if _timestamp(path) >= wal_cutoff:
            continue
        name = bare_name(path)
        if oldest_needed is not None and name.endswith(".history"):
            continue  # timeline history files are tiny and needed to follow timelines
        if oldest_needed is not None and SEGMENT_RE.match(name[:24]) and name[8:24] >= oldest_needed:
            continue
        plan.wal_files.append(path)

    for parent in (settings.dumps_dir, settings.base_dir):
        if parent.is_dir():
            plan.partials += [
                p
                for p in parent.iterdir()
                if p.name.startswith(PARTIAL_PREFIX) and p.stat().st_mtime < now - STALE_PARTIAL_SECONDS
            ]
    if settings.wal_archive_dir.is_dir():
        # archive_command writes <name>.gz.tmp and renames it; a crash can leave one behind.
        plan.partials += [
            p
            for p in sorted(settings.wal_archive_dir.glob("*.gz.tmp"))
            if p.stat().st_mtime < now - STALE_PARTIAL_SECONDS
        ]
    return plan


def prune(
    settings: BackupSettings,
    now: float | None = None,
    *,
    dry_run: bool = False,
    remove: Callable[[Path], None] | None = None,
) -> PrunePlan:
    """Delete what :func:`plan_prune` selects (nothing with ``dry_run``) and return the plan."""
    plan = plan_prune(settings, now)
    for path in plan.all:
        log.info("%s %s", "would delete" if dry_run else "deleting", path)
        if dry_run:
            continue
        if remove is not None:
            remove(path)
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return plan
