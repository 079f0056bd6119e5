"""Restoring dumps, and the restore drill that proves the newest dump set is usable.

The drill restores each database of the newest dump set into a scratch database (``drill_…``) on the
server, compares every table's row count with the count recorded at dump time, checks that every
PostGIS geometry is valid (``ST_IsValid``), and drops the scratch database. Any problem — no dump,
an incomplete set, a missing or altered file, a failing pg_restore, a count mismatch — raises.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .config import BackupSettings, PgTarget
from .dumps import DumpSet, latest_dump_set, load_dump_set
from .pg import (
    DRILL_DB_PREFIX,
    TABLE_COUNTS_SQL,
    BackupError,
    psql,
    quote_ident,
    run,
    sha256_of,
    write_json_atomic,
)

log = logging.getLogger("backup")


def verify_files(dump_set: DumpSet, databases: list[str] | None = None) -> None:
    """Every file the manifest names exists with the recorded checksum and lists with pg_restore."""
    manifest = dump_set.manifest
    globals_file = dump_set.path / manifest["globals"]["file"]
    if not globals_file.is_file() or sha256_of(globals_file) != manifest["globals"]["sha256"]:
        raise BackupError(f"{globals_file} is missing or differs from its checksum in the manifest.")
    for name in databases or list(manifest["databases"]):
        if name not in manifest["databases"]:
            raise BackupError(f"dump set {dump_set.stamp} has no dump of database {name}.")
        path = dump_set.dump_path(name)
        if not path.is_file():
            raise BackupError(f"the dump of database {name} is missing: {path} does not exist.")
        if sha256_of(path) != manifest["databases"][name]["sha256"]:
            raise BackupError(f"the dump of database {name} is corrupt: {path} differs from its checksum.")


def create_database(target: PgTarget, name: str, *, replace: bool = False) -> None:
    if replace:
        psql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE);", what=f"dropping database {name}")
    psql(target, f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0;", what=f"creating database {name}")


def drop_database(target: PgTarget, name: str) -> None:
    psql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE);", what=f"dropping database {name}")


def restore_dump(
    settings: BackupSettings,
    dump_set: DumpSet,
    database: str,
    into: str,
    *,
    replace: bool = False,
    no_owner: bool = False,
) -> None:
    """Restore ``database`` from ``dump_set`` into a new database ``into`` (``replace`` drops it first)."""
    verify_files(dump_set, [database])
    create_database(settings.pg, into, replace=replace)
    argv = ["pg_restore", "--exit-on-error", "-j", str(settings.restore_jobs), "-d", into]
    if no_owner:
        argv += ["--no-owner", "--no-acl"]
    run([*argv, str(dump_set.dump_path(database))], settings.pg, what=f"pg_restore of database {database} into {into}")


@dataclass
class DatabaseCheck:
    database: str
    tables: int = 0
    rows: int = 0
    geometry_columns: int = 0
    problems: list[str] = field(default_factory=list)


def verify_restored(target: PgTarget, restored_db: str, db_manifest: dict[str, Any]) -> DatabaseCheck:
    """Compare a restored database with the facts recorded at dump time."""
    check = DatabaseCheck(db_manifest["database"])
    actual = {name: int(n) for name, n in psql(target, TABLE_COUNTS_SQL, restored_db, what="counting restored rows")}
    expected: dict[str, int] = db_manifest["row_counts"]
    for table, count in sorted(expected.items()):
        if table not in actual:
            check.problems.append(f"table {table} is missing after restore")
        elif actual[table] != count:
            check.problems.append(f"table {table} has {actual[table]} rows after restore, {count} at dump time")
    for table in sorted(set(actual) - set(expected)):
        check.problems.append(f"table {table} exists after restore but was not in the dump manifest")
    check.tables = len(expected)
    check.rows = sum(expected.values())
    for col in db_manifest["geometry_columns"]:
        rel = f"{quote_ident(col['schema'])}.{quote_ident(col['table'])}"
        rows = psql(
            target,
            # identifiers are quoted with quote_ident
            f"SELECT count(*) FROM {rel} WHERE {quote_ident(col['column'])} IS NOT NULL "  # noqa: S608
            f"AND NOT ST_IsValid({quote_ident(col['column'])});",
            restored_db,
            what=f"checking geometries of {col['schema']}.{col['table']}.{col['column']}",
        )
        invalid = int(rows[0][0])
        if invalid:
            check.problems.append(
                f"{invalid} invalid geometries in {col['schema']}.{col['table']}.{col['column']} (ST_IsValid)"
            )
        check.geometry_columns += 1
    return check


def scratch_name(database: str, stamp: str) -> str:
    return f"{DRILL_DB_PREFIX}{stamp.lower()}_{database}"[:63]


def run_restore_drill(
    settings: BackupSettings, *, stamp: str | None = None, databases: list[str] | None = None, keep: bool = False
) -> dict[str, Any]:
    """Restore the newest (or the named) dump set into scratch databases and verify it; raise on any problem."""
    started = time.time()
    dump_set = load_dump_set(settings.dumps_dir / stamp) if stamp else latest_dump_set(settings)
    names = databases or sorted(dump_set.manifest["databases"])
    verify_files(dump_set, names)
    checks: list[DatabaseCheck] = []
    for name in names:
        entry = dump_set.manifest["databases"][name]
        db_manifest_path = dump_set.path / entry["manifest"]
        if not db_manifest_path.is_file():
            raise BackupError(f"the manifest of database {name} is missing: {db_manifest_path} does not exist.")
        db_manifest = json.loads(db_manifest_path.read_text())
        scratch = scratch_name(name, dump_set.stamp)
        log.info("drill: restoring %s from %s into %s", name, dump_set.stamp, scratch)
        try:
            restore_dump(settings, dump_set, name, scratch, replace=True)
            checks.append(verify_restored(settings.pg, scratch, db_manifest))
        finally:
            if not keep:
                drop_database(settings.pg, scratch)
    problems = [f"{c.database}: {p}" for c in checks for p in c.problems]
    if problems:
        raise BackupError(f"restore drill of dump set {dump_set.stamp} failed: " + "; ".join(problems))
    result = {
        "kind": "dump",
        "ok": True,
        "dump_set": dump_set.stamp,
        "databases": {
            c.database: {"tables": c.tables, "rows": c.rows, "geometry_columns": c.geometry_columns} for c in checks
        },
        "started_at": started,
        "finished_at": (finished := time.time()),
    }
    write_json_atomic(settings.drills_dir / "dump.json", result)
    log.info("drill: dump set %s restored and verified in %.1f s", dump_set.stamp, finished - started)
    return result
