"""The throwaway-cluster helper other suites use (tests/support/postgres.py)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.support import postgres as support
from tests.support.postgres import PostgresCluster


def test_extra_settings_and_writable_dirs(postgres_cluster_factory: Callable[..., PostgresCluster]) -> None:
    pg = postgres_cluster_factory(
        fast=False, settings={"wal_level": "replica", "archive_mode": "on", "archive_command": "/bin/true"}
    )
    assert pg.psql("SHOW wal_level") == "replica"
    assert pg.psql("SHOW archive_mode") == "on"
    assert pg.psql("SHOW fsync") == "on"
    assert pg.psql("SHOW listen_addresses") == "127.0.0.1"
    archive = pg.make_dir("wal-archive")
    if os.geteuid() == 0:
        import pwd

        assert archive.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert pg.dsn("x", user="u", driver="postgresql+asyncpg").startswith("postgresql+asyncpg://u@127.0.0.1:")


def test_stop_start_keeps_port_and_remove_cleans_up() -> None:
    pg = PostgresCluster().start()
    port, base = pg.port, pg.base_dir
    pg.stop()
    assert not pg.running
    pg.start()
    assert pg.port == port and pg.psql("SELECT 1") == "1"
    pg.remove()
    assert not base.exists()


def test_missing_binaries_fail_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BIN", "/nonexistent/bin")
    with pytest.raises(support.PostgresNotInstalled, match=r"scripts/deps/postgres\.sh"):
        support.find_pg_bin()
