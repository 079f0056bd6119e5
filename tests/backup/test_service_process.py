"""The container's command, ``python3 -m backup service``, end to end against a real PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backup.config import BackupSettings
from tests.support.postgres import PostgresCluster, free_port

pytestmark = pytest.mark.postgres

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the image copies backup/ here


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_service_catches_up_serves_metrics_and_stops_on_sigterm(
    settings: BackupSettings, archiving_cluster: PostgresCluster, tmp_path: Path
) -> None:
    port = free_port()
    token = tmp_path / "metrics_token"
    token.write_text("scrape-me\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKUP_"))},
        "PYTHONPATH": str(PACKAGE_PARENT),
        "PGHOST": settings.pg.host,
        "PGPORT": str(settings.pg.port),
        "PGUSER": settings.pg.user,
        "BACKUP_DIR": str(settings.backup_dir),
        "BACKUP_WAL_ARCHIVE_DIR": str(settings.wal_archive_dir),
        "BACKUP_METRICS_ADDRESS": "127.0.0.1",
        "BACKUP_METRICS_PORT": str(port),
        "BACKUP_METRICS_TOKEN_FILE": str(token),
        "BACKUP_METRICS_TEXTFILE": str(tmp_path / "backup.prom"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "backup", "service"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        drill_result = settings.state_dir / "drill.success.json"
        while not drill_result.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the service did not complete its catch-up run in 90 s"
            time.sleep(0.2)

        health = subprocess.run(
            [sys.executable, "-m", "backup", "health"], env=env, cwd=tmp_path, capture_output=True, check=False
        )
        assert health.returncode == 0
        assert _get(port, "/metrics")[0] == 401
        status, body = _get(port, "/metrics", "scrape-me")
        assert status == 200
        metrics = {
            line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if not line.startswith("#")
        }
        assert metrics['backup_last_success_timestamp_seconds{kind="dump"}'] > time.time() - 120
        assert metrics['backup_last_size_bytes{kind="dump"}'] > 0
        assert metrics['backup_last_success_timestamp_seconds{kind="basebackup"}'] > 0
        assert metrics['backup_drill_last_success_timestamp_seconds{kind="dump"}'] > 0
        assert metrics['backup_job_last_run_ok{job="wal_check"}'] == 1
        assert json.loads(drill_result.read_text())["detail"]["ok"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    assert "backup_service_heartbeat_timestamp_seconds" in (tmp_path / "backup.prom").read_text()
