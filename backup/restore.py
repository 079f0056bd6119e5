"""Restoring dumps, and the restore drill that proves the newest dump set is usable.

The drill restores each database of the newest dump set into a scratch database (``drill_…``) on the
server, compares every table's row count with the count recorded at dump time, checks that every
PostGIS geometry is valid (``ST_IsValid``), and drops the scratch database. Any problem — no dump,
an incomplete set, a missing or altered file, a failing pg_restore, a count mismatch — raises.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import BackupSettings, PgTarget
from .dumps import DumpSet, latest_dump_set, load_dump_set
from .pg import (
    DRILL_DB_PREFIX,
    EXTENSIONS_SQL,
    TABLE_COUNTS_SQL,
    BackupError,
    is_superuser,
    psql,
    quote_ident,
    quote_literal,
    run,
    sha256_of,
    write_json_atomic,
)

log = logging.getLogger("backup")

# "<dump id>; <catalog oid> <oid> <description…>": the format of `pg_restore --list`.
TOC_LINE_RE = re.compile(r"^\d+; \d+ \d+ (.*)$")


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


def create_database(target: PgTarget, name: str, *, replace: bool = False, template: str = "template0") -> None:
    if replace:
        psql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE);", what=f"dropping database {name}")
    psql(
        target,
        f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)};",
        what=f"creating database {name} from {template}",
    )


def drop_database(target: PgTarget, name: str) -> None:
    psql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE);", what=f"dropping database {name}")


def _needs_superuser(line: str, extension_tables: set[str]) -> bool:
    """A TOC line (``pg_restore --list``) only a superuser can restore: extensions, their comments and data."""
    match = TOC_LINE_RE.match(line)
    if not match:
        return False
    desc = match.group(1)
    if desc.startswith(("EXTENSION ", "COMMENT - EXTENSION ")):
        return True
    data = re.match(r"TABLE DATA (\S+) (\S+) ", desc)
    return bool(data and f"{data.group(1)}.{data.group(2)}" in extension_tables)


def _unprivileged_setup(
    settings: BackupSettings, dump_set: DumpSet, database: str, into: str, replace: bool, workdir: Path
) -> list[str]:
    """Clone the extension template and return pg_restore options that skip what needs a superuser."""
    db_manifest = json.loads((dump_set.path / dump_set.manifest["databases"][database]["manifest"]).read_text())
    extensions: list[str] = db_manifest.get("extensions", [])
    template = settings.drill_template if extensions else "template0"
    if template != "template0":
        found = psql(
            settings.pg,
            f"SELECT datistemplate FROM pg_database WHERE datname = {quote_literal(template)};",  # noqa: S608
            what=f"looking up template database {template}",
        )
        if found != [["t"]]:
            state = "is not marked IS_TEMPLATE" if found else "does not exist"
            raise BackupError(
                f"role {settings.pg.user} is not a superuser, so it restores by cloning template database "
                f"{template} with the extensions {', '.join(extensions)} installed, and {template} {state}; "
                f"as a superuser run CREATE DATABASE {template} IS_TEMPLATE true; and in it CREATE EXTENSION "
                "for each (or set BACKUP_DRILL_TEMPLATE to another template)."
            )
    create_database(settings.pg, into, replace=replace, template=template)
    present = {row[0] for row in psql(settings.pg, EXTENSIONS_SQL, into, what=f"listing extensions of {into}")}
    missing = sorted(set(extensions) - present)
    if missing:
        raise BackupError(
            f"template database {template} lacks the extensions {', '.join(missing)} that database {database} "
            f"uses; as a superuser run CREATE EXTENSION in {template} for each."
        )
    toc = run(["pg_restore", "--list", str(dump_set.dump_path(database))], settings.pg, what="listing the dump")
    extension_tables = set(db_manifest.get("extension_tables", []))
    listing = workdir / "restore.list"
    listing.write_text("\n".join(line for line in toc.splitlines() if not _needs_superuser(line, extension_tables)))
    return ["--no-owner", "--no-acl", "--use-list", str(listing)]


def restore_dump(
    settings: BackupSettings,
    dump_set: DumpSet,
    database: str,
    into: str,
    *,
    replace: bool = False,
    no_owner: bool = False,
) -> None:
    """Restore ``database`` from ``dump_set`` into a new database ``into`` (``replace`` drops it first).

    As a superuser the restore is faithful (owners, grants, extensions). As an unprivileged role (the
    backup role: pg_read_all_data, CREATEDB) it clones ``settings.drill_template``, which must hold the
    extensions, and restores without owners and grants: enough for the drill, not for production.
    """
    verify_files(dump_set, [database])
    argv = ["pg_restore", "--exit-on-error", "-j", str(settings.restore_jobs), "-d", into]
    with tempfile.TemporaryDirectory(prefix="restore-") as tmp:
        if is_superuser(settings.pg):
            create_database(settings.pg, into, replace=replace)
            if no_owner:
                argv += ["--no-owner", "--no-acl"]
        else:
            argv += _unprivileged_setup(settings, dump_set, database, into, replace, Path(tmp))
        run(
            [*argv, str(dump_set.dump_path(database))],
            settings.pg,
            what=f"pg_restore of database {database} into {into}",
        )


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
