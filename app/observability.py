"""Prometheus metrics (requests by status class, latency histogram, DB pool) and flow_events."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.models import FlowEvent

log = logging.getLogger("fly_potato")

# Fine enough around the SLO (P95 ≤ 500 ms) and the 50 ms goal for histogram_quantile to be useful.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)

SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|private_key|authorization|cookie|dsn|_url)", re.I)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@", re.I)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route and status class",
            ["method", "route", "status_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.imported_rows = Counter(
            "imported_rows_total",
            "Rows accepted by imports",
            ["kind"],
            registry=self.registry,
        )

    def watch_pool(self, engine: AsyncEngine) -> None:
        self.registry.register(PoolCollector(engine))


class PoolCollector(Collector):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool: Any = self.engine.sync_engine.pool
        for name, doc, attr in (
            ("db_pool_size", "Configured pool size", "size"),
            ("db_pool_checked_out", "Connections in use", "checkedout"),
            ("db_pool_checked_in", "Idle connections in the pool", "checkedin"),
            ("db_pool_overflow", "Connections beyond the pool size", "overflow"),
        ):
            method = getattr(pool, attr, None)
            if method is not None:
                yield GaugeMetricFamily(name, doc, value=float(method()))


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware); labels use the route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template != "/metrics":
                method = scope.get("method", "GET")
                self.metrics.requests.labels(method, template, f"{status // 100}xx").inc()
                self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)


def mask(value: Any, key: str = "") -> Any:
    """Mask secrets in event payloads: secret-looking keys, URL passwords, bearer tokens."""
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if key and SECRET_KEY_PATTERN.search(key) and "://" not in value:
            return "***" if value else value
        masked = URL_PASSWORD.sub(r"\g<scheme>:***@", value)
        return re.sub(r"(?i)bearer\s+[a-z0-9._~+/=-]+", "Bearer ***", masked)
    return value


async def record_event(
    maker: async_sessionmaker[AsyncSession], event_type: str, message: str, payload: dict[str, Any] | None = None
) -> None:
    """Write a flow_event in its own transaction; never fails the caller (the DB may be down)."""
    try:
        async with maker() as session:
            session.add(FlowEvent(event_type=event_type, message=mask(message), payload=mask(payload or {})))
            await session.commit()
    except Exception as exc:
        log.warning("flow_event %s not recorded: %s", event_type, exc.__class__.__name__)
