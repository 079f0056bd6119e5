"""A dump taken while another session changes the schema (R-OPS-2, R-DB-2), on a real PostgreSQL 15.

The pre-deploy dump once failed on a first deploy because Keycloak created and dropped its tables while
``pg_dump`` read the ``keycloak`` database: ``relation "public.client_identity_prov_mapping" does not exist``
on ``LOCK TABLE``. Here that race is made deterministic: once the dump's snapshot is taken and its rows
counted, a second session holds ACCESS EXCLUSIVE on a table; when ``pg_dump`` waits for its lock on that table
(seen in ``pg_locks``), the session drops it and commits. The table was in ``pg_dump``'s catalog and is gone
when its lock is granted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import backup.dumps as dumps
from backup.config import BackupSettings, PgTarget
from backup.dumps import list_dump_sets, run_dump_set
from backup.pg import BackupError
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres

WAIT_FOR_PG_DUMP_SECONDS = 30.0


@pytest.fixture
def ddl_db(archiving_cluster: PostgresCluster) -> Iterator[str]:
    name = f"ddl_{uuid.uuid4().hex[:8]}"
    archiving_cluster.create_database(name)
    archiving_cluster.psql(
        "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 10);"
        + "".join(f"CREATE TABLE doomed_{i} (id int); INSERT INTO doomed_{i} VALUES ({i});" for i in (1, 2, 3)),
        dbname=name,
    )
    yield name
    archiving_cluster.drop_database(name)


class DropUnderPgDumpsLock:
    """Wraps ``snapshot_facts``: after each attempt's row counts, the next table of ``tables`` is dropped while
    ``pg_dump`` waits to lock it. Records what it did, and any failure to do it, for the test to assert."""

    def __init__(self, cluster: PostgresCluster, dbname: str, tables: list[str]) -> None:
        self.dsn = cluster.dsn(dbname=dbname)
        self.tables = list(tables)
        self.dropped: list[str] = []
        self.problems: list[str] = []
        self.threads: list[threading.Thread] = []
        self.real = dumps.snapshot_facts

    def __call__(self, target: PgTarget, dbname: str, snapshot: str) -> dict[str, Any]:
        facts = self.real(target, dbname, snapshot)
        if self.tables:
            table = self.tables.pop(0)
            holder = psycopg2.connect(self.dsn)
            with holder.cursor() as cur:
                cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                cur.execute("SELECT %s::regclass::oid", (table,))
                oid = cur.fetchone()[0]
            thread = threading.Thread(target=self._drop_when_pg_dump_waits, args=(holder, table, oid))
            thread.start()
            self.threads.append(thread)
        return facts

    def _drop_when_pg_dump_waits(self, holder: Any, table: str, oid: int) -> None:
        try:
            watcher = psycopg2.connect(self.dsn)
            watcher.autocommit = True
            deadline = time.monotonic() + WAIT_FOR_PG_DUMP_SECONDS
            with watcher.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute(
                        # the backup tools connect as PGAPPNAME=fly-potato-backup (backup.config.PgTarget.env)
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted "
                        "AND l.relation = %s AND a.application_name = 'fly-potato-backup' AND a.query LIKE 'LOCK TABLE%%'",
                        (oid,),
                    )
                    if cur.fetchone()[0]:
                        break
                    time.sleep(0.02)
                else:
                    self.problems.append(f"pg_dump never waited for its lock on {table}")
            watcher.close()
            with holder.cursor() as cur:
                if not self.problems:
                    cur.execute(f"DROP TABLE {table}")
                    self.dropped.append(table)
            holder.commit()
        except Exception as exc:  # the test asserts on it
            self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            holder.close()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=WAIT_FOR_PG_DUMP_SECONDS + 10)


def test_a_table_dropped_while_pg_dump_waits_for_its_lock_is_retried_from_a_new_snapshot(
    settings: BackupSettings,
    archiving_cluster: PostgresCluster,
    ddl_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    race = DropUnderPgDumpsLock(archiving_cluster, ddl_db, ["doomed_1"])
    monkeypatch.setattr(dumps, "snapshot_facts", race)
    with caplog.at_level(logging.WARNING, logger="backup"):
        dump_set = run_dump_set(settings, databases=[ddl_db])
    race.join()
    assert race.problems == [] and race.dropped == ["doomed_1"], race.problems

    retries = [r.getMessage() for r in caplog.records if "schema change" in r.getMessage()]
    assert len(retries) == 1, retries
    assert f"dump of database {ddl_db}" in retries[0] and 'relation "public.doomed_1" does not exist' in retries[0]
    assert "attempt 2 of 3" in retries[0]

    entry = dump_set.manifest["databases"][ddl_db]
    counts = json.loads((dump_set.path / entry["manifest"]).read_text())["row_counts"]
    assert counts == {"public.kept": 10, "public.doomed_2": 1, "public.doomed_3": 1}, "not the new snapshot's"
    listing = dumps.run(["pg_restore", "--list", str(dump_set.path / entry["dump"])], settings.pg, what="listing")
    assert "TABLE public kept" in listing and "doomed_1" not in listing


def test_a_schema_that_keeps_changing_fails_after_the_bounded_attempts_and_leaves_no_dump_set(
    settings: BackupSettings, archiving_cluster: PostgresCluster, ddl_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    race = DropUnderPgDumpsLock(archiving_cluster, ddl_db, ["doomed_1", "doomed_2", "doomed_3"])
    monkeypatch.setattr(dumps, "snapshot_facts", race)
    with pytest.raises(BackupError) as failure:
        run_dump_set(settings, databases=[ddl_db])
    race.join()
    assert race.problems == [] and race.dropped == ["doomed_1", "doomed_2", "doomed_3"], race.problems
    message = str(failure.value)
    assert f"pg_dump of database {ddl_db} failed" in message and 'relation "public.doomed_3"' in message
    assert "changed under each of 3 attempts" in message and "run the dump again" in message
    left = [p.name for p in Path(settings.dumps_dir).iterdir() if p.name != dumps.LOCK_FILE]
    assert list_dump_sets(settings) == [] and left == [], f"a partial set was left: {left}"


def test_any_other_failure_is_not_retried(
    settings: BackupSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that is not there is no schema change: one attempt, no retry, the server's own words."""
    attempts: list[str] = []
    real = dumps._dump_database_once

    def counted(*args: Any) -> dict[str, Any]:
        attempts.append(args[1])
        return real(*args)

    monkeypatch.setattr(dumps, "_dump_database_once", counted)
    with caplog.at_level(logging.WARNING, logger="backup"), pytest.raises(BackupError) as failure:
        dumps.dump_database(settings.pg, "no_such_database", tmp_path, "x")
    assert attempts == ["no_such_database"], attempts
    assert not [r for r in caplog.records if "schema change" in r.getMessage()]
    assert 'database "no_such_database" does not exist' in str(failure.value)


