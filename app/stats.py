"""Statistics for the three DataLens dashboards (overview, regions, time) and flight queries.

Overview and regions read the per-day/region roll-up; time reads the per-hour roll-up, or the
flights themselves when filtered by region (a region holds a small share of all flights).
Days are UTC; ``date_to`` is inclusive.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MAX_HOURLY_SPAN = timedelta(days=62)
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2100, 12, 31)


class NotFound(LookupError):
    pass


class BadQuery(ValueError):
    pass


@dataclass(frozen=True)
class StatsFilter:
    date_from: date | None
    date_to: date | None
    region: str | None

    def validate(self) -> None:
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if value is not None and not EARLIEST_DAY <= value <= LATEST_DAY:
                raise BadQuery(f"{name} must be between {EARLIEST_DAY} and {LATEST_DAY}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise BadQuery("date_from is after date_to")

    def as_dict(self) -> dict[str, Any]:
        return {"date_from": self.date_from, "date_to": self.date_to, "region": self.region}


def check_timestamp(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if value.tzinfo is None:
        raise BadQuery(f"{name} needs a time zone (e.g. Z)")
    try:
        in_range = EARLIEST_DAY <= value.astimezone(UTC).date() <= LATEST_DAY
    except OverflowError:
        in_range = False
    if not in_range:
        raise BadQuery(f"{name} must be between {EARLIEST_DAY} and {LATEST_DAY}")


def _lookup_key(value: str) -> str:
    """Codes and ids never contain NUL (PostgreSQL text cannot); such a key simply does not exist."""
    if "\x00" in value:
        raise NotFound(f"{value!r} does not exist")
    return value


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def region_id(session: AsyncSession, code: str) -> int:
    found = (
        await session.execute(text("SELECT id FROM app.regions WHERE code = :c"), {"c": _lookup_key(code)})
    ).scalar()
    if found is None:
        raise NotFound(f"region {code!r} does not exist")
    return int(found)


def _day_clause(f: StatsFilter, params: dict[str, Any], column: str = "day") -> str:
    clauses = []
    if f.date_from:
        clauses.append(f"{column} >= :date_from")
        params["date_from"] = f.date_from
    if f.date_to:
        clauses.append(f"{column} <= :date_to")
        params["date_to"] = f.date_to
    return " AND ".join(clauses) or "TRUE"


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _region_rollup(f: StatsFilter, params: dict[str, Any]) -> str:
    """Rows of per-region totals covering [date_from, date_to]: whole months from the monthly
    roll-up, the days at either end from the daily one (a year is ~3,600 rows instead of ~110,000)."""
    columns = "region_id, flights, duration_s_sum, duration_s_max, distance_km_sum, distance_km_max"
    first_full = None if f.date_from is None else (f.date_from if f.date_from.day == 1 else _next_month(f.date_from))
    end_exclusive = None if f.date_to is None else f.date_to + timedelta(days=1)
    last_full_exclusive = None if end_exclusive is None else _month_start(end_exclusive)
    if first_full is not None and last_full_exclusive is not None and first_full >= last_full_exclusive:
        return f"SELECT {columns} FROM app.flight_daily_region_stats WHERE {_day_clause(f, params)}"
    month_clauses, day_clauses = [], []
    if first_full is not None:
        params.update(first_full=first_full, date_from=f.date_from)
        month_clauses.append("month >= :first_full")
        day_clauses.append("(day >= :date_from AND day < :first_full)")
    if last_full_exclusive is not None:
        params.update(last_full_exclusive=last_full_exclusive, date_to=f.date_to)
        month_clauses.append("month < :last_full_exclusive")
        day_clauses.append("(day >= :last_full_exclusive AND day <= :date_to)")
    months = f"SELECT {columns} FROM app.flight_monthly_region_stats WHERE {' AND '.join(month_clauses) or 'TRUE'}"
    if not day_clauses:
        return months
    return f"{months} UNION ALL SELECT {columns} FROM app.flight_daily_region_stats WHERE {' OR '.join(day_clauses)}"


def _time_clause(f: StatsFilter, params: dict[str, Any], column: str) -> str:
    clauses = []
    if f.date_from:
        clauses.append(f"{column} >= :ts_from")
        params["ts_from"] = _start_of(f.date_from)
    if f.date_to:
        clauses.append(f"{column} < :ts_to")
        params["ts_to"] = _start_of(f.date_to + timedelta(days=1))
    return " AND ".join(clauses) or "TRUE"


def _round(value: Any, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


async def overview(session: AsyncSession, f: StatsFilter) -> dict[str, Any]:
    f.validate()
    params: dict[str, Any] = {}
    source = _region_rollup(f, params)
    where = "TRUE"
    flights_where = _time_clause(f, params, "departed_at")
    if f.region:
        params["rid"] = await region_id(session, f.region)
        where = "region_id = :rid"
        flights_where += " AND region_id = :rid"
    row = (
        await session.execute(
            text(f"""
        SELECT coalesce(sum(flights), 0) AS flights,
               coalesce(sum(flights) FILTER (WHERE region_id = 0), 0) AS outside,
               count(DISTINCT region_id) FILTER (WHERE region_id <> 0) AS regions,
               coalesce(sum(duration_s_sum), 0) AS duration_sum,
               max(duration_s_max) AS duration_max,
               coalesce(sum(distance_km_sum), 0) AS distance_sum,
               max(distance_km_max) AS distance_max
          FROM ({source}) s WHERE {where}
    """),
            params,
        )
    ).one()
    bounds = (
        await session.execute(
            text(
                f"SELECT (SELECT min(departed_at) FROM app.flights WHERE {flights_where}) AS first, "
                f"(SELECT max(departed_at) FROM app.flights WHERE {flights_where}) AS last"
            ),
            params,
        )
    ).one()
    count = int(row.flights)
    return {
        "filters": f.as_dict(),
        "flights": count,
        "flights_outside_regions": int(row.outside),
        "regions_with_flights": int(row.regions),
        "total_duration_h": round(int(row.duration_sum) / 3600, 3),
        "avg_duration_min": _round(int(row.duration_sum) / count / 60) if count else None,
        "max_duration_min": _round(row.duration_max / 60) if row.duration_max is not None else None,
        "total_distance_km": round(float(row.distance_sum), 3),
        "avg_distance_km": _round(float(row.distance_sum) / count) if count else None,
        "max_distance_km": _round(row.distance_max),
        "first_departure": bounds.first,
        "last_departure": bounds.last,
    }


async def by_region(session: AsyncSession, f: StatsFilter) -> dict[str, Any]:
    f.validate()
    params: dict[str, Any] = {}
    source = _region_rollup(f, params)
    where = "TRUE"
    if f.region:
        params["rid"] = await region_id(session, f.region)
        where = "region_id = :rid"
    rows = (
        await session.execute(
            text(f"""
        WITH s AS (
            SELECT region_id, sum(flights) AS flights, sum(duration_s_sum) AS duration_sum,
                   sum(distance_km_sum) AS distance_sum, max(distance_km_max) AS distance_max
              FROM ({source}) d WHERE {where} GROUP BY region_id
        )
        SELECT r.code, coalesce(r.name, 'outside any region') AS name, s.flights, s.duration_sum,
               s.distance_sum, s.distance_max
          FROM s LEFT JOIN app.regions r ON r.id = s.region_id
         ORDER BY s.flights DESC, r.code NULLS LAST
    """),
            params,
        )
    ).all()
    total = sum(int(r.flights) for r in rows)
    return {
        "filters": f.as_dict(),
        "regions": [
            {
                "region_code": r.code,
                "region_name": r.name,
                "flights": int(r.flights),
                "share": round(int(r.flights) / total, 6) if total else 0.0,
                "avg_duration_min": _round(int(r.duration_sum) / int(r.flights) / 60) if r.flights else None,
                "total_distance_km": round(float(r.distance_sum), 3),
                "avg_distance_km": _round(float(r.distance_sum) / int(r.flights)) if r.flights else None,
                "max_distance_km": _round(r.distance_max),
            }
            for r in rows
        ],
    }


async def over_time(session: AsyncSession, f: StatsFilter, granularity: str) -> dict[str, Any]:
    f.validate()
    if granularity == "hour" and (
        f.date_from is None or f.date_to is None or f.date_to - f.date_from > MAX_HOURLY_SPAN
    ):
        raise BadQuery(f"granularity=hour needs date_from and date_to at most {MAX_HOURLY_SPAN.days} days apart")
    params: dict[str, Any] = {}
    if f.region:
        params["rid"] = await region_id(session, f.region)
        # A region's flights are few: aggregate them directly via (region_id, departed_at).
        source = f"""
            SELECT hour, (hour AT TIME ZONE 'UTC')::date AS day,
                   extract(hour FROM hour AT TIME ZONE 'UTC')::int AS hour_of_day,
                   extract(isodow FROM hour AT TIME ZONE 'UTC')::int AS weekday,
                   flights, duration_sum, distance_sum
              FROM (SELECT date_trunc('hour', departed_at, 'UTC') AS hour, count(*) AS flights,
                           sum(duration_s) AS duration_sum, sum(distance_km) AS distance_sum
                      FROM app.flights WHERE region_id = :rid AND {_time_clause(f, params, "departed_at")}
                     GROUP BY 1) per_hour
        """
    else:
        source = f"""
            SELECT hour, day, hour_of_day, weekday, flights, duration_s_sum AS duration_sum,
                   distance_km_sum AS distance_sum
              FROM app.flight_hourly_stats WHERE {_time_clause(f, params, "hour")}
        """
    bucket = "day" if granularity == "day" else "hour"
    # One pass, three groupings; GROUPING() has a bit set for each column not grouped by.
    rows = (
        await session.execute(
            text(f"""
        SELECT GROUPING({bucket}, hour_of_day, weekday) AS g, {bucket} AS bucket, hour_of_day, weekday,
               sum(flights) AS flights, sum(duration_sum) AS duration_sum, sum(distance_sum) AS distance_sum
          FROM ({source}) h
         GROUP BY GROUPING SETS (({bucket}), (hour_of_day), (weekday))
    """),
            params,
        )
    ).all()
    series = sorted((r for r in rows if r.g == 0b011), key=lambda r: r.bucket)
    hours = {int(r.hour_of_day): int(r.flights) for r in rows if r.g == 0b101}
    weekdays = {int(r.weekday): int(r.flights) for r in rows if r.g == 0b110}
    return {
        "filters": f.as_dict(),
        "granularity": granularity,
        "series": [
            {
                "start": _start_of(r.bucket) if granularity == "day" else r.bucket,
                "flights": int(r.flights),
                "avg_duration_min": _round(int(r.duration_sum) / int(r.flights) / 60) if r.flights else None,
                "total_distance_km": round(float(r.distance_sum), 3),
            }
            for r in series
        ],
        "by_hour_of_day": [{"key": h, "flights": hours.get(h, 0)} for h in range(24)],
        "by_weekday": [{"key": d, "flights": weekdays.get(d, 0)} for d in range(1, 8)],
    }


# -- flights ------------------------------------------------------------------------------


def encode_cursor(departed_at: datetime, flight_id: int) -> str:
    return base64.urlsafe_b64encode(f"{departed_at.isoformat()}|{flight_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, flight_id = raw.rsplit("|", 1)
        parsed = datetime.fromisoformat(stamp)
        check_timestamp("cursor", parsed)
        number = int(flight_id)
        if not 0 < number < 2**63:
            raise ValueError("id out of range")
        return parsed, number
    except (ValueError, UnicodeDecodeError, binascii.Error, BadQuery) as exc:
        raise BadQuery("cursor is not one this API returned") from exc


FLIGHT_COLUMNS = """
    f.id, f.external_id, f.departed_at, f.landed_at, f.duration_s, f.distance_km, r.code AS region_code,
    public.st_x(f.start_point) AS start_lon, public.st_y(f.start_point) AS start_lat,
    public.st_x(f.end_point) AS end_lon, public.st_y(f.end_point) AS end_lat
