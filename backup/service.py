"""The long-running backup service: its own scheduler (no cron), metrics server, job bookkeeping.

Daily at ``BACKUP_SCHEDULE_UTC``: dump set, base backup, retention. Weekly at ``BACKUP_DRILL_SCHEDULE_UTC``:
restore drill (and the PITR drill when server binaries are configured). A job whose last success is
older than its period is due at start-up, so a container that was down catches up. A failed job is
retried after ``BACKUP_RETRY_MINUTES``. A due dump is not taken when a dump set was completed since it
became due (the release's pre-deploy dump, ``backup.dumps.run_dump_set``).
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .basebackup import base_backup_for, list_base_backups, take_base_backup
from .config import BackupSettings, DailyAt
from .dumps import latest_complete_dump_set, run_dump_set
from .metrics import collect, failure_path, render, serve, success_path, write_textfile
from .pg import BackupError, iso_utc, write_json_atomic
from .pitr import run_pitr_drill
from .restore import run_restore_drill
from .retention import prune
from .wal import check_continuity

log = logging.getLogger("backup")

DAY = 86400.0
WEEK = 7 * DAY


def next_run(at: DailyAt, after: float) -> float:
    """The first moment strictly after ``after`` (epoch) matching ``at`` (UTC)."""
    moment = datetime.fromtimestamp(after, UTC)
    candidate = moment.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if at.weekday is not None:
        candidate += timedelta(days=(at.weekday - candidate.weekday()) % 7)
    step = timedelta(days=7 if at.weekday is not None else 1)
    while candidate.timestamp() <= after:
        candidate += step
    return candidate.timestamp()


def check_wal_archive(settings: BackupSettings) -> dict[str, Any]:
    """No gap in the WAL archive from the newest base backup on: otherwise PITR would stop at the gap."""
    base = base_backup_for(settings, None)
    report = check_continuity(settings.wal_archive_dir, base.start_segment, settings.wal_segment_bytes)
    if not report.ok:
        shown = ", ".join(report.missing[:5]) + (" …" if len(report.missing) > 5 else "")
        raise BackupError(
            f"the WAL archive {settings.wal_archive_dir} misses {len(report.missing)} segment(s) after base backup "
            f"{base.path.name}: {shown}; check archive_command in the postgres log (pg_stat_archiver)."
        )
    return {"base_backup": base.path.name, "first": report.first, "last": report.last}


def run_job(
    settings: BackupSettings, job: str, fn: Callable[[], Any], *, clock: Callable[[], float] = time.time
) -> bool:
    """Run one job, record its outcome for the metrics, never raise."""
    started = clock()
    try:
        detail = fn()
    except Exception as exc:
        message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s", job, message)
        if not isinstance(exc, BackupError):
            log.debug("%s", traceback.format_exc())
        write_json_atomic(failure_path(settings, job), {"at": clock(), "started_at": started, "error": message})
        return False
    write_json_atomic(success_path(settings, job), {"at": clock(), "started_at": started, "detail": _summary(detail)})
    return True


def _summary(detail: Any) -> Any:
    if hasattr(detail, "path"):
        return str(detail.path)
    if hasattr(detail, "all"):
        return [str(p) for p in detail.all]
    return detail


@dataclass
class Job:
    name: str
    at: DailyAt
    period: float
    action: Callable[[float], Any]  # called with the moment the run became due
    last_success: Callable[[], float]
    next_at: float = 0.0


class BackupService:
    def __init__(self, settings: BackupSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.heartbeat: float | None = None
        self._stop = threading.Event()
        s = settings
        self.jobs = [
            Job("dump", s.daily_at, DAY, lambda due: run_dump_set(s, unless_done_since=due), self._last_dump),
            Job("basebackup", s.daily_at, DAY, lambda _: take_base_backup(s), self._last_base),
            Job("prune", s.daily_at, DAY, lambda _: prune(s, self.clock()), lambda: self._success_at("prune")),
            Job("wal_check", s.daily_at, DAY, lambda _: check_wal_archive(s), lambda: self._success_at("wal_check")),
            Job("drill", s.drill_at, WEEK, lambda _: run_restore_drill(s), lambda: self._success_at("drill")),
        ]
        if s.pg_bin is not None:
            self.jobs.append(
                Job("pitr_drill", s.drill_at, WEEK, lambda _: run_pitr_drill(s), lambda: self._success_at("pitr_drill"))
            )
        now = clock()
        for job in self.jobs:
            overdue = now - job.last_success() >= job.period
            job.next_at = now if overdue else next_run(job.at, now)

    def _last_dump(self) -> float:
        latest = latest_complete_dump_set(self.settings)
        return float(latest.manifest["finished_at"]) if latest else 0.0

    def _last_base(self) -> float:
        bases = list_base_backups(self.settings)
        return bases[-1].finished_at if bases else 0.0

    def _success_at(self, job: str) -> float:
        try:
            return float(json.loads(success_path(self.settings, job).read_text())["at"])
        except (OSError, ValueError, KeyError):
            return 0.0

    def tick(self) -> list[str]:
        """Run every due job once (in declaration order); return the names of those run."""
        ran = []
        for job in self.jobs:
            now = self.clock()
            if now < job.next_at:
                continue
            ok = run_job(self.settings, job.name, functools.partial(job.action, job.next_at), clock=self.clock)
            ran.append(job.name)
            after = self.clock()
            job.next_at = next_run(job.at, after) if ok else after + self.settings.retry_minutes * 60
            log.info("job %s %s; next run %s", job.name, "done" if ok else "failed", iso_utc(job.next_at))
        self.heartbeat = self.clock()
        write_textfile(self.settings, render(collect(self.settings, self.heartbeat)))
        return ran

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        server = serve(self.settings, lambda: self.heartbeat) if self.settings.metrics_port else None
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for job in self.jobs:
            log.info("job %s: first run %s", job.name, iso_utc(job.next_at))
        try:
            while not self._stop.is_set():
                self.tick()
                wait = min(job.next_at for job in self.jobs) - self.clock()
                self._stop.wait(max(1.0, min(60.0, wait)))
        finally:
            if server is not None:
                server.shutdown()
