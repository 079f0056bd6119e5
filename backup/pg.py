"""Running the PostgreSQL client tools; every failure becomes a :class:`BackupError` sentence."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import PgTarget

log = logging.getLogger("backup")

DRILL_DB_PREFIX = "drill_"  # scratch databases of the restore drill; never dumped


class BackupError(RuntimeError):
    """A backup, restore or drill step failed; the message says which and why."""


def run(
    argv: Sequence[str], target: PgTarget, *, what: str, input_text: str | None = None, timeout: float | None = None
) -> str:
    """Run a client tool against ``target``; return stdout or raise with its stderr."""
    log.debug("running %s", " ".join(argv))
    try:
        result = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            env=target.env(),
            timeout=timeout,
        )
    except FileNotFoundError:
        raise BackupError(f"{what}: {argv[0]} is not installed (the image needs postgresql-client-15).") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s.") from None
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def psql(target: PgTarget, sql: str, dbname: str | None = None, *, what: str = "psql") -> list[list[str]]:
    """Run SQL and return the rows (tab-separated fields, unaligned, tuples only)."""
    out = run(
        [
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dbname or target.maintenance_db,
            "-f",
            "-",
        ],
        target,
        what=what,
        input_text=sql,
    )
    return [line.split("\t") for line in out.splitlines() if line]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def is_superuser(target: PgTarget) -> bool:
    rows = psql(target, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;", what="checking the role")
    return rows == [["t"]]


def list_databases(target: PgTarget) -> list[str]:
    rows = psql(
        target,
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname;",
        what="listing databases",
    )
    return [row[0] for row in rows]


# Row counts of every ordinary table (leaf partitions included) in one statement, so they can run
# inside the snapshot pg_dump uses.
TABLE_COUNTS_SQL = """
SELECT n.nspname || '.' || c.relname,
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')
       ))[1]::text::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1;
"""

# Extensions (a restore needs them) and their configuration tables (data pg_dump includes for them).
EXTENSIONS_SQL = "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1;"
EXTENSION_TABLES_SQL = """
SELECT n.nspname || '.' || c.relname
FROM pg_extension e CROSS JOIN LATERAL unnest(e.extconfig) AS cfg(oid)
JOIN pg_class c ON c.oid = cfg.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
ORDER BY 1;
"""

GEOMETRY_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE t.typname = 'geometry' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
ORDER BY 1, 2, 3;
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def utc_stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def iso_utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
