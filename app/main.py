"""The FastAPI application factory (``uvicorn app.main:create_app --factory``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api import data, embeds, imports, ops
from app.auth import TokenVerifier
from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.embeds import EmbedSigner
from app.observability import Metrics, MetricsMiddleware, record_event

log = logging.getLogger("fly_potato")
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


class SecurityHeadersMiddleware:
    """CSP limiting who may frame us to the DataLens embed origins (R-APP-3), plus nosniff."""

    def __init__(self, app: ASGIApp, embed_origins: list[str]) -> None:
        self.app = app
        origins = " ".join(embed_origins)
        frame_src = origins or "'none'"
        self.csp = f"default-src 'none'; frame-src {frame_src}; frame-ancestors 'self' {origins}".strip()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(DOC_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", self.csp.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _migration_version(maker: async_sessionmaker[AsyncSession]) -> str | None:
    try:
        async with maker() as session:
            if (await session.execute(text("SELECT to_regclass('migrations.alembic_version') IS NOT NULL"))).scalar():
                return (await session.execute(text("SELECT version_num FROM migrations.alembic_version"))).scalar()
    except Exception as exc:
        log.warning("could not read the migration version: %s", exc.__class__.__name__)
    return None


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build the app; tests pass their own engine/sessionmaker (e.g. bound to a rolled-back transaction)."""
    settings = settings or get_settings()
    owns_engine = engine is None
    engine = engine or create_engine(settings)
    maker = sessionmaker or create_sessionmaker(engine)
    metrics = Metrics()
    metrics.watch_pool(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        version = await _migration_version(maker)
        await record_event(
            maker,
            "startup",
            f"backend {__version__} started",
            {
                "version": __version__,
                "profile": settings.profile,
                "settings": settings.masked(),
            },
        )
        await record_event(maker, "migration_version", f"database at migration {version}", {"revision": version})
        log.info("fly-potato backend %s up (profile %s, migration %s)", __version__, settings.profile, version)
        try:
            yield
        finally:
            if owns_engine:
                await engine.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title=settings.app_title,
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = maker
    app.state.metrics = metrics
    app.state.token_verifier = token_verifier or TokenVerifier(settings)
    app.state.embed_signer = EmbedSigner(settings)
    app.state.ready = None

    app.include_router(ops.router)
    app.include_router(data.router)
    app.include_router(imports.router)
    app.include_router(embeds.router)

    app.add_middleware(SecurityHeadersMiddleware, embed_origins=settings.datalens_embed_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times everything
    return app


def run(**overrides: Any) -> None:
    import uvicorn

    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError and SettingsError: print the sentences, no traceback
        raise SystemExit(f"fly-potato backend: invalid settings: {exc}") from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level,
        proxy_headers=True,
        server_header=False,
        **overrides,
    )