# -- dump sets queue; a scheduled dump is not taken after a pre-deploy one ------------------------------------


def test_dump_sets_queue_on_a_backup_volume(
    settings: BackupSettings, ddl_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The service's dump and the release's pre-deploy dump (``docker exec … dump``) never overlap: a second
    one waits for the first to finish, then takes its own set under the next stamp."""
    taken: list[Any] = []
    with caplog.at_level(logging.INFO, logger="backup"), dumps.dump_lock(settings):
        waiting = threading.Thread(target=lambda: taken.append(run_dump_set(settings, databases=[ddl_db])))
        waiting.start()
        deadline = time.monotonic() + WAIT_FOR_PG_DUMP_SECONDS
        while not any("waiting for it to finish" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline and waiting.is_alive(), "the second dump did not wait"
            time.sleep(0.02)
        released = time.time()
    waiting.join(timeout=60)
    (dump_set,) = taken
    assert dump_set.manifest["started_at"] >= released, "the second dump started while the first held the lock"
    again = run_dump_set(settings, databases=[ddl_db])  # back to back, within the same second or not
    assert again.stamp != dump_set.stamp and len(list_dump_sets(settings)) == 2


def test_a_scheduled_dump_is_not_taken_again_after_a_pre_deploy_dump_since_it_was_due(
    settings: BackupSettings, ddl_db: str
) -> None:
    """The service's catch-up dump at start-up is due from the moment the service started. When the release's
    pre-deploy dump completed since (it ran while the service's waited for the lock, or first), the service
    takes no second set, so none of its dumps runs after the pre-deploy one while a new Keycloak starts."""
    due = time.time()
    pre_deploy = run_dump_set(settings, databases=[ddl_db])
    scheduled = run_dump_set(settings, databases=[ddl_db], unless_done_since=due)
    assert scheduled.path == pre_deploy.path and len(list_dump_sets(settings)) == 1
    # Due after the newest set finished (the next day's run): a new set.
    later = run_dump_set(settings, databases=[ddl_db], unless_done_since=time.time())
    assert later.path != pre_deploy.path and len(list_dump_sets(settings)) == 2
