"""Declarative base, async engine and session factory (SQLAlchemy 2 + asyncpg)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings

APP_SCHEMA = "app"
ANALYTICS_SCHEMA = "analytics"
# Alembic's version table lives apart from the app's tables: the app role may read it, never write it (R-DB-1).
VERSION_SCHEMA = "migrations"  # the readiness queries name migrations.alembic_version
# Aggregate-only functions for the SQL exporter: its role calls them and reads no table (R-DB-1, R-OBS-1).
METRICS_SCHEMA = "metrics"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema=APP_SCHEMA, naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings, **overrides: object) -> AsyncEngine:
    options: dict[str, object] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_pre_ping": True,
        "connect_args": {
            "server_settings": {
                "application_name": "fly-potato-backend",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                # public holds the PostGIS types; app holds our tables.
                "search_path": f"{APP_SCHEMA},public",
            },
            "timeout": 10,
        },
    }
    options.update(overrides)
    if "poolclass" in overrides:  # e.g. NullPool, which takes no sizing arguments
        options.pop("pool_size", None)
        options.pop("max_overflow", None)
    return create_async_engine(settings.async_database_url, **options)


def create_sessionmaker(bind: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False)
