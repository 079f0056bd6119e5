"""Readiness follows the database: 200 while it answers, 503 (within the timeout) when it is down."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text

from app.db import create_engine
from app.main import create_app
from tests.app.conftest import alembic_config, make_settings, prepare_database
from tests.app.oidc import FakeKeycloak
from tests.app.platform import HEAD
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_ready_turns_503_when_the_database_stops(
    postgres_cluster_factory: Callable[..., PostgresCluster], keycloak: FakeKeycloak
) -> None:
    pg = postgres_cluster_factory()
    prepare_database(pg, "ready")
    import asyncio

    from alembic import command

    await asyncio.to_thread(command.upgrade, alembic_config(pg.dsn("ready", user="migrator")), "head")
    settings = make_settings(pg.dsn("ready", user="app"), keycloak, ready_timeout_seconds=1.0)
    engine = create_engine(settings)
    app = create_app(settings, engine=engine)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client:
            assert (await client.get("/health/ready")).status_code == 200
            pg.stop()
            started = time.monotonic()
            down = await client.get("/health/ready")
            assert down.status_code == 503
            assert down.json() == {"status": "not ready", "database": "unavailable", "migration": None}
            assert time.monotonic() - started < 5
            assert (await client.get("/health")).status_code == 200  # liveness does not depend on the DB
            pg.start()
            back = await client.get("/health/ready")
            assert back.status_code == 200
        async with engine.connect() as conn:
            events = (
                (await conn.execute(text("SELECT payload FROM app.flow_events WHERE event_type = 'readiness'")))
                .scalars()
                .all()
            )
        assert events == [{"ready": True, "was_ready": False, "migration": HEAD}]
    finally:
        await engine.dispose()
