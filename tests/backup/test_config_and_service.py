"""Settings validation, the scheduler and the metrics endpoint (no database needed)."""

from __future__ import annotations

import http.client
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup import service as service_module
from backup.config import BackupSettings, ConfigError, DailyAt, PgTarget
from backup.metrics import collect, render, serve
from backup.service import BackupService, next_run
from backup.wal import archive_command, check_continuity, restore_command, segment_name
from tests.support.postgres import free_port


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"BACKUP_DIR": str(tmp_path / "b"), "BACKUP_WAL_ARCHIVE_DIR": str(tmp_path / "wal"), **extra}


@pytest.mark.parametrize(
    ("name", "value", "range_text"),
    [
        ("BACKUP_DUMP_RETENTION_DAYS", "13", "14–30"),
        ("BACKUP_DUMP_RETENTION_DAYS", "31", "14–30"),
        ("BACKUP_WAL_RETENTION_DAYS", "6", "7–14"),
        ("BACKUP_WAL_RETENTION_DAYS", "15", "7–14"),
    ],
)
def test_retention_outside_the_allowed_range_is_refused_with_the_setting_named(
    tmp_path: Path, name: str, value: str, range_text: str
) -> None:
    with pytest.raises(ConfigError) as err:
        BackupSettings.from_env(_env(tmp_path, **{name: value}))
    assert str(err.value).startswith(f"{name}={value} is outside the allowed {range_text} days")
    assert f"set {name} to" in str(err.value)


@pytest.mark.parametrize(("dump", "wal"), [("14", "7"), ("30", "14"), ("21", "10")])
def test_retention_inside_the_range_is_accepted(tmp_path: Path, dump: str, wal: str) -> None:
    s = BackupSettings.from_env(_env(tmp_path, BACKUP_DUMP_RETENTION_DAYS=dump, BACKUP_WAL_RETENTION_DAYS=wal))
    assert (s.dump_retention_days, s.wal_retention_days) == (int(dump), int(wal))


def test_defaults_and_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = BackupSettings.from_env(_env(tmp_path, BACKUP_PGPASSWORD_FILE=str(secret)))
    assert (s.pg.host, s.pg.port, s.pg.user) == ("postgres", 5433, "backup")
    assert s.pg.env({})["PGPASSWORD"] == "s3cret"
    assert "s3cret" not in repr(s)
    assert (s.dump_retention_days, s.wal_retention_days, s.metrics_port) == (14, 7, 9481)
    assert s.daily_at == DailyAt(2, 30) and s.drill_at == DailyAt(4, 0, 6)


