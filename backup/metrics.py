"""Prometheus metrics of the backups, computed from what is on disk (so they survive restarts).

Served on ``/metrics`` behind a bearer token read from a file (R-SEC-5); ``/healthz`` is open for the
container healthcheck. Optionally also written atomically to a node_exporter textfile.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .basebackup import list_base_backups
from .config import BackupSettings
from .dumps import latest_complete_dump_set, list_dump_sets
from .wal import wal_files

log = logging.getLogger("backup")

JOBS = ("dump", "basebackup", "prune", "wal_check", "drill", "pitr_drill")

HELP = {
    "backup_last_success_timestamp_seconds": "Unix time the newest complete backup of this kind finished (0: none).",
    "backup_last_size_bytes": "Size of the newest complete backup of this kind.",
    "backup_last_duration_seconds": "How long the newest complete backup of this kind took.",
    "backup_dump_sets": "Complete dump sets on disk.",
    "backup_base_backups": "Complete base backups on disk.",
    "backup_drill_last_success_timestamp_seconds": "Unix time the last successful restore drill finished (0: none).",
    "backup_job_last_failure_timestamp_seconds": "Unix time a backup job last failed (0: never).",
    "backup_job_last_run_ok": "1 if the last run of the job succeeded, 0 if it failed.",
    "backup_wal_archive_files": "Files in the WAL archive.",
    "backup_wal_archive_bytes": "Bytes in the WAL archive.",
    "backup_wal_archive_newest_timestamp_seconds": "mtime of the newest archived WAL file (0: none).",
    "backup_retention_days": "Configured retention.",
    "backup_archive_timeout_seconds": "archive_timeout of the server: the RPO bound without archive latency.",
    "backup_service_heartbeat_timestamp_seconds": "Unix time the scheduler loop last ran.",
}


def failure_path(settings: BackupSettings, job: str) -> Path:
    return settings.state_dir / f"{job}.failure.json"


def success_path(settings: BackupSettings, job: str) -> Path:
    return settings.state_dir / f"{job}.success.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def collect(settings: BackupSettings, heartbeat: float | None = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}

    def add(name: str, value: float, **labels: str) -> None:
        samples[name].append((labels, float(value)))

    latest = latest_complete_dump_set(settings)
    m = latest.manifest if latest else {}
    add("backup_last_success_timestamp_seconds", m.get("finished_at", 0), kind="dump")
    add("backup_last_size_bytes", m.get("size_bytes", 0), kind="dump")
    add("backup_last_duration_seconds", m.get("finished_at", 0) - m.get("started_at", 0), kind="dump")
    add("backup_dump_sets", sum(1 for p in list_dump_sets(settings) if (p / "manifest.json").is_file()))

    bases = list_base_backups(settings)
    b = bases[-1].manifest if bases else {}
    add("backup_last_success_timestamp_seconds", b.get("finished_at", 0), kind="basebackup")
    add("backup_last_size_bytes", b.get("size_bytes", 0), kind="basebackup")
    add("backup_last_duration_seconds", b.get("finished_at", 0) - b.get("started_at", 0), kind="basebackup")
    add("backup_base_backups", len(bases))

    for kind in ("dump", "pitr"):
        drill = _read_json(settings.drills_dir / f"{kind}.json") or {}
        add("backup_drill_last_success_timestamp_seconds", drill.get("finished_at", 0), kind=kind)

    for job in JOBS:
        failure = _read_json(failure_path(settings, job)) or {}
        success = _read_json(success_path(settings, job)) or {}
        failed_at = float(failure.get("at", 0))
        add("backup_job_last_failure_timestamp_seconds", failed_at, job=job)
        if failure or success:
            add("backup_job_last_run_ok", 1 if float(success.get("at", 0)) >= failed_at else 0, job=job)

    files = wal_files(settings.wal_archive_dir)
    stats = [p.stat() for p in files]
    add("backup_wal_archive_files", len(files))
    add("backup_wal_archive_bytes", sum(s.st_size for s in stats))
    add("backup_wal_archive_newest_timestamp_seconds", max((s.st_mtime for s in stats), default=0))

    add("backup_retention_days", settings.dump_retention_days, kind="dump")
    add("backup_retention_days", settings.wal_retention_days, kind="wal")
    add("backup_archive_timeout_seconds", settings.archive_timeout_seconds)
    if heartbeat is not None:
        add("backup_service_heartbeat_timestamp_seconds", heartbeat)
    return samples


def render(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    lines: list[str] = []
    for name, values in samples.items():
        if not values:
            continue
        lines.append(f"# HELP {name} {HELP[name]}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in values:
            label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {value:.17g}" if label_text else f"{name} {value:.17g}")
    return "\n".join(lines) + "\n"


def write_textfile(settings: BackupSettings, text: str) -> None:
    if settings.metrics_textfile is None:
        return
    path = settings.metrics_textfile
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_token(settings: BackupSettings) -> str | None:
    if settings.metrics_token_file is None:
        return None
    token = settings.metrics_token_file.read_text().strip()
    if not token:
        raise ValueError(
            f"BACKUP_METRICS_TOKEN_FILE={settings.metrics_token_file} is empty; put the bearer token there."
        )
    return token


def serve(settings: BackupSettings, heartbeat: Callable[[], float | None]) -> ThreadingHTTPServer:
    """Start the metrics server in a daemon thread and return it (``shutdown()`` to stop)."""
    token = read_token(settings)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, "ok\n")
                return
            if self.path != "/metrics":
                self._send(404, "not found\n")
                return
            if token is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    self._send(401, "bearer token required\n")
                    return
            try:
                body = render(collect(settings, heartbeat()))
            except Exception as exc:  # a scrape must not kill the server
                log.exception("collecting metrics failed")
                self._send(500, f"collecting metrics failed: {exc}\n")
                return
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")

        def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer((settings.metrics_address, settings.metrics_port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
