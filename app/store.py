"""Writes: flight and region upserts (idempotent) and the statistics roll-ups they keep in step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ingest import FlightRow, RegionFeature

# Serialises imports: two at once would fight over the same roll-up rows.
IMPORT_LOCK_KEY = 7_301_119
# Imports may take longer than API statements (the roll-up refresh, the region re-join over all flights).
IMPORT_STATEMENT_TIMEOUT = "10min"

STAGING_COLUMNS = (
    "external_id",
    "departed_at",
    "landed_at",
    "start_lon",
    "start_lat",
    "end_lon",
    "end_lat",
    "track_wkt",
)

REGION_OF_POINT = """(SELECT r.id FROM app.regions r WHERE public.st_covers(r.geom, {point}) ORDER BY r.id LIMIT 1)"""


MONTHLY_FROM_DAILY = """
        INSERT INTO app.flight_monthly_region_stats
               (month, region_id, flights, duration_s_sum, duration_s_max, distance_km_sum, distance_km_max)
        SELECT date_trunc('month', day)::date, region_id, sum(flights), sum(duration_s_sum), max(duration_s_max),
               sum(distance_km_sum), max(distance_km_max)
          FROM app.flight_daily_region_stats
"""


@dataclass(frozen=True)
class UpsertCounts:
    received: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted - self.updated

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


async def _raw_connection(session: AsyncSession) -> Any:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def _begin_import(session: AsyncSession) -> None:
    await session.execute(text(f"SET LOCAL statement_timeout = '{IMPORT_STATEMENT_TIMEOUT}'"))
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": IMPORT_LOCK_KEY})


async def _drop_scratch_tables(session: AsyncSession) -> None:
    # ON COMMIT DROP does not fire when the caller's transaction continues (savepoints in tests).
    await session.execute(
        text("DROP TABLE IF EXISTS pg_temp.flight_import, pg_temp.affected_hours, pg_temp.affected_days")
    )


async def upsert_flights(session: AsyncSession, rows: list[FlightRow]) -> UpsertCounts:
    """Insert new flights, update changed ones (same external id), leave identical ones untouched."""
    await _begin_import(session)
    await _drop_scratch_tables(session)
    await session.execute(
        text(
            "CREATE TEMP TABLE flight_import (external_id text, departed_at timestamptz, landed_at timestamptz, "
            "start_lon float8, start_lat float8, end_lon float8, end_lat float8, track_wkt text) ON COMMIT DROP"
        )
    )
    driver = await _raw_connection(session)
    await driver.copy_records_to_table("flight_import", records=[r.as_record() for r in rows], columns=STAGING_COLUMNS)
    # Hours whose roll-ups change: the new departure times and the old ones of flights being replaced.
    await session.execute(
        text(
            "CREATE TEMP TABLE affected_hours ON COMMIT DROP AS "
            "SELECT DISTINCT date_trunc('hour', t, 'UTC') AS hour FROM ("
            "  SELECT departed_at AS t FROM flight_import"
            "  UNION ALL SELECT f.departed_at FROM app.flights f JOIN flight_import i USING (external_id)"
            ") x"
        )
    )
    result = await session.execute(
        text(f"""
        WITH src AS (
            SELECT i.external_id, i.departed_at, i.landed_at,
                   public.st_setsrid(public.st_makepoint(i.start_lon, i.start_lat), 4326) AS start_point,
                   public.st_setsrid(public.st_makepoint(i.end_lon, i.end_lat), 4326) AS end_point,
                   CASE WHEN i.track_wkt IS NULL THEN NULL ELSE public.st_geomfromtext(i.track_wkt, 4326) END AS track
              FROM flight_import i
        ), derived AS (
            SELECT s.*,
                   CASE WHEN s.track IS NOT NULL THEN public.st_length(s.track::public.geography)
                        ELSE public.st_distance(s.start_point::public.geography, s.end_point::public.geography)
                   END / 1000.0 AS distance_km,
                   extract(epoch FROM s.landed_at - s.departed_at)::int AS duration_s,
                   {REGION_OF_POINT.format(point="s.start_point")} AS region_id
              FROM src s
        )
        INSERT INTO app.flights AS f
               (external_id, departed_at, landed_at, start_point, end_point, track, distance_km, duration_s, region_id)
        SELECT external_id, departed_at, landed_at, start_point, end_point, track, distance_km, duration_s, region_id
          FROM derived
        ON CONFLICT (external_id) DO UPDATE
           SET departed_at = EXCLUDED.departed_at, landed_at = EXCLUDED.landed_at,
               start_point = EXCLUDED.start_point, end_point = EXCLUDED.end_point, track = EXCLUDED.track,
               distance_km = EXCLUDED.distance_km, duration_s = EXCLUDED.duration_s,
               region_id = EXCLUDED.region_id, updated_at = now()
         WHERE (f.departed_at, f.landed_at, f.start_point, f.end_point, f.track, f.region_id)
               IS DISTINCT FROM
               (EXCLUDED.departed_at, EXCLUDED.landed_at, EXCLUDED.start_point, EXCLUDED.end_point,
                EXCLUDED.track, EXCLUDED.region_id)
        RETURNING (xmax = 0) AS inserted
    """)
    )
    flags = [bool(r.inserted) for r in result]
    counts = UpsertCounts(received=len(rows), inserted=sum(flags), updated=len(flags) - sum(flags))
    if flags:
        await refresh_stats_for_affected_hours(session)
    return counts


async def refresh_stats_for_affected_hours(session: AsyncSession) -> None:
    """Recompute the roll-ups for the hours (and their days) listed in temp table ``affected_hours``."""
    await session.execute(text("DELETE FROM app.flight_hourly_stats WHERE hour IN (SELECT hour FROM affected_hours)"))
    await session.execute(
        text("""
        INSERT INTO app.flight_hourly_stats (hour, day, hour_of_day, weekday, flights, duration_s_sum, distance_km_sum)
        SELECT h.hour, (h.hour AT TIME ZONE 'UTC')::date, extract(hour FROM h.hour AT TIME ZONE 'UTC'),
               extract(isodow FROM h.hour AT TIME ZONE 'UTC'), count(*), sum(f.duration_s), sum(f.distance_km)
          FROM affected_hours h
          JOIN app.flights f ON f.departed_at >= h.hour AND f.departed_at < h.hour + interval '1 hour'
         GROUP BY h.hour
    """)
    )
    await session.execute(
        text(
            "CREATE TEMP TABLE affected_days ON COMMIT DROP AS "
            "SELECT DISTINCT (hour AT TIME ZONE 'UTC')::date AS day FROM affected_hours"
        )
    )
    await session.execute(
        text("DELETE FROM app.flight_daily_region_stats WHERE day IN (SELECT day FROM affected_days)")
    )
    await session.execute(
        text("""
        INSERT INTO app.flight_daily_region_stats
               (day, region_id, flights, duration_s_sum, duration_s_max, distance_km_sum, distance_km_max)
        SELECT d.day, coalesce(f.region_id, 0), count(*), sum(f.duration_s), max(f.duration_s),
               sum(f.distance_km), max(f.distance_km)
          FROM affected_days d
          JOIN app.flights f ON f.departed_at >= d.day::timestamp AT TIME ZONE 'UTC'
                            AND f.departed_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
         GROUP BY d.day, coalesce(f.region_id, 0)
    """)
    )
    await session.execute(
        text(
            "DELETE FROM app.flight_monthly_region_stats WHERE month IN "
            "(SELECT DISTINCT date_trunc('month', day)::date FROM affected_days)"
        )
    )
    await session.execute(
        text(f"""
        {MONTHLY_FROM_DAILY}
         WHERE date_trunc('month', day)::date IN (SELECT DISTINCT date_trunc('month', day)::date FROM affected_days)
         GROUP BY 1, 2
    """)
    )


async def rebuild_all_stats(session: AsyncSession) -> None:
    """Recompute all roll-ups from scratch (after a bulk load)."""
    await session.execute(text("DELETE FROM app.flight_hourly_stats"))
    await session.execute(
        text("""
        INSERT INTO app.flight_hourly_stats (hour, day, hour_of_day, weekday, flights, duration_s_sum, distance_km_sum)
        SELECT hour, (hour AT TIME ZONE 'UTC')::date, extract(hour FROM hour AT TIME ZONE 'UTC'),
               extract(isodow FROM hour AT TIME ZONE 'UTC'), flights, duration_s_sum, distance_km_sum
          FROM (SELECT date_trunc('hour', departed_at, 'UTC') AS hour, count(*) AS flights,
                       sum(duration_s) AS duration_s_sum, sum(distance_km) AS distance_km_sum
                  FROM app.flights GROUP BY 1) h
    """)
    )
    await rebuild_daily_region_stats(session)


async def rebuild_daily_region_stats(session: AsyncSession) -> None:
    """The per-region roll-ups (day and month) from scratch, e.g. after regions changed."""
    await session.execute(text("DELETE FROM app.flight_daily_region_stats"))
    await session.execute(
        text("""
        INSERT INTO app.flight_daily_region_stats
               (day, region_id, flights, duration_s_sum, duration_s_max, distance_km_sum, distance_km_max)
        SELECT (departed_at AT TIME ZONE 'UTC')::date, coalesce(region_id, 0), count(*), sum(duration_s),
               max(duration_s), sum(distance_km), max(distance_km)
          FROM app.flights GROUP BY 1, 2
    """)
    )
    await session.execute(text("DELETE FROM app.flight_monthly_region_stats"))
    await session.execute(text(f"{MONTHLY_FROM_DAILY} GROUP BY 1, 2"))


async def upsert_regions(session: AsyncSession, regions: list[RegionFeature]) -> UpsertCounts:
    """Insert or update regions by code, then re-run the spatial join of flights to regions."""
    await _begin_import(session)
    result = await session.execute(
        text("""
            INSERT INTO app.regions AS r (code, name, geom)
            SELECT code, name, public.st_multi(public.st_geomfromtext(wkt, 4326))
              FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:wkts AS text[])) AS t(code, name, wkt)
            ON CONFLICT (code) DO UPDATE
               SET name = EXCLUDED.name, geom = EXCLUDED.geom, updated_at = now()
             WHERE (r.name, r.geom) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.geom)
            RETURNING (xmax = 0) AS inserted
        """),
        {"codes": [r.code for r in regions], "names": [r.name for r in regions], "wkts": [r.wkt for r in regions]},
    )
    flags = [bool(r.inserted) for r in result]
    counts = UpsertCounts(received=len(regions), inserted=sum(flags), updated=len(flags) - sum(flags))
    if flags:
        await reassign_flight_regions(session)
    return counts


async def reassign_flight_regions(session: AsyncSession) -> int:
    """Spatial join: every flight's region is the (lowest-id) region covering its start point."""
    result = await session.execute(
        text(f"""
        UPDATE app.flights f SET region_id = j.region_id, updated_at = now()
          FROM (SELECT f2.id, {REGION_OF_POINT.format(point="f2.start_point")} AS region_id FROM app.flights f2) j
         WHERE j.id = f.id AND f.region_id IS DISTINCT FROM j.region_id
    """)
    )
    await rebuild_daily_region_stats(session)
    return int(getattr(result, "rowcount", 0) or 0)