def test_connection_from_a_url_file(tmp_path: Path) -> None:
    url = tmp_path / "backup_url"
    url.write_text("postgresql://backup:p%40ss@postgres:5433/postgres\n")
    pg = BackupSettings.from_env(_env(tmp_path, BACKUP_DATABASE_URL_FILE=str(url))).pg
    assert (pg.host, pg.port, pg.user, pg.password, pg.maintenance_db) == (
        "postgres",
        5433,
        "backup",
        "p@ss",
        "postgres",
    )
    url.write_text("postgres:5433")
    with pytest.raises(ConfigError, match="must hold a URL like postgresql://"):
        BackupSettings.from_env(_env(tmp_path, BACKUP_DATABASE_URL_FILE=str(url)))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BACKUP_SCHEDULE_UTC": "25:00"}, "BACKUP_SCHEDULE_UTC='25:00' is not a UTC time"),
        ({"BACKUP_DRILL_SCHEDULE_UTC": "04:00"}, "BACKUP_DRILL_SCHEDULE_UTC='04:00' is not a weekday and UTC time"),
        ({"BACKUP_DATABASE_URL_FILE": "/nonexistent/url"}, "BACKUP_DATABASE_URL_FILE=/nonexistent/url cannot be read"),
        ({"PGPORT": "five"}, "PGPORT='five' is not a whole number"),
        ({"BACKUP_PGPASSWORD_FILE": "/nonexistent/pw"}, "BACKUP_PGPASSWORD_FILE=/nonexistent/pw cannot be read"),
    ],
)
def test_bad_settings_are_sentences_naming_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        BackupSettings.from_env(_env(tmp_path, **env))


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_next_run_daily_and_weekly() -> None:
    assert next_run(DailyAt(2, 30), _epoch("2027-01-15T01:00:00")) == _epoch("2027-01-15T02:30:00")
    assert next_run(DailyAt(2, 30), _epoch("2027-01-15T02:30:00")) == _epoch("2027-01-16T02:30:00")
    # 2027-01-15 is a Friday; Sunday 04:00 follows two days later.
    assert next_run(DailyAt(4, 0, 6), _epoch("2027-01-15T12:00:00")) == _epoch("2027-01-17T04:00:00")
    assert next_run(DailyAt(4, 0, 6), _epoch("2027-01-17T04:00:00")) == _epoch("2027-01-24T04:00:00")


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_scheduler_catches_up_runs_daily_and_retries_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = BackupSettings.from_env(_env(tmp_path))
    calls: list[str] = []
    failing = {"basebackup"}

    def fake(name: str):  # type: ignore[no-untyped-def]
        def action(*_args, **_kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            if name in failing:
                raise service_module.BackupError(f"{name} broke")
            return None

        return action

    monkeypatch.setattr(service_module, "run_dump_set", fake("dump"))
    monkeypatch.setattr(service_module, "take_base_backup", fake("basebackup"))
    monkeypatch.setattr(service_module, "prune", fake("prune"))
    monkeypatch.setattr(service_module, "run_restore_drill", fake("drill"))
    monkeypatch.setattr(service_module, "check_wal_archive", fake("wal_check"))
    clock = FakeClock(_epoch("2027-01-15T12:00:00"))
    svc = BackupService(s, clock=clock)

    # Nothing has ever succeeded: everything is overdue at start-up, dump before drill.
    assert svc.tick() == ["dump", "basebackup", "prune", "wal_check", "drill"]
    assert (s.state_dir / "basebackup.failure.json").is_file()

    clock.now += 30 * 60
    assert svc.tick() == []
    clock.now += 31 * 60  # the failed job is retried after BACKUP_RETRY_MINUTES (60)
    failing.clear()
    assert svc.tick() == ["basebackup"]

    calls.clear()
    clock.now = _epoch("2027-01-16T02:30:00")
    assert svc.tick() == ["dump", "basebackup", "prune", "wal_check"]
    clock.now = _epoch("2027-01-16T12:00:00")
    assert svc.tick() == []
    clock.now = _epoch("2027-01-17T04:00:00")  # Sunday: the weekly drill follows the daily jobs
    assert svc.tick() == ["dump", "basebackup", "prune", "wal_check", "drill"]
    assert 'backup_job_last_run_ok{job="basebackup"} 1' in render(collect(s, clock.now))


def test_the_scheduled_dump_takes_no_set_when_one_was_completed_since_it_became_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up dump at start-up is due from the service's start; the release's pre-deploy dump may complete
    first (backup.dumps.run_dump_set then returns that set). The daily run is due at its own time."""
    s = BackupSettings.from_env(_env(tmp_path))
    asked: list[float | None] = []

    def dump(settings: BackupSettings, *, unless_done_since: float | None = None) -> None:
        asked.append(unless_done_since)

    for name in ("take_base_backup", "prune", "run_restore_drill", "check_wal_archive"):
        monkeypatch.setattr(service_module, name, lambda *_args, **_kwargs: None)
    monkeypatch.setattr(service_module, "run_dump_set", dump)
    started = _epoch("2027-01-15T12:00:00")
    clock = FakeClock(started)
    svc = BackupService(s, clock=clock)
    clock.now += 5
    assert svc.tick()[0] == "dump"
    clock.now = _epoch("2027-01-16T02:31:00")
    assert svc.tick()[0] == "dump"
    assert asked == [started, _epoch("2027-01-16T02:30:00")]


def test_metrics_need_the_bearer_token_and_healthz_does_not(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    s = BackupSettings(
        pg=PgTarget(),
        backup_dir=tmp_path / "b",
        wal_archive_dir=tmp_path / "wal",
        metrics_address="127.0.0.1",
        metrics_port=free_port(),
        metrics_token_file=token_file,
    )
    server = serve(s, lambda: 123.0)

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", s.metrics_port, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    try:
        assert get("/healthz") == (200, "ok\n")
        assert get("/metrics")[0] == 401
        assert get("/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        status, body = get("/metrics", {"Authorization": "Bearer t0ken"})
        assert status == 200
    finally:
        server.shutdown()
        server.server_close()
    # No backup yet: the timestamp is 0, so "time() - timestamp > 26h" (BackupTooOld) fires.
    assert 'backup_last_success_timestamp_seconds{kind="dump"} 0' in body
    assert "backup_service_heartbeat_timestamp_seconds 123" in body
    assert 'backup_retention_days{kind="wal"} 7' in body


def test_archive_and_restore_commands_round_trip(tmp_path: Path) -> None:
    import subprocess

    archive = tmp_path / "archive"
    archive.mkdir()
    segment = tmp_path / "pg_wal" / "000000010000000000000007"
    segment.parent.mkdir()
    segment.write_bytes(b"\0" * 4096 + b"wal")

    def sh(template: str, path: Path) -> int:
        cmd = template.replace("%p", str(path)).replace("%f", segment.name)
        return subprocess.run(["sh", "-c", cmd], check=False).returncode

    assert sh(archive_command(archive), segment) == 0
    assert (archive / f"{segment.name}.gz").is_file()
    assert sh(archive_command(archive), segment) == 0  # same content again: accepted
    segment.write_bytes(b"different")
    assert sh(archive_command(archive), segment) != 0  # different content: refused
    restored = tmp_path / "restored"
    assert sh(restore_command(archive), restored) == 0
    assert restored.read_bytes() == b"\0" * 4096 + b"wal"
    assert (
        subprocess.run(
            [
                "sh",
                "-c",
                restore_command(archive).replace("%f", "00000001000000000000FFFF").replace("%p", str(tmp_path / "x")),
            ],
            check=False,
        ).returncode
        != 0
    )


def test_wal_names_and_gap_detection(tmp_path: Path) -> None:
    seg = 16 * 1024 * 1024
    assert segment_name(1, 0x0_0400_0028, seg) == "000000010000000000000004"
    assert segment_name(2, (1 << 32) + 5 * seg, seg) == "000000020000000100000005"
    for name in ("000000010000000000000004", "000000010000000000000005", "000000010000000000000007"):
        (tmp_path / f"{name}.gz").write_bytes(b"x")
    report = check_continuity(tmp_path, "000000010000000000000004", seg)
    assert report.missing == ["000000010000000000000006"] and not report.ok
    (tmp_path / "000000010000000000000006").write_bytes(b"x")
    assert check_continuity(tmp_path, "000000010000000000000004", seg).ok
    assert check_continuity(tmp_path, "000000010000000000000009", seg).missing == ["000000010000000000000009"]
