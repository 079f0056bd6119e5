"""Backups for the fly-potato Postgres (R-DB-2): daily dumps, WAL archive, retention, restore drills.

Runs inside the backup container (Python stdlib + postgresql-client-15) as ``python3 -m backup <command>``;
``python3 -m backup --help`` lists the commands. The on-disk layout under ``BACKUP_DIR``::

    dumps/<YYYYmmddTHHMMSSZ>/globals.sql         pg_dumpall --globals-only
    dumps/<stamp>/<db>.dump                       pg_dump -Fc, one per database
    dumps/<stamp>/<db>.manifest.json              row counts and geometry columns at dump time
    dumps/<stamp>/manifest.json                   written last: the set is complete iff it exists
    base/<stamp>/base.tar.gz, pg_wal.tar.gz       pg_basebackup (for point-in-time restore)
    base/<stamp>/manifest.json                    start WAL segment, finish time, size
    drills/<kind>.json                            outcome of the last restore drill
    state/<kind>-failure.json                     last failure, for the metrics

The WAL archive (``BACKUP_WAL_ARCHIVE_DIR``) is written by Postgres' ``archive_command``.
"""
