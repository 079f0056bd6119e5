"""Settings of the backup service, read from the environment once and validated (R-DB-2).

Every error names the variable and the fix, so a bad stack config stops the container with a sentence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

# R-DB-2 (admin manual, "Политики"): dumps are kept 14–30 days, WAL 7–14 days.
DUMP_RETENTION_RANGE = (14, 30)
WAL_RETENTION_RANGE = (7, 14)
DEFAULT_BACKUP_DIR = "/var/backups/fly-potato"
# The archive volume is mounted at the same path in the postgres and backup containers, so the
# restore_command written by `python3 -m backup pitr` is valid for the server as is.
DEFAULT_WAL_ARCHIVE_DIR = "/var/lib/postgresql/wal-archive"
DEFAULT_METRICS_PORT = 9481  # components/catalog.py: listener "backup_metrics"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names it and says how to fix it."""


def check_retention(name: str, days: int, bounds: tuple[int, int]) -> int:
    """Return ``days`` or refuse a value outside ``bounds`` with a sentence naming the setting."""
    low, high = bounds
    if not low <= days <= high:
        raise ConfigError(
            f"{name}={days} is outside the allowed {low}–{high} days (R-DB-2); "
            f"set {name} to a whole number of days between {low} and {high}."
        )
    return days


@dataclass(frozen=True)
class DailyAt:
    """A UTC wall-clock time of day; ``weekday`` (0 = Monday) makes it weekly."""

    hour: int
    minute: int
    weekday: int | None = None

    @classmethod
    def parse(cls, name: str, text: str, *, weekly: bool = False) -> DailyAt:
        pattern = r"(?:(mon|tue|wed|thu|fri|sat|sun)\s+)?([01]?\d|2[0-3]):([0-5]\d)"
        match = re.fullmatch(pattern, text.strip().lower())
        if not match or (weekly and not match.group(1)) or (not weekly and match.group(1)):
            example = "'sun 04:00'" if weekly else "'02:30'"
            raise ConfigError(
                f"{name}={text!r} is not a {'weekday and ' if weekly else ''}UTC time; use e.g. {example}."
            )
        weekday = WEEKDAYS.index(match.group(1)) if match.group(1) else None
        return cls(int(match.group(2)), int(match.group(3)), weekday)


@dataclass(frozen=True)
class PgTarget:
    """How the client tools reach the server (libpq environment variables)."""

    host: str = "postgres"
    port: int = 5433
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    maintenance_db: str = "postgres"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for psql/pg_dump/pg_restore/pg_basebackup; the password never reaches argv or logs."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PG")}
        passfile = (os.environ if base is None else base).get("PGPASSFILE")
        if passfile:
            env["PGPASSFILE"] = passfile
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGDATABASE=self.maintenance_db,
            PGCONNECT_TIMEOUT="15",
            PGAPPNAME="fly-potato-backup",
        )
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


