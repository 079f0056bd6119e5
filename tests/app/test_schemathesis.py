"""Property-based run over the OpenAPI schema: no input may produce a 5xx."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
import schemathesis
from alembic import command
from hypothesis import HealthCheck, given, settings
from sqlalchemy.pool import NullPool

with warnings.catch_warnings():  # starlette prefers httpx2 for its TestClient; httpx is what schemathesis uses
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from app.config import Settings
from app.db import create_engine
from app.main import create_app
from tests.app.conftest import alembic_config, make_settings, prepare_database
from tests.app.data import FLIGHTS_CSV, REGIONS_GEOJSON
from tests.app.oidc import FakeKeycloak
from tests.support.postgres import PostgresCluster

MAX_EXAMPLES = int(os.environ.get("FLY_POTATO_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="session")
def fuzz_app(pg: PostgresCluster, keycloak: FakeKeycloak, embed_key_pem: str) -> Any:
    prepare_database(pg, "fuzz")
    command.upgrade(alembic_config(pg.dsn("fuzz", user="migrator")), "head")
    app_settings = make_settings(pg.dsn("fuzz", user="app"), keycloak, embed_key_pem)
    # Each schemathesis call runs the app in a fresh event loop: connections must not outlive a request.
    app = create_app(app_settings, engine=create_engine(app_settings, poolclass=NullPool))
    with TestClient(app) as client:
        headers = keycloak.headers(["admins"])
        assert (
            client.post(
                "/api/imports/regions", files={"file": ("r.geojson", REGIONS_GEOJSON)}, headers=headers
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/api/imports/flights", files={"file": ("f.csv", FLIGHTS_CSV.encode())}, headers=headers
            ).status_code
            == 200
        )
    return app


@pytest.fixture(scope="session")
def api_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="session")
def admin_headers(keycloak: FakeKeycloak) -> dict[str, str]:
    return keycloak.headers(["admins"], expires_in=3600)


def _operations() -> list[tuple[str, str]]:
    # Building the app opens no connection, so the operations are known at collection time.
    spec = create_app(Settings()).openapi()
    return [(method.upper(), path) for path, methods in spec["paths"].items() for method in methods]


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_no_server_errors(method: str, path: str, api_schema: Any, admin_headers: dict[str, str]) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        response = case.call(headers=admin_headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )

    run()
