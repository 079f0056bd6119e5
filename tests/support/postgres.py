"""Throwaway PostgreSQL clusters for tests.

A :class:`PostgresCluster` runs ``initdb`` into a temporary directory, starts the server on a
free loopback port (unix sockets stay inside that directory), and removes everything on
teardown. PostgreSQL refuses to run as root, so when the tests run as root the server
binaries are run as the ``postgres`` system user through ``runuser``.

Binaries come from Debian's ``postgresql-15`` (``/usr/lib/postgresql/15/bin``) unless
``PG_BIN`` names another directory. When they are missing the helper fails (it never
skips) with a sentence that says to run ``scripts/deps/postgres.sh``.

Usage in a test suite::

    from tests.support.postgres import PostgresCluster, postgres_cluster_fixture

    pg = postgres_cluster_fixture(scope="session", settings={"wal_level": "replica"})

    def test_something(pg: PostgresCluster) -> None:
        assert pg.psql("select 1") == "1"

or, for clusters created inside a test, the ``postgres_cluster_factory`` fixture (import it
into a conftest) returns a callable that takes the same keyword arguments as the class.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

PG_MAJOR = "15"
DEFAULT_PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
INSTALL_HINT = (
    "Run scripts/deps/postgres.sh to install postgresql-15 and postgresql-15-postgis-3 "
    "(or set PG_BIN to a directory holding initdb, pg_ctl, postgres and psql)."
)
SERVICE_USER = "postgres"
SUPERUSER = "postgres"

# Durability is useless for a throwaway cluster and costs seconds per test run.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresNotInstalled(RuntimeError):
    """The PostgreSQL server binaries (or PostGIS) are not installed."""


class PostgresStartError(RuntimeError):
    """The server did not start; the message carries the tail of its log."""


def find_pg_bin() -> Path:
    """Return the directory with the PostgreSQL server binaries, or raise a sentence saying how to get them."""
    candidate = Path(os.environ.get("PG_BIN", DEFAULT_PG_BIN))
    missing = [name for name in ("initdb", "pg_ctl", "postgres", "psql") if not (candidate / name).exists()]
    if missing:
        raise PostgresNotInstalled(f"PostgreSQL binaries {', '.join(missing)} not found in {candidate}. {INSTALL_HINT}")
    return candidate


def postgis_available(pg_bin: Path | None = None) -> bool:
    """True when the PostGIS extension is installed for this PostgreSQL."""
    bindir = pg_bin or find_pg_bin()
    sharedir = (
        subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if (bindir / "pg_config").exists()
        else f"/usr/share/postgresql/{PG_MAJOR}"
    )
    return (Path(sharedir) / "extension" / "postgis.control").exists()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote_setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresCluster:
    """One throwaway PostgreSQL cluster: ``start()``, use ``dsn()``/``psql()``, ``remove()``.

    ``settings`` are appended to postgresql.conf (e.g. ``{"wal_level": "replica",
    "archive_mode": "on", "archive_command": "cp %p /some/dir/%f"}``); ``fast=True`` adds
    settings that trade durability for speed (fsync off) and is overridden by ``settings``.
    Use :meth:`make_dir` for directories the server must write to (e.g. a WAL archive):
    they are owned by the user the server runs as.
    """

    def __init__(
        self,
        settings: Mapping[str, object] | None = None,
        *,
        fast: bool = True,
        base_dir: str | os.PathLike[str] | None = None,
        pg_bin: str | os.PathLike[str] | None = None,
        initdb_args: tuple[str, ...] = (),
        hba_lines: tuple[str, ...] = (),
    ) -> None:
        self.pg_bin = Path(pg_bin) if pg_bin else find_pg_bin()
        self.settings: dict[str, object] = {**(FAST_SETTINGS if fast else {}), **dict(settings or {})}
        self.initdb_args = initdb_args
        self.hba_lines = hba_lines
        self._owns_base_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="fly-potato-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "server.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.superuser = SUPERUSER
        self._run_as = SERVICE_USER if os.geteuid() == 0 else None
        self._initialised = False
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """initdb on first call, then start the server and wait until it accepts connections."""
        if not self._initialised:
            self._initdb()
        if self._running:
            return self
        attempts = 3
        for attempt in range(1, attempts + 1):
            if not self.port or attempt > 1:
                self.port = free_port()
            self._write_runtime_conf()
            result = self._run_server_tool(
                [
                    str(self.pg_bin / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            if result.returncode == 0:
                self._running = True
                _LIVE_CLUSTERS.add(self)
                return self
            if attempt == attempts:
                raise PostgresStartError(
                    f"PostgreSQL did not start on 127.0.0.1:{self.port}: {result.stderr.strip()}\n"
                    f"--- {self.log_file} ---\n{self.log_tail()}"
                )
            time.sleep(0.2)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode`` is pg_ctl's: smart, fast or immediate); the data stays.

        With ``fast=True`` (synchronous_commit off) an ``immediate`` stop may lose the last commits.
        """
        if not self._running:
            return
        self._run_server_tool([str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])
        self._running = False

    def restart(self) -> None:
        """Stop and start on the same port (e.g. after changing settings that need a restart)."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the server at once and delete its directory (keeping its log if the server crashed)."""
        try:
            self.stop(mode="immediate")
        finally:
            self._keep_log_of_a_crash()
            _LIVE_CLUSTERS.discard(self)
            if self._owns_base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _keep_log_of_a_crash(self) -> None:
        """A server process that died (postmaster restarts into recovery) is otherwise only visible as
        "not yet accepting connections" in a later test: keep the log for diagnosis and say where."""
        try:
            log = self.log_file.read_text(errors="replace")
        except OSError:
            return
        if "terminated by signal" not in log and "PANIC" not in log:
            return
        kept = Path(tempfile.gettempdir()) / f"fly-potato-postgres-crash-{self.port}.log"
        kept.write_text(log)
        sys.stderr.write(
            f"\nPostgreSQL test cluster on port {self.port} had a crashed server process; log kept in {kept}\n"
        )

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def running(self) -> bool:
        return self._running

    # -- connecting --------------------------------------------------------------------

    def dsn(
        self,
        dbname: str = "postgres",
        *,
        user: str | None = None,
        password: str | None = None,
        driver: str = "postgresql",
    ) -> str:
        """A URL over TCP loopback, e.g. ``postgresql://postgres@127.0.0.1:PORT/postgres``.

        ``driver`` is the URL scheme (``postgresql+asyncpg`` for SQLAlchemy's asyncpg dialect).
        """
        auth = user or self.superuser
        if password is not None:
            auth += f":{password}"
        return f"{driver}://{auth}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres", *, user: str | None = None) -> str:
        """Run SQL with psql (ON_ERROR_STOP; statements autocommit one by one); return unaligned, tuples-only output."""
        result = subprocess.run(
            [
                str(self.pg_bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                user or self.superuser,
                "-d",
                dbname,
                "-f",
                "-",
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            env=self._client_env(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}\nSQL: {sql}")
        return result.stdout.strip()

    def create_database(self, name: str, *, template: str | None = None, owner: str | None = None) -> str:
        """Create a database and return its DSN."""
        clause = f' TEMPLATE "{template}"' if template else ""
        clause += f' OWNER "{owner}"' if owner else ""
        self.psql(f'CREATE DATABASE "{name}"{clause}')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def make_dir(self, name: str) -> Path:
        """A directory inside the cluster's temp dir that the server process may write to."""
        path = self.base_dir / name
        path.mkdir(parents=True, exist_ok=True)
        self._chown(path)
        return path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- internals ---------------------------------------------------------------------

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.base_dir)
        self._chown(self.socket_dir)
        result = self._run_server_tool(
            [
                str(self.pg_bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                *self.initdb_args,
            ],
        )
        if result.returncode != 0:
            raise PostgresStartError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\n# throwaway test cluster\n")
            fh.write("listen_addresses = '127.0.0.1'\n")
            fh.write(f"unix_socket_directories = {_quote_setting(str(self.socket_dir))}\n")
            fh.write("include_if_exists = 'runtime.conf'\n")
            for key, value in self.settings.items():
                fh.write(f"{key} = {_quote_setting(value)}\n")
        if self.hba_lines:
            hba = self.data_dir / "pg_hba.conf"
            original = hba.read_text()
            hba.write_text("\n".join(self.hba_lines) + "\n" + original)
        self._initialised = True

    def _write_runtime_conf(self) -> None:
        runtime = self.data_dir / "runtime.conf"
        runtime.write_text(f"port = {self.port}\n")
        self._chown(runtime)

    def _chown(self, path: Path) -> None:
        if self._run_as is None:
            return
        entry = pwd.getpwnam(self._run_as)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def _client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    def _run_server_tool(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            try:
                pwd.getpwnam(self._run_as)
            except KeyError as exc:
                raise PostgresNotInstalled(
                    f"Running as root needs the '{self._run_as}' system user to own the server. {INSTALL_HINT}"
                ) from exc
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        env = self._client_env()
        env["LC_ALL"] = "C"
        return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=str(self.base_dir))


_LIVE_CLUSTERS: set[PostgresCluster] = set()


@atexit.register
def _stop_forgotten_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        with contextlib.suppress(Exception):
            cluster.remove()


# -- pytest glue -----------------------------------------------------------------------


def start_cluster_or_fail(**kwargs: Any) -> PostgresCluster:
    """Start a cluster; a missing installation fails the test (never skips) with the fix."""
    try:
        return PostgresCluster(**kwargs).start()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


def postgres_cluster_fixture(scope: str = "session", **kwargs: Any) -> Any:
    """Build a pytest fixture yielding a started :class:`PostgresCluster` (kwargs go to the class)."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _cluster() -> Iterator[PostgresCluster]:
        cluster = start_cluster_or_fail(**kwargs)
        try:
            yield cluster
        finally:
            cluster.remove()

    return _cluster


@pytest.fixture
def postgres_cluster_factory() -> Iterator[Callable[..., PostgresCluster]]:
    """A callable that starts clusters (same kwargs as :class:`PostgresCluster`); all removed after the test."""
    created: list[PostgresCluster] = []

    def _make(**kwargs: Any) -> PostgresCluster:
        cluster = start_cluster_or_fail(**kwargs)
        created.append(cluster)
        return cluster

    yield _make
    for cluster in created:
        cluster.remove()
