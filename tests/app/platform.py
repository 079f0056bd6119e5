"""What the Pulumi program sets up in PostgreSQL for a stack, reproduced for tests and the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support.postgres import PostgresCluster

REPO_ROOT = Path(__file__).resolve().parents[2]


def head_revision() -> str:
    """The newest migration's revision: what a migrated database and the readiness report carry."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head, "the migrations have no head"
    return head


HEAD = head_revision()


def alembic_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``alembic ARGS`` (default ``upgrade head``) as the migration container runs it: the repository's
    alembic.ini, nothing in the environment but PATH and what ``env`` gives (the migrator's URL)."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *(args or ("upgrade", "head"))],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def alembic_config(url: str) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def prepare_database(pg: PostgresCluster, name: str) -> None:
    """Roles (migrator, app, datalens), the database, PostGIS, schemas owned by the migrator, and
    default privileges giving the app role DML and the DataLens role SELECT on what the migrator creates."""
    pg.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'migrator') THEN CREATE ROLE migrator LOGIN; END IF;"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app LOGIN; END IF;"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datalens') THEN CREATE ROLE datalens LOGIN; END IF; END $$;"
    )
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql(
        "CREATE EXTENSION postgis;"
        " CREATE SCHEMA app AUTHORIZATION migrator; CREATE SCHEMA analytics AUTHORIZATION migrator;"
        " CREATE SCHEMA migrations AUTHORIZATION migrator; CREATE SCHEMA metrics AUTHORIZATION migrator;"
        " GRANT USAGE ON SCHEMA app TO app; GRANT USAGE ON SCHEMA analytics TO datalens;"
        " GRANT USAGE ON SCHEMA migrations TO app;"
        " ALTER DEFAULT PRIVILEGES FOR ROLE migrator IN SCHEMA migrations GRANT SELECT ON TABLES TO app;"
        " ALTER DEFAULT PRIVILEGES FOR ROLE migrator IN SCHEMA app GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app;"
        " ALTER DEFAULT PRIVILEGES FOR ROLE migrator IN SCHEMA app GRANT USAGE, SELECT ON SEQUENCES TO app;"
        " ALTER DEFAULT PRIVILEGES FOR ROLE migrator IN SCHEMA analytics GRANT SELECT ON TABLES TO datalens;",
        name,
    )
