"""The daily dump set: ``pg_dumpall --globals-only`` plus ``pg_dump -Fc`` of each database.

Each dump is taken from an exported snapshot, and the row counts written to ``<db>.manifest.json``
are read in that same snapshot, so the restore drill can demand exact equality. The set is built in
``dumps/.partial-<stamp>`` and renamed when complete; ``manifest.json`` is written last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BackupSettings, PgTarget
from .pg import (
    DRILL_DB_PREFIX,
    EXTENSION_TABLES_SQL,
    EXTENSIONS_SQL,
    GEOMETRY_COLUMNS_SQL,
    TABLE_COUNTS_SQL,
    BackupError,
    is_superuser,
    list_databases,
    psql,
    quote_literal,
    run,
    sha256_of,
    utc_stamp,
    write_json_atomic,
)

log = logging.getLogger("backup")

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
LOCK_FILE = ".lock"  # in the dumps folder: one dump set at a time on a backup volume
FORMAT_VERSION = 1

# A schema change that commits while a dump reads the database (Keycloak creating its tables on first start, an
# application's migration) makes pg_dump, or the row count in the dump's snapshot, fail in one of these ways:
# an object read from the snapshot's catalog is gone when it is locked or looked up. Only these are retried,
# from a new snapshot; any other failure (a refused login, a full disk, a damaged table) fails at once.
CONCURRENT_DDL = re.compile(
    r'relation "[^"]+" does not exist'
    r"|cache lookup failed for \w+"
    r"|could not open relation with OID \d+"
    r"|schema with OID \d+ does not exist"
    r'|schema "[^"]+" does not exist'
)
DUMP_ATTEMPTS = 3
RETRY_DELAYS_SECONDS = (2.0, 5.0)  # before the second and the third attempt


def concurrent_ddl(message: str) -> bool:
    """Whether a dump failure is the trace of a schema change committed while the dump ran."""
    return CONCURRENT_DDL.search(message) is not None


@dataclass(frozen=True)
class DumpSet:
    """A complete dump set on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def stamp(self) -> str:
        return self.path.name

    def dump_path(self, database: str) -> Path:
        return self.path / str(self.manifest["databases"][database]["dump"])


@contextlib.contextmanager
def exported_snapshot(target: PgTarget, dbname: str, timeout: float = 60.0) -> Iterator[str]:
    """Hold a REPEATABLE READ transaction open and yield its exported snapshot id."""
    with tempfile.TemporaryDirectory(prefix="snapshot-") as tmp:
        out = Path(tmp) / "snapshot"
        proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=target.env(),
        )
        assert proc.stdin is not None
        try:
            # psql closes (and so flushes) the \o file as soon as output is switched back.
            proc.stdin.write(
                f"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n\\o {out}\nSELECT pg_export_snapshot();\n\\o\n"
            )
            proc.stdin.flush()
            deadline = time.monotonic() + timeout
            snapshot = ""
            while not snapshot.endswith("\n"):
                if proc.poll() is not None:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise BackupError(f"exporting a snapshot of database {dbname} failed: {err.strip()}")
                if time.monotonic() > deadline:
                    raise BackupError(f"exporting a snapshot of database {dbname} took longer than {timeout:.0f} s.")
                time.sleep(0.02)
                snapshot = out.read_text() if out.exists() else ""
            yield snapshot.strip()
            proc.stdin.write("COMMIT;\n")
            proc.stdin.close()
            if proc.wait(timeout=timeout) != 0:
                err = proc.stderr.read() if proc.stderr else ""
                raise BackupError(f"the snapshot transaction on database {dbname} failed: {err.strip()}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def snapshot_facts(target: PgTarget, dbname: str, snapshot: str) -> dict[str, Any]:
    """Row counts and geometry columns as seen by ``snapshot``."""
    rows = psql(
        target,
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
        f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot)};\n"
        f"{TABLE_COUNTS_SQL}\nCOMMIT;\n",
        dbname,
        what=f"counting rows of database {dbname}",
    )
    geometry = psql(target, GEOMETRY_COLUMNS_SQL, dbname, what=f"listing geometry columns of database {dbname}")
    extensions = psql(target, EXTENSIONS_SQL, dbname, what=f"listing extensions of database {dbname}")
    extension_tables = psql(target, EXTENSION_TABLES_SQL, dbname, what=f"listing extension tables of {dbname}")
    return {
        "row_counts": {name: int(count) for name, count in rows},
        "geometry_columns": [{"schema": s, "table": t, "column": c} for s, t, c in geometry],
        "extensions": [row[0] for row in extensions],
        "extension_tables": [row[0] for row in extension_tables],
    }