"""


def _flight(row: Any, track: Any = None) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "departed_at": row.departed_at,
        "landed_at": row.landed_at,
        "duration_s": row.duration_s,
        "distance_km": round(float(row.distance_km), 3),
        "region_code": row.region_code,
        "start": {"lon": row.start_lon, "lat": row.start_lat},
        "end": {"lon": row.end_lon, "lat": row.end_lat},
        "track": track,
    }


def _track_coords(geojson: str | None) -> list[tuple[float, float]] | None:
    if geojson is None:
        return None
    return [(c[0], c[1]) for c in json.loads(geojson)["coordinates"]]


async def list_flights(
    session: AsyncSession,
    *,
    departed_from: datetime | None,
    departed_to: datetime | None,
    region: str | None,
    bbox: tuple[float, float, float, float] | None,
    limit: int,
    cursor: str | None,
    include_track: bool,
) -> dict[str, Any]:
    """Flights ordered by departure (keyset-paged); bbox matches flights starting or ending inside it."""
    params: dict[str, Any] = {"limit": limit + 1}
    clauses = []
    if departed_from:
        clauses.append("f.departed_at >= :departed_from")
        params["departed_from"] = departed_from
    if departed_to:
        clauses.append("f.departed_at < :departed_to")
        params["departed_to"] = departed_to
    if region:
        params["rid"] = await region_id(session, region)
        clauses.append("f.region_id = :rid")
    if bbox:
        min_lon, min_lat, max_lon, max_lat = bbox
        params.update(min_lon=min_lon, min_lat=min_lat, max_lon=max_lon, max_lat=max_lat)
        envelope = "public.st_makeenvelope(:min_lon, :min_lat, :max_lon, :max_lat, 4326)"
        clauses.append(f"(f.start_point OPERATOR(public.&&) {envelope} OR f.end_point OPERATOR(public.&&) {envelope})")
    if cursor:
        params["c_departed"], params["c_id"] = decode_cursor(cursor)
        clauses.append("(f.departed_at, f.id) > (:c_departed, :c_id)")
    track_column = ", public.st_asgeojson(f.track, 6) AS track_json" if include_track else ""
    rows = (
        await session.execute(
            text(f"""
        SELECT {FLIGHT_COLUMNS}{track_column}
          FROM app.flights f LEFT JOIN app.regions r ON r.id = f.region_id
         WHERE {" AND ".join(clauses) or "TRUE"}
         ORDER BY f.departed_at, f.id
         LIMIT :limit
    """),
            params,
        )
    ).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].departed_at, page[-1].id) if len(rows) > limit else None
    return {
        "items": [_flight(r, _track_coords(r.track_json) if include_track else None) for r in page],
        "next_cursor": next_cursor,
    }


async def get_flight(session: AsyncSession, external_id: str) -> dict[str, Any]:
    row = (
        await session.execute(
            text(f"""
        SELECT {FLIGHT_COLUMNS}, public.st_asgeojson(f.track, 6) AS track_json
          FROM app.flights f LEFT JOIN app.regions r ON r.id = f.region_id
         WHERE f.external_id = :e
    """),
            {"e": _lookup_key(external_id)},
        )
    ).first()
    if row is None:
        raise NotFound(f"flight {external_id!r} does not exist")
    return _flight(row, _track_coords(row.track_json))


async def list_regions(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            text("""
        SELECT code, name, public.st_xmin(geom) AS x0, public.st_ymin(geom) AS y0,
               public.st_xmax(geom) AS x1, public.st_ymax(geom) AS y1
          FROM app.regions ORDER BY code
    """)
        )
    ).all()
    return [{"code": r.code, "name": r.name, "bbox": (r.x0, r.y0, r.x1, r.y1)} for r in rows]


async def get_region_feature(session: AsyncSession, code: str) -> dict[str, Any]:
    row = (
        await session.execute(
            text("SELECT code, name, public.st_asgeojson(geom, 6) AS g FROM app.regions WHERE code = :c"),
            {"c": _lookup_key(code)},
        )
    ).first()
    if row is None:
        raise NotFound(f"region {code!r} does not exist")
    return {"type": "Feature", "properties": {"code": row.code, "name": row.name}, "geometry": json.loads(row.g)}
