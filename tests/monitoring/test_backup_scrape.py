"""Live scrape on loopback: a real Prometheus scrapes the real backup metrics server with the rendered backup job
(bearer token file, relabelling), so the series the backup alerts read exist under the labels they match."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from backup.config import BackupSettings, PgTarget
from backup.metrics import failure_path, serve, success_path
from components import monitoring_config as mc
from tests.monitoring.support import http_get, prometheus_query, tool, wait_for
from tests.monitoring.test_config import settings_for
from tests.support.postgres import free_port

TOKEN = "b" * 40


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("backup-scrape")
    paths = mc.PATHS.under(root)
    Path(paths.metrics_token).parent.mkdir(parents=True)
    Path(paths.metrics_token).write_text(TOKEN + "\n")
    settings = BackupSettings(
        pg=PgTarget(),
        backup_dir=root / "backups",
        wal_archive_dir=root / "wal-archive",
        metrics_address="127.0.0.1",
        metrics_port=free_port(),
        metrics_token_file=Path(paths.metrics_token),
    )
    settings.wal_archive_dir.mkdir()
    now = time.time()
    for job, ok in (("drill", False), ("wal_check", True), ("basebackup", True)):
        path = (success_path if ok else failure_path)(settings, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"at": now, "error": "restore drill failed"} if not ok else {"at": now}))
    server = serve(settings, lambda: now)
    process = None
    try:
        rendered = yaml.safe_load(mc.render_prometheus_config(settings_for("prod"), paths))
        (job,) = [j for j in rendered["scrape_configs"] if j["job_name"] == "backup"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{settings.metrics_port}"]
        fast = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        (root / "prometheus.yml").write_text(
            yaml.safe_dump({"global": rendered["global"] | fast, "scrape_configs": [job]})
        )
        port = free_port()
        log = (root / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for("prometheus", lambda: http_get(f"{url}/-/ready")[0] == 200)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{(root / 'prometheus.log').read_text()[-2000:]}") from None
        yield url
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        server.shutdown()


def test_the_backup_target_needs_the_token_and_is_scraped_with_it(prometheus: str) -> None:
    series = wait_for("up{job=backup}", lambda: prometheus_query(prometheus, 'up{job="backup"} == 1'))
    assert series[0]["metric"]["service"] == "backup"


def test_job_failures_keep_the_backup_job_name_the_alert_matches(prometheus: str) -> None:
    failed = wait_for(
        "BackupJobFailed's expression",
        lambda: prometheus_query(prometheus, 'backup_job_last_run_ok{job=~"drill|wal_check|basebackup"} == 0'),
    )
    assert [(s["metric"]["job"], s["metric"]["service"]) for s in failed] == [("drill", "backup")]
    assert "exported_job" not in failed[0]["metric"]
    ok = prometheus_query(prometheus, 'backup_job_last_run_ok{job=~"wal_check|basebackup"} == 1')
    assert {s["metric"]["job"] for s in ok} == {"wal_check", "basebackup"}
    # Series without their own job keep the scrape job's: BackupTooOld fires on a stack without a dump.
    too_old = prometheus_query(prometheus, 'time() - backup_last_success_timestamp_seconds{kind="dump"} > 26 * 3600')
    assert [s["metric"]["job"] for s in too_old] == ["backup"]
