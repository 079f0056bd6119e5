#!/usr/bin/env python3
"""Benchmark the backend (`make bench-app`): seed 1,000,000 flights and 300 regions into a throwaway
PostGIS cluster, serve the app with uvicorn on 127.0.0.1, then print P50/P95/P99 per statistics
endpoint and import throughput in rows/s. Goal: P95 ≤ 50 ms per statistics endpoint.

    python -m bench.app [--flights 1000000] [--requests 200] [--import-rows 50000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402
from alembic import command  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import create_engine, create_sessionmaker  # noqa: E402
from app.store import rebuild_all_stats  # noqa: E402
from tests.app.oidc import FakeKeycloak  # noqa: E402
from tests.app.platform import alembic_config, prepare_database  # noqa: E402
from tests.support.postgres import PostgresCluster, free_port  # noqa: E402

GOAL_P95_MS = 50.0
DB = "flypotato_bench"
# Modest tuning for a 2-core machine; durability is irrelevant for a benchmark.
PG_SETTINGS = {
    "shared_buffers": "512MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "effective_cache_size": "2GB",
    "max_wal_size": "4GB",
    "max_parallel_workers_per_gather": 2,
    "random_page_cost": 1.1,
    "jit": "off",
}

# A 20 × 15 grid of 8° × 2° regions between 20°E–180°E and 40°N–70°N.
SEED_REGIONS = """
INSERT INTO app.regions (code, name, geom)
SELECT format('R%s', lpad((gx * 15 + gy + 1)::text, 3, '0')), format('Region %s-%s', gx, gy),
       public.st_multi(public.st_makeenvelope(20 + gx * 8, 40 + gy * 2, 28 + gx * 8, 42 + gy * 2, 4326))
  FROM generate_series(0, 19) gx, generate_series(0, 14) gy
"""

# Flights over 2024, most inside the grid, some outside; short hops. The region comes from the same
# spatial join as an import (region covering the start point).
SEED_FLIGHTS = """
INSERT INTO app.flights (external_id, departed_at, landed_at, start_point, end_point, distance_km, duration_s, region_id)
SELECT format('B%s', g), dep, dep + dur * interval '1 second', sp, ep,
       public.st_distance(sp::public.geography, ep::public.geography) / 1000, dur,
       (SELECT r.id FROM app.regions r WHERE public.st_covers(r.geom, sp) ORDER BY r.id LIMIT 1)
  FROM (
    SELECT g, dep, dur, sp,
           public.st_setsrid(public.st_makepoint(least(180, public.st_x(sp) + (random() - 0.5) * 4),
                                                 greatest(-90, least(90, public.st_y(sp) + (random() - 0.5) * 2))), 4326) AS ep
      FROM (
        SELECT g,
               timestamptz '2024-01-01 00:00:00+00' + random() * interval '366 days' AS dep,
               (300 + random() * 14100)::int AS dur,
               public.st_setsrid(public.st_makepoint(15 + random() * 165, 37 + random() * 35), 4326) AS sp
          FROM generate_series(1, :n) g
      ) a
  ) b
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def seed(settings: Settings, flights: int) -> None:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    maker = create_sessionmaker(engine)
    async with maker() as session:
        # Bulk load without the secondary indexes, then build them once (much faster than row by row).
        indexes = (
            await session.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'app' AND tablename = 'flights' "
                    "AND indexname LIKE 'ix_%'"
                )
            )
        ).all()
        for name, _ in indexes:
            await session.execute(text(f"DROP INDEX app.{name}"))
        started = time.perf_counter()
        await session.execute(text("SET statement_timeout = 0"))
        await session.execute(text(SEED_REGIONS))
        await session.execute(text(SEED_FLIGHTS), {"n": flights})
        log(f"inserted {flights:,} flights (region by spatial join) in {time.perf_counter() - started:.1f}s")
        for _, definition in indexes:
            await session.execute(text(definition))
        log(f"indexes built after {time.perf_counter() - started:.1f}s")
        await rebuild_all_stats(session)
        await session.commit()
        log(f"roll-ups built after {time.perf_counter() - started:.1f}s")
    await engine.dispose()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def import_csv(rows: int, offset: int) -> bytes:
    rnd = random.Random(42)
    out = io.StringIO()
    out.write("external_id,departed_at,landed_at,start_lon,start_lat,end_lon,end_lat\n")
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(rows):
        dep = base + timedelta(seconds=rnd.randrange(0, 90 * 86400))
        arr = dep + timedelta(seconds=rnd.randrange(300, 14400))
        lon, lat = 20 + rnd.random() * 150, 40 + rnd.random() * 30
        out.write(
            f"I{offset + i},{dep.isoformat()},{arr.isoformat()},{lon:.5f},{lat:.5f},{lon + 0.5:.5f},{lat + 0.3:.5f}\n"
        )
    return out.getvalue().encode()


