"""Which dump failures are the trace of a schema change committed while the dump ran (retried from a new
snapshot, ``backup.dumps.concurrent_ddl``), and which are real failures (raised at once). No server needed; the
race itself is reproduced on a real PostgreSQL in test_concurrent_ddl.py."""

from __future__ import annotations

import pytest

from backup.dumps import concurrent_ddl


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        # the two faces seen on a first deploy, while Keycloak created its schema
        (
            "pg_dump of database keycloak failed (exit 1): pg_dump: error: query failed: ERROR:  relation "
            '"public.client_identity_prov_mapping" does not exist\npg_dump: detail: Query was: LOCK TABLE '
            "public.client_identity_prov_mapping IN ACCESS SHARE MODE",
            True,
        ),
        ("pg_dump of database keycloak failed (exit 1): ERROR:  cache lookup failed for index 19311", True),
        ("counting rows of database app failed (exit 1): ERROR:  could not open relation with OID 16522", True),
        ("pg_dump of database keycloak failed (exit 1): pg_dump: error: schema with OID 16611 does not exist", True),
        ("pg_dump of database keycloak failed (exit 1): ERROR:  cache lookup failed for trigger 17002", True),
        ('pg_dump of database app failed (exit 1): FATAL:  role "backup" does not exist', False),
        ('pg_dump of database app failed (exit 1): FATAL:  database "app" does not exist', False),
        ("pg_dump of database app failed (exit 1): could not write to output file: No space left on device", False),
        ("pg_dump of database app failed (exit 1): ERROR:  permission denied for table flights", False),
    ],
)
def test_only_the_traces_of_a_concurrent_schema_change_are_retried(message: str, retried: bool) -> None:
    assert concurrent_ddl(message) is retried
