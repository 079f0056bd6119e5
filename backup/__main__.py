"""``python3 -m backup <command>``: the backup container's entry point and the operator's tool.

Exit status 0 on success, 1 when a backup/restore step fails, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import urllib.request
from pathlib import Path

from .basebackup import base_backup_for, take_base_backup
from .config import BackupSettings, ConfigError
from .dumps import latest_dump_set, load_dump_set, run_dump_set
from .metrics import collect, render
from .pg import BackupError
from .pitr import parse_target_time, prepare_recovery, run_pitr_drill
from .restore import restore_dump, run_restore_drill
from .retention import prune
from .service import BackupService, check_wal_archive, run_job
from .wal import archive_command, check_continuity, restore_command


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m backup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("service", help="run the scheduler and the metrics server (the container's command)")
    sub.add_parser("dump", help="take a dump set now (release step 1: backup)")
    sub.add_parser("basebackup", help="take a base backup now")
    pr = sub.add_parser("prune", help="apply retention now")
    pr.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    dr = sub.add_parser("drill", help="restore the newest dump set into scratch databases and verify it")
    dr.add_argument("--set", dest="stamp", help="dump set to drill (default: newest)")
    dr.add_argument("--database", action="append", help="only this database (repeatable)")
    dr.add_argument("--keep", action="store_true", help="keep the scratch databases for inspection")
    rs = sub.add_parser("restore", help="restore one database from a dump set into a database")
    rs.add_argument("--database", required=True, help="database name in the dump set")
    rs.add_argument("--into", required=True, help="target database (created; see --replace)")
    rs.add_argument("--set", dest="stamp", help="dump set (default: newest)")
    rs.add_argument("--replace", action="store_true", help="drop the target database first (WITH FORCE)")
    rs.add_argument("--no-owner", action="store_true", help="skip ownership and ACLs (foreign server)")
    rs.add_argument("--as", dest="as_user", help="connect as this role (e.g. postgres) instead of the backup role")
    rs.add_argument("--password-stdin", action="store_true", help="read that role's password from stdin")
    pt = sub.add_parser("pitr", help="prepare a data directory that recovers to --target-time on start")
    pt.add_argument("--target-time", help="ISO 8601, e.g. 2025-01-31T13:45:00Z (default: replay all WAL)")
    pt.add_argument("--data-dir", required=True, type=Path, help="empty directory to become PGDATA")
    pt.add_argument(
        "--server-wal-archive", help="the WAL archive path as the server sees it (default: BACKUP_WAL_ARCHIVE_DIR)"
    )
    pd = sub.add_parser("pitr-drill", help="restore base backup + WAL into a scratch server and check it")
    pd.add_argument("--target-time")
    sub.add_parser("check-wal", help="check the WAL archive has no gap after the newest base backup")
    sub.add_parser("metrics", help="print the metrics")
    sub.add_parser("health", help="exit 0 when the service's /healthz answers (container healthcheck)")
    sub.add_parser("show-config", help="print the postgresql.conf lines for WAL archiving")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    try:
        settings = BackupSettings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: BackupSettings) -> int:
    cmd = args.command
    if cmd == "service":
        BackupService(settings).run_forever()
        return 0
    if cmd == "health":
        url = f"http://127.0.0.1:{settings.metrics_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return 0 if response.status == 200 else 1
        except OSError as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return 1
    if cmd == "show-config":
        print("wal_level = replica")
        print("archive_mode = on")
        print(f"archive_command = '{archive_command(settings.wal_archive_dir)}'")
        print(f"archive_timeout = {settings.archive_timeout_seconds}")
        print(f"# restore_command (PITR): '{restore_command(settings.wal_archive_dir)}'")
        return 0
    if cmd == "metrics":
        sys.stdout.write(render(collect(settings)))
        return 0
    if cmd == "check-wal":
        if not run_job(settings, "wal_check", lambda: check_wal_archive(settings)):
            return 1
        base = base_backup_for(settings, None)
        report = check_continuity(settings.wal_archive_dir, base.start_segment, settings.wal_segment_bytes)
        print(
            json.dumps(
                {"base_backup": base.path.name, "first": report.first, "last": report.last, "missing": report.missing},
                indent=2,
            )
        )
        return 0 if report.ok else 1
    if cmd == "restore":
        if args.as_user or args.password_stdin:
            password = sys.stdin.readline().strip() if args.password_stdin else None
            pg = dataclasses.replace(settings.pg, user=args.as_user or settings.pg.user, password=password)
            settings = dataclasses.replace(settings, pg=pg)
        dump_set = load_dump_set(settings.dumps_dir / args.stamp) if args.stamp else latest_dump_set(settings)
        restore_dump(settings, dump_set, args.database, args.into, replace=args.replace, no_owner=args.no_owner)
        print(f"restored {args.database} from dump set {dump_set.stamp} into {args.into}")
        return 0
    if cmd == "pitr":
        target = parse_target_time(args.target_time) if args.target_time else None
        base = base_backup_for(settings, target.timestamp() if target else None)
        prepare_recovery(base, args.data_dir, Path(args.server_wal_archive or settings.wal_archive_dir), target)
        print(
            f"{args.data_dir} holds base backup {base.path.name} and recovers to "
            f"{target.isoformat() if target else 'the end of the WAL archive'} on the next start"
        )
        return 0
    jobs = {
        "dump": lambda: run_dump_set(settings),
        "basebackup": lambda: take_base_backup(settings),
        "prune": lambda: prune(settings, dry_run=args.dry_run),
        "drill": lambda: run_restore_drill(settings, stamp=args.stamp, databases=args.database, keep=args.keep),
        "pitr-drill": lambda: run_pitr_drill(
            settings, parse_target_time(args.target_time) if args.target_time else None
        ),
    }
    job = cmd.replace("-", "_")
    if cmd == "prune" and args.dry_run:
        for path in prune(settings, dry_run=True).all:
            print(path)
        return 0
    ok = run_job(settings, job, jobs[cmd])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
