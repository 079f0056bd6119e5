"""Health, readiness, metrics (bearer token), docs off in prod, CORS, CSP, flow_events, DataLens embeds."""

from __future__ import annotations

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.config import Settings
from app.main import create_app
from tests.app.conftest import METRICS_TOKEN
from tests.app.platform import HEAD

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_liveness(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/healthz"):
        response = await client.get(path)
        assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readiness_reports_migration(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migration": HEAD}


async def test_metrics_need_the_bearer_token(client: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    await client.get("/api/stats/overview", headers=analyst)
    await client.get("/api/stats/overview")
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    body = response.text
    assert 'http_requests_total{method="GET",route="/api/stats/overview",status_class="2xx"} 1.0' in body
    assert 'http_requests_total{method="GET",route="/api/stats/overview",status_class="4xx"} 1.0' in body
    assert 'http_request_duration_seconds_bucket{le="0.05",method="GET",route="/api/stats/overview"}' in body
    assert "db_pool_size" in body and "db_pool_checked_out" in body


async def test_unmatched_paths_do_not_explode_label_cardinality(client: httpx.AsyncClient) -> None:
    await client.get("/no/such/path/12345")
    body = (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    assert 'route="unmatched"' in body and "12345" not in body


async def test_docs_in_dev_only(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> None:
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    prod = settings.model_copy(update={"profile": "prod"})  # validators skipped: only the docs switch matters here
    app = create_app(
        prod, engine=engine, sessionmaker=async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as prod_client:
        assert (await prod_client.get("/openapi.json")).status_code == 404
        assert (await prod_client.get("/docs")).status_code == 404
        assert (await prod_client.get("/health")).status_code == 200


async def test_cors_allows_configured_origin_only(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    good = await client.options("/api/stats/overview", headers={"Origin": "https://flypotato.test", **preflight})
    assert good.status_code == 200 and good.headers["access-control-allow-origin"] == "https://flypotato.test"
    bad = await client.options("/api/stats/overview", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in bad.headers


async def test_csp_limits_framing_to_datalens(client: httpx.AsyncClient) -> None:
    csp = (await client.get("/health")).headers["content-security-policy"]
    assert "frame-ancestors 'self' https://datalens.ru" in csp and "default-src 'none'" in csp


async def test_startup_records_flow_events_with_secrets_masked(app, connection: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    async with app.router.lifespan_context(app):
        pass
    rows = (
        await connection.execute(
            text(
                "SELECT event_type, payload FROM app.flow_events WHERE event_type IN ('startup', 'migration_version') ORDER BY id"
            )
        )
    ).all()
    assert [r.event_type for r in rows] == ["startup", "migration_version"]
    startup = rows[0].payload
    dumped = str(startup)
    assert startup["settings"]["metrics_token"] == "***"
    assert METRICS_TOKEN not in dumped and "BEGIN PRIVATE KEY" not in dumped
    assert rows[1].payload == {"revision": HEAD}


async def test_datalens_embed_token(client: httpx.AsyncClient, analyst: dict[str, str], embed_key_pem: str) -> None:
    response = await client.post(
        "/api/embeds/datalens", json={"dashboard": "regions", "params": {"region": "A"}}, headers=analyst
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert jwt.get_unverified_header(body["token"]) == {"alg": "PS256", "kid": "embed-key-2025", "typ": "JWT"}
    public = load_pem_private_key(embed_key_pem.encode(), None).public_key()
    claims = jwt.decode(body["token"], public, algorithms=["PS256"])  # type: ignore[arg-type]
    assert claims["embedId"] == "rg456" and claims["params"] == {"region": "A"}
    assert claims["dlEmbedService"] == "YC_DATALENS_EMBEDDING_SERVICE_MARK"
    assert claims["exp"] - claims["iat"] == 300
    assert body["embed_url"].endswith(body["token"])
    unknown = await client.post("/api/embeds/datalens", json={"dashboard": "nope"}, headers=analyst)
    assert unknown.status_code == 422
    assert (await client.post("/api/embeds/datalens", json={"dashboard": "time"})).status_code == 401