@dataclass(frozen=True)
class BackupSettings:
    pg: PgTarget
    backup_dir: Path
    wal_archive_dir: Path
    dump_retention_days: int = 14
    wal_retention_days: int = 7
    daily_at: DailyAt = DailyAt(2, 30)
    drill_at: DailyAt = DailyAt(4, 0, 6)
    exclude_databases: frozenset[str] = frozenset()
    restore_jobs: int = 2
    archive_timeout_seconds: int = 60
    wal_segment_bytes: int = 16 * 1024 * 1024
    metrics_address: str = "0.0.0.0"
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_token_file: Path | None = None
    metrics_textfile: Path | None = None
    retry_minutes: int = 60
    pg_bin: Path | None = None  # server binaries (postgres, pg_ctl) for the PITR drill; optional
    # Without superuser the drill cannot CREATE EXTENSION postgis, so it clones this template instead.
    drill_template: str = "template_postgis"

    def __post_init__(self) -> None:
        check_retention("BACKUP_DUMP_RETENTION_DAYS", self.dump_retention_days, DUMP_RETENTION_RANGE)
        check_retention("BACKUP_WAL_RETENTION_DAYS", self.wal_retention_days, WAL_RETENTION_RANGE)

    @property
    def dumps_dir(self) -> Path:
        return self.backup_dir / "dumps"

    @property
    def base_dir(self) -> Path:
        return self.backup_dir / "base"

    @property
    def drills_dir(self) -> Path:
        return self.backup_dir / "drills"

    @property
    def state_dir(self) -> Path:
        return self.backup_dir / "state"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BackupSettings:
        env = dict(os.environ if env is None else env)
        if env.get("BACKUP_DATABASE_URL_FILE"):
            pg = _target_from_url(_read_secret("BACKUP_DATABASE_URL_FILE", env["BACKUP_DATABASE_URL_FILE"]))
        else:
            password = None
            if env.get("BACKUP_PGPASSWORD_FILE"):
                password = _read_secret("BACKUP_PGPASSWORD_FILE", env["BACKUP_PGPASSWORD_FILE"])
            pg = PgTarget(
                host=env.get("PGHOST", "postgres"),
                port=_int(env, "PGPORT", 5433),
                user=env.get("PGUSER", "backup"),
                password=password,
                maintenance_db=env.get("PGDATABASE", "postgres"),
            )
        token_file = env.get("BACKUP_METRICS_TOKEN_FILE")
        textfile = env.get("BACKUP_METRICS_TEXTFILE")
        pg_bin = env.get("BACKUP_PG_BIN")
        return cls(
            pg=pg,
            backup_dir=Path(env.get("BACKUP_DIR", DEFAULT_BACKUP_DIR)),
            wal_archive_dir=Path(env.get("BACKUP_WAL_ARCHIVE_DIR", DEFAULT_WAL_ARCHIVE_DIR)),
            dump_retention_days=_int(env, "BACKUP_DUMP_RETENTION_DAYS", 14),
            wal_retention_days=_int(env, "BACKUP_WAL_RETENTION_DAYS", 7),
            daily_at=DailyAt.parse("BACKUP_SCHEDULE_UTC", env.get("BACKUP_SCHEDULE_UTC", "02:30")),
            drill_at=DailyAt.parse(
                "BACKUP_DRILL_SCHEDULE_UTC", env.get("BACKUP_DRILL_SCHEDULE_UTC", "sun 04:00"), weekly=True
            ),
            drill_template=env.get("BACKUP_DRILL_TEMPLATE", "template_postgis"),
            exclude_databases=frozenset(
                name.strip() for name in env.get("BACKUP_EXCLUDE_DATABASES", "").split(",") if name.strip()
            ),
            restore_jobs=_int(env, "BACKUP_RESTORE_JOBS", 2, minimum=1),
            archive_timeout_seconds=_int(env, "BACKUP_ARCHIVE_TIMEOUT_SECONDS", 60, minimum=1),
            wal_segment_bytes=_int(env, "BACKUP_WAL_SEGMENT_MB", 16, minimum=1) * 1024 * 1024,
            metrics_address=env.get("BACKUP_METRICS_ADDRESS", "0.0.0.0"),
            metrics_port=_int(env, "BACKUP_METRICS_PORT", DEFAULT_METRICS_PORT, minimum=0),
            metrics_token_file=Path(token_file) if token_file else None,
            metrics_textfile=Path(textfile) if textfile else None,
            retry_minutes=_int(env, "BACKUP_RETRY_MINUTES", 60, minimum=1),
            pg_bin=Path(pg_bin) if pg_bin else None,
        )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}.") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below {minimum}; set it to at least {minimum}.")
    return value


def _target_from_url(url: str) -> PgTarget:
    """A libpq URL (postgresql://user:password@host:port/dbname) as a :class:`PgTarget`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or not parts.username:
        raise ConfigError(
            "BACKUP_DATABASE_URL_FILE must hold a URL like postgresql://backup:PASSWORD@postgres:5433/postgres."
        )
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError("BACKUP_DATABASE_URL_FILE holds a URL whose port is not a number.") from None
    return PgTarget(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password) if parts.password is not None else None,
        maintenance_db=unquote(parts.path.lstrip("/")) or "postgres",
    )


def _read_secret(name: str, path: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}={path} cannot be read ({exc.strerror}); mount the secret file there.") from None
    if not value:
        raise ConfigError(f"{name}={path} is empty; mount the Postgres password there.")
    return value