async def measure(
    base_url: str, headers: dict[str, str], requests: int, import_rows: int
) -> tuple[dict[str, list[float]], list[str]]:
    endpoints = {
        "overview": [
            "/api/stats/overview",
            "/api/stats/overview?date_from=2024-03-01&date_to=2024-03-31",
            "/api/stats/overview?region=R150",
        ],
        "regions": ["/api/stats/regions", "/api/stats/regions?date_from=2024-06-01&date_to=2024-06-30"],
        "time": [
            "/api/stats/time",
            "/api/stats/time?granularity=hour&date_from=2024-05-01&date_to=2024-05-07",
            "/api/stats/time?region=R150",
        ],
    }
    results: dict[str, list[float]] = {}
    notes: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        for name, urls in endpoints.items():
            for url in urls:  # warm caches and connections
                for _ in range(10):
                    (await client.get(url)).raise_for_status()
            samples: list[float] = []
            for i in range(requests):
                url = urls[i % len(urls)]
                started = time.perf_counter()
                response = await client.get(url)
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            results[name] = samples
        body = import_csv(import_rows, 0)
        for label in ("new rows", "re-import (unchanged)"):
            started = time.perf_counter()
            response = await client.post("/api/imports/flights", files={"file": ("bench.csv", body, "text/csv")})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"import failed with {response.status_code}: {response.text[:500]}")
            result = response.json()
            notes.append(
                f"import {label}: {import_rows:,} rows in {elapsed:.2f}s = {import_rows / elapsed:,.0f} rows/s end to end "
                f"(inserted {result['inserted']:,}, unchanged {result['unchanged']:,}; server parse+write {result['rows_per_second']:,.0f} rows/s)"
            )
    return results, notes


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the backend exited during startup; see its output above")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the backend did not become ready within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flights", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per statistics endpoint")
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a P95 exceeds {GOAL_P95_MS:g} ms")
    args = parser.parse_args()

    keycloak = FakeKeycloak().start()
    with PostgresCluster(PG_SETTINGS) as pg:
        log(f"PostgreSQL on 127.0.0.1:{pg.port}")
        prepare_database(pg, DB)
        command.upgrade(alembic_config(pg.dsn(DB, user="migrator")), "head")
        settings = Settings(
            database_url=pg.dsn(DB, user="app"),
            keycloak_issuer_url=keycloak.issuer,
            keycloak_jwks_url=keycloak.jwks_url,
            oidc_client_id=keycloak.client_id,
        )
        # Seeding drops and rebuilds indexes, which only their owner (the migrator) may do.
        asyncio.run(
            seed(settings.model_copy(update={"database_url": SecretStr(pg.dsn(DB, user="migrator"))}), args.flights)
        )
        pg.psql("VACUUM ANALYZE", DB)
        log("vacuum analyze done")

        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLY_POTATO_")},
            "FLY_POTATO_PROFILE": "dev",
            "FLY_POTATO_PORT": str(port),
            "FLY_POTATO_LISTEN_HOST": "127.0.0.1",
            "FLY_POTATO_LOG_LEVEL": "warning",
            "FLY_POTATO_DATABASE_URL": pg.dsn(DB, user="app"),
            "FLY_POTATO_KEYCLOAK_ISSUER_URL": keycloak.issuer,
            "FLY_POTATO_KEYCLOAK_JWKS_URL": keycloak.jwks_url,
            "FLY_POTATO_OIDC_CLIENT_ID": keycloak.client_id,
            "PYTHONPATH": str(ROOT),
        }
        proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_ready(base_url, proc)
            headers = keycloak.headers(["admins"], expires_in=3600)
            results, notes = asyncio.run(measure(base_url, headers, args.requests, args.import_rows))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    keycloak.stop()

    print()
    print(f"{'endpoint':<22}{'n':>6}{'P50 ms':>10}{'P95 ms':>10}{'P99 ms':>10}{'mean ms':>10}")
    failed = False
    for name, samples in results.items():
        p95 = percentile(samples, 95)
        failed |= p95 > GOAL_P95_MS
        print(
            f"{'/api/stats/' + name:<22}{len(samples):>6}{percentile(samples, 50):>10.1f}{p95:>10.1f}"
            f"{percentile(samples, 99):>10.1f}{statistics.fmean(samples):>10.1f}"
        )
    print()
    for note in notes:
        print(note)
    print(f"\ngoal P95 ≤ {GOAL_P95_MS:g} ms per statistics endpoint: {'NOT MET' if failed else 'met'}")
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
