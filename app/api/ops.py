"""Liveness, readiness and metrics (R-APP-1, R-SEC-5)."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.deps import SettingsDep
from app.observability import record_event
from app.schemas import Health, Readiness

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
@router.get("/healthz", response_model=Health, include_in_schema=False)
async def health() -> Health:
    """Liveness: the process serves requests (no dependency checks)."""
    return Health(status="ok")


async def _database_version(request: Request) -> str | None:
    async with request.app.state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        version = (
            await session.execute(text("SELECT version_num FROM migrations.alembic_version LIMIT 1"))
            if await _has_version_table(session)
            else None
        )
        return version.scalar() if version is not None else None


async def _has_version_table(session: object) -> bool:
    result = await session.execute(text("SELECT to_regclass('migrations.alembic_version') IS NOT NULL"))  # type: ignore[attr-defined]
    return bool(result.scalar())


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers within the timeout; 503 otherwise."""
    try:
        version = await asyncio.wait_for(_database_version(request), timeout=settings.ready_timeout_seconds)
        body = Readiness(status="ready", database="ok", migration=version)
        code = status.HTTP_200_OK
    except Exception:
        body = Readiness(status="not ready", database="unavailable")
        code = status.HTTP_503_SERVICE_UNAVAILABLE
    previous = getattr(request.app.state, "ready", None)
    is_ready = code == status.HTTP_200_OK
    if previous is not None and previous != is_ready and is_ready:
        # The change to "not ready" cannot be written while the database is down; it is logged and
        # recorded together with the recovery.
        await record_event(
            request.app.state.sessionmaker,
            "readiness",
            "ready again after database outage",
            {"ready": True, "was_ready": previous, "migration": version},
        )
    request.app.state.ready = is_ready
    return JSONResponse(body.model_dump(), status_code=code)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus exposition; needs ``Authorization: Bearer <token from FLY_POTATO_METRICS_TOKEN_FILE>``."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if expected is not None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
            return Response("metrics need the bearer token", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