def dump_database(
    target: PgTarget,
    dbname: str,
    directory: Path,
    file_stem: str,
    *,
    attempts: int = DUMP_ATTEMPTS,
    delays: tuple[float, ...] = RETRY_DELAYS_SECONDS,
) -> dict[str, Any]:
    """``pg_dump -Fc`` one database and return its manifest entry (also written next to the dump).

    A failure that a concurrent schema change explains (:func:`concurrent_ddl`) is retried from a new
    snapshot, at most ``attempts`` times in all, each retry logged; the last one's error is raised, saying
    the schema kept changing. Any other failure is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return _dump_database_once(target, dbname, directory, file_stem)
        except BackupError as exc:
            if not concurrent_ddl(str(exc)):
                raise
            if attempt == attempts:
                raise BackupError(
                    f"{exc} — the schema of database {dbname} changed under each of {attempts} attempts; "
                    "something keeps running DDL on it (a migration or a service's first start): "
                    "let it finish, then run the dump again."
                ) from None
            delay = delays[min(attempt - 1, len(delays) - 1)] if delays else 0.0
            log.warning(
                "dump of database %s met a schema change made while it ran (%s); attempt %d of %d in %.0f s",
                dbname,
                _symptom(str(exc)),
                attempt + 1,
                attempts,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _symptom(text: str) -> str:
    """The line of a failure that names the schema change."""
    return next((line.strip() for line in text.splitlines() if CONCURRENT_DDL.search(line)), text.strip())


def _dump_database_once(target: PgTarget, dbname: str, directory: Path, file_stem: str) -> dict[str, Any]:
    dump_file = directory / f"{file_stem}.dump"
    started = time.time()
    with exported_snapshot(target, dbname) as snapshot:
        facts = snapshot_facts(target, dbname, snapshot)
        run(
            ["pg_dump", "-Fc", "--snapshot", snapshot, "-d", dbname, "-f", str(dump_file)],
            target,
            what=f"pg_dump of database {dbname}",
        )
    # A dump pg_restore cannot list is not a backup.
    run(["pg_restore", "--list", str(dump_file)], target, what=f"checking the dump of database {dbname}")
    entry = {
        "format_version": FORMAT_VERSION,
        "database": dbname,
        "dump": dump_file.name,
        "size_bytes": dump_file.stat().st_size,
        "sha256": sha256_of(dump_file),
        "snapshot": snapshot,
        "started_at": started,
        "finished_at": time.time(),
        **facts,
    }
    write_json_atomic(directory / f"{file_stem}.manifest.json", entry)
    return entry


def databases_to_dump(settings: BackupSettings) -> list[str]:
    return [
        name
        for name in list_databases(settings.pg)
        if name not in settings.exclude_databases and not name.startswith(DRILL_DB_PREFIX)
    ]


def _file_stem(dbname: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dbname)
    return safe if safe == dbname else f"{safe}-{hashlib.sha256(dbname.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def dump_lock(settings: BackupSettings) -> Iterator[None]:
    """One dump set at a time on a backup volume: the service's schedule and the release's pre-deploy dump
    (``docker exec … python3 -m backup dump``) queue instead of overlapping."""
    settings.dumps_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.dumps_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another dump set is being taken in %s; waiting for it to finish", settings.dumps_dir)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_dump_set(
    settings: BackupSettings,
    *,
    now: float | None = None,
    databases: list[str] | None = None,
    unless_done_since: float | None = None,
) -> DumpSet:
    """Take a complete dump set and return it; on failure nothing is left that looks complete.

    Dump sets are taken one at a time (:func:`dump_lock`). With ``unless_done_since`` (the moment a scheduled
    dump became due), a set completed since then — the release's pre-deploy dump, taken while this one
    waited or before it started — is returned instead of taking another. So the service's catch-up dump at
    start-up never runs after a deploy's pre-deploy dump, when the deploy goes on to start a new Keycloak that
    migrates its schema (R-OPS-2)."""
    with dump_lock(settings):
        if unless_done_since is not None:
            latest = latest_complete_dump_set(settings)
            if latest is not None and float(latest.manifest["finished_at"]) >= unless_done_since:
                log.info("dump set %s was completed after this run was due; not taking another", latest.stamp)
                return latest
        return _take_dump_set(settings, now=now, databases=databases)


def _take_dump_set(settings: BackupSettings, *, now: float | None, databases: list[str] | None) -> DumpSet:
    """Take a complete dump set and return it; on failure nothing is left that looks complete."""
    stamp = utc_stamp(now)
    settings.dumps_dir.mkdir(parents=True, exist_ok=True)
    final = settings.dumps_dir / stamp
    if final.exists() and now is None:  # a set finished this very second (dumps queue): the next second's stamp
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        stamp = utc_stamp()
        final = settings.dumps_dir / stamp
    if final.exists():
        raise BackupError(f"dump set {final} already exists; wait a second and run again.")
    partial = settings.dumps_dir / f"{PARTIAL_PREFIX}{stamp}"
    partial.mkdir()
    started = time.time()
    try:
        names = databases if databases is not None else databases_to_dump(settings)
        if not names:
            raise BackupError(f"no database to dump on {settings.pg.host}:{settings.pg.port}.")
        globals_file = partial / "globals.sql"
        # Only a superuser may read pg_authid; role passwords are re-applied by `pulumi up` anyway.
        privileged = is_superuser(settings.pg)
        run(
            ["pg_dumpall", "--globals-only", "-f", str(globals_file)] + ([] if privileged else ["--no-role-passwords"]),
            settings.pg,
            what="pg_dumpall --globals-only",
        )
        entries: dict[str, Any] = {}
        for name in names:
            log.info("dumping database %s", name)
            entries[name] = dump_database(settings.pg, name, partial, _file_stem(name))
        size = sum(path.stat().st_size for path in partial.iterdir() if path.is_file())
        manifest = {
            "format_version": FORMAT_VERSION,
            "stamp": stamp,
            "server": f"{settings.pg.host}:{settings.pg.port}",
            "started_at": started,
            "finished_at": time.time(),
            "globals": {
                "file": globals_file.name,
                "sha256": sha256_of(globals_file),
                "role_passwords": privileged,
            },
            "databases": {
                name: {
                    "dump": e["dump"],
                    "manifest": f"{Path(e['dump']).stem}.manifest.json",
                    "size_bytes": e["size_bytes"],
                    "sha256": e["sha256"],
                }
                for name, e in entries.items()
            },
            "size_bytes": size,
        }
        write_json_atomic(partial / MANIFEST, manifest)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("dump set %s complete: %d databases, %d bytes", stamp, len(entries), size)
    return DumpSet(final, manifest)


def list_dump_sets(settings: BackupSettings) -> list[Path]:
    """Dump set directories, oldest first (complete or not; hidden partial sets excluded)."""
    if not settings.dumps_dir.is_dir():
        return []
    return sorted(p for p in settings.dumps_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dump_set(path: Path) -> DumpSet:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"dump set {path} has no {MANIFEST}: it is incomplete or damaged.")
    try:
        return DumpSet(path, json.loads(manifest_path.read_text()))
    except ValueError as exc:
        raise BackupError(f"{manifest_path} is not valid JSON ({exc}); the dump set is damaged.") from None


def latest_dump_set(settings: BackupSettings) -> DumpSet:
    """The newest dump set; an incomplete newest set is an error, not a reason to fall back silently."""
    sets = list_dump_sets(settings)
    if not sets:
        raise BackupError(f"no dump set in {settings.dumps_dir}: the daily backup has never completed.")
    return load_dump_set(sets[-1])


def latest_complete_dump_set(settings: BackupSettings) -> DumpSet | None:
    for path in reversed(list_dump_sets(settings)):
        if (path / MANIFEST).is_file():
            with contextlib.suppress(BackupError):
                return load_dump_set(path)
    return None
