"""Point-in-time restore: base backup + archived WAL replayed up to a target timestamp.

:func:`prepare_recovery` builds a data directory that Postgres recovers on its next start (the
runbook's procedure). :func:`recovered_server` starts such a directory on a private unix socket, waits
until recovery ends, and yields a way to query it; :func:`run_pitr_drill` uses both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .basebackup import BaseBackup, base_backup_for
from .config import BackupSettings, PgTarget
from .pg import BackupError, psql, write_json_atomic
from .wal import check_continuity, restore_command

log = logging.getLogger("backup")


def parse_target_time(text: str) -> datetime:
    """An ISO 8601 timestamp; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BackupError(f"target time {text!r} is not an ISO 8601 timestamp such as 2025-01-31T13:45:00Z.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _safe_extract(archive: Path, destination: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (destination / member.name).resolve()
            if not str(target).startswith(str(destination.resolve())):
                raise BackupError(f"{archive} contains {member.name!r}, which points outside the data directory.")
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(destination, filter="tar")
        else:  # Python < 3.11.4; members were checked above
            tar.extractall(destination)  # noqa: S202


def _conf_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def prepare_recovery(
    base: BaseBackup,
    data_dir: Path,
    wal_archive_dir: Path,
    target: datetime | None,
    *,
    archive_mode_off: bool = False,
) -> None:
    """Unpack ``base`` into an empty ``data_dir`` and configure recovery up to ``target``.

    ``wal_archive_dir`` is the archive as the *server* sees it. ``target=None`` replays all archived WAL.
    ``archive_mode_off`` keeps a drill copy from archiving into the production archive after promotion.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty; move the old data directory aside first.")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    base_tar = base.path / "base.tar.gz"
    wal_tar = base.path / "pg_wal.tar.gz"
    for required in (base_tar, wal_tar):
        if not required.is_file():
            raise BackupError(f"base backup {base.path} lacks {required.name}; it is damaged.")
    _safe_extract(base_tar, data_dir)
    (data_dir / "pg_wal").mkdir(exist_ok=True)
    _safe_extract(wal_tar, data_dir / "pg_wal")
    lines = [
        "",
        f"# point-in-time restore from base backup {base.path.name}",
        f"restore_command = {_conf_quote(restore_command(wal_archive_dir))}",
        "recovery_target_timeline = 'latest'",
    ]
    if target is not None:
        lines += [
            f"recovery_target_time = {_conf_quote(target.astimezone(UTC).isoformat())}",
            "recovery_target_inclusive = on",
            "recovery_target_action = 'promote'",
        ]
    if archive_mode_off:
        lines.append("archive_mode = off")
    with (data_dir / "postgresql.auto.conf").open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    (data_dir / "recovery.signal").touch()
    (data_dir / "postmaster.pid").unlink(missing_ok=True)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _recovery_failure(log_tail: str, detail: str = "") -> str:
    if "recovery ended before configured recovery target was reached" in log_tail:
        return (
            "the recovered server stopped: the WAL archive has no commit after the target time, so recovery "
            "cannot tell it has reached it; choose an earlier target time or omit it to replay all WAL.\n" + log_tail
        )
    return f"the recovered server stopped during recovery{': ' + detail if detail else ''}:\n{log_tail}"


@dataclass(frozen=True)
class RecoveredServer:
    target: PgTarget
    data_dir: Path
    log_file: Path

    def query(self, sql: str, dbname: str = "postgres") -> list[list[str]]:
        return psql(self.target, sql, dbname, what="querying the recovered server")


@contextlib.contextmanager
def recovered_server(
    data_dir: Path,
    pg_bin: Path,
    *,
    user: str,
    password: str | None = None,
    run_as: str | None = None,
    timeout: float = 600.0,
) -> Iterator[RecoveredServer]:
    """Start a prepared data directory on a private socket and wait until it has left recovery.

    ``run_as`` names the OS user for the server when the caller is root (Postgres refuses root).
    """
    workdir = Path(tempfile.mkdtemp(prefix="pitr-sock-"))
    log_file = workdir / "server.log"
    if run_as:
        _chown_tree(workdir, run_as)
        _chown_tree(data_dir, run_as)
    port = 5433
    options = f"-c listen_addresses='' -c unix_socket_directories='{workdir}' -p {port} -c archive_mode=off"
    prefix = ["runuser", "-u", run_as, "--"] if run_as else []

    def pg_ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, str(pg_bin / "pg_ctl"), "-D", str(data_dir), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=str(workdir),
        )

    def log_tail() -> str:
        try:
            return "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no server log)"

    started = pg_ctl("-l", str(log_file), "-o", options, "-w", "-t", str(int(timeout)), "start")
    try:
        if started.returncode != 0:
            raise BackupError(_recovery_failure(log_tail(), started.stderr.strip()))
        server = RecoveredServer(
            PgTarget(host=str(workdir), port=port, user=user, password=password), data_dir, log_file
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if server.query("SELECT pg_is_in_recovery();") == [["f"]]:
                    break
            except BackupError:
                if pg_ctl("status").returncode != 0:
                    raise BackupError(_recovery_failure(log_tail())) from None
            if time.monotonic() > deadline:
                raise BackupError(f"recovery did not finish within {timeout:.0f} s:\n{log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        pg_ctl("-m", "fast", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def run_pitr_drill(
    settings: BackupSettings,
    target: datetime | None = None,
    *,
    workdir: Path | None = None,
    run_as: str | None = None,
) -> dict[str, Any]:
    """Restore the newest suitable base backup + WAL into a scratch directory, start it, check it.

    Needs the server binaries (``BACKUP_PG_BIN``). The scratch copy never archives (archive_mode off).
    """
    if settings.pg_bin is None or not (settings.pg_bin / "pg_ctl").exists():
        raise BackupError(
            "the PITR drill needs the PostgreSQL 15 server binaries; set BACKUP_PG_BIN to the directory "
            "holding pg_ctl and postgres (e.g. /usr/lib/postgresql/15/bin)."
        )
    started = time.time()
    base = base_backup_for(settings, target.timestamp() if target else None)
    continuity = check_continuity(settings.wal_archive_dir, base.start_segment, settings.wal_segment_bytes)
    if not continuity.ok:
        raise BackupError(
            f"the WAL archive {settings.wal_archive_dir} has gaps after base backup {base.path.name}: "
            f"missing {', '.join(continuity.missing[:5])}{' …' if len(continuity.missing) > 5 else ''}"
        )
    # The restored copy is as large as the cluster: it goes on the backup volume, not on /tmp.
    scratch_root = workdir or settings.backup_dir / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch_parent = Path(tempfile.mkdtemp(prefix="pitr-drill-", dir=scratch_root))
    if run_as:
        _chown_tree(scratch_parent, run_as)
    try:
        data_dir = scratch_parent / "data"
        prepare_recovery(base, data_dir, settings.wal_archive_dir, target, archive_mode_off=True)
        with recovered_server(
            data_dir, settings.pg_bin, user=settings.pg.user, password=settings.pg.password, run_as=run_as
        ) as server:
            replayed = server.query("SELECT coalesce(extract(epoch FROM pg_last_xact_replay_timestamp()), 0);")
            databases = server.query("SELECT count(*) FROM pg_database WHERE NOT datistemplate;")
        result = {
            "kind": "pitr",
            "ok": True,
            "base_backup": base.path.name,
            "target_time": target.isoformat() if target else None,
            "wal_first": continuity.first,
            "wal_last": continuity.last,
            "last_replayed_transaction_at": float(replayed[0][0]),
            "databases": int(databases[0][0]),
            "started_at": started,
            "finished_at": time.time(),
        }
        write_json_atomic(settings.drills_dir / "pitr.json", result)
        return result
    finally:
        shutil.rmtree(scratch_parent, ignore_errors=True)
