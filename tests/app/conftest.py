"""Fixtures for the backend's tests: one throwaway PostGIS cluster per session, migrated once as
the migrator role; every test runs in a transaction rolled back at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db import create_engine
from app.main import create_app
from tests.app.oidc import FakeKeycloak, new_rsa_key, private_pem
from tests.app.platform import REPO_ROOT, alembic_config, prepare_database
from tests.support.postgres import PostgresCluster, postgis_available, postgres_cluster_factory, start_cluster_or_fail

__all__ = ["REPO_ROOT", "alembic_config", "postgres_cluster_factory", "prepare_database"]

METRICS_TOKEN = "m" * 40
DATABASE = "flypotato"


@dataclass(frozen=True)
class Database:
    cluster: PostgresCluster
    name: str

    @property
    def app_url(self) -> str:
        return self.cluster.dsn(self.name, user="app")

    @property
    def migrator_url(self) -> str:
        return self.cluster.dsn(self.name, user="migrator")


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    cluster = start_cluster_or_fail()
    if not postgis_available(cluster.pg_bin):
        cluster.remove()
        pytest.fail("PostGIS is not installed; run scripts/deps/postgres.sh.", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def database(pg: PostgresCluster) -> Database:
    prepare_database(pg, DATABASE)
    command.upgrade(alembic_config(pg.dsn(DATABASE, user="migrator")), "head")
    # Test-only: lets a test switch to the DataLens role inside its rolled-back transaction.
    pg.psql("GRANT datalens TO app")
    return Database(pg, DATABASE)


@pytest.fixture(scope="session")
def keycloak() -> Iterator[FakeKeycloak]:
    fake = FakeKeycloak().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def embed_key_pem() -> str:
    return private_pem(new_rsa_key())


def make_settings(
    database_url: str, keycloak: FakeKeycloak, embed_key_pem: str | None = None, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "profile": "dev",
        "database_url": database_url,
        "keycloak_issuer_url": keycloak.issuer,
        "keycloak_jwks_url": keycloak.jwks_url,
        "oidc_client_id": keycloak.client_id,
        "cors_origins": ["https://flypotato.test"],
        "datalens_embed_origins": ["https://datalens.ru"],
        "metrics_token": METRICS_TOKEN,
        "datalens_private_key": embed_key_pem,
        "datalens_key_id": "embed-key-2025",
        "datalens_embed_ids": {"overview": "ov123", "regions": "rg456", "time": "tm789"},
        "import_max_bytes": 256 * 1024,
        "import_max_rows": 1000,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database: Database, keycloak: FakeKeycloak, embed_key_pem: str) -> Settings:
    return make_settings(database.app_url, keycloak, embed_key_pem)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings, pool_size=2, max_overflow=0)
    yield eng
    await eng.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


@pytest.fixture
def app(settings: Settings, engine: AsyncEngine, connection: AsyncConnection):  # type: ignore[no-untyped-def]
    maker = async_sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
    return create_app(settings, engine=engine, sessionmaker=maker)


@pytest_asyncio.fixture(loop_scope="session")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://backend.test") as c:
        yield c


@pytest.fixture
def admin(keycloak: FakeKeycloak) -> dict[str, str]:
    return keycloak.headers(["admins"])


@pytest.fixture
def analyst(keycloak: FakeKeycloak) -> dict[str, str]:
    return keycloak.headers(["/analysts"])
