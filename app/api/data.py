"""Read API: flights, regions and the statistics of the three dashboards."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status

from app import stats
from app.deps import Reader, SessionDep
from app.schemas import FlightOut, FlightPage, OverviewStats, RegionFeatureOut, RegionOut, RegionsStats, TimeStats

router = APIRouter(prefix="/api", tags=["data"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown flight or region"}}
BAD_QUERY: dict[int | str, dict[str, Any]] = {422: {"description": "invalid filter"}}

DateFrom = Annotated[date | None, Query(description="first UTC day, inclusive")]
DateTo = Annotated[date | None, Query(description="last UTC day, inclusive")]
RegionCode = Annotated[str | None, Query(max_length=32, description="region code")]


def _parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="bbox must be min_lon,min_lat,max_lon,max_lat"
        )
    min_lon, min_lat, max_lon, max_lat = parts
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="bbox must satisfy -180 ≤ min_lon ≤ max_lon ≤ 180 and -90 ≤ min_lat ≤ max_lat ≤ 90",
        )
    return min_lon, min_lat, max_lon, max_lat


async def _run(coro: Any) -> Any:
    try:
        return await coro
    except stats.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except stats.BadQuery as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


@router.get("/flights", response_model=FlightPage, responses={**NOT_FOUND, **BAD_QUERY})
async def list_flights(
    session: SessionDep,
    _: Reader,
    departed_from: Annotated[datetime | None, Query(description="departures at or after (ISO 8601)")] = None,
    departed_to: Annotated[datetime | None, Query(description="departures before (ISO 8601)")] = None,
    region: RegionCode = None,
    bbox: Annotated[
        str | None, Query(max_length=200, description="min_lon,min_lat,max_lon,max_lat; start or end inside")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    include_track: bool = False,
) -> Any:
    """Flights by departure time, region and bounding box, paged by cursor."""
    try:
        stats.check_timestamp("departed_from", departed_from)
        stats.check_timestamp("departed_to", departed_to)
    except stats.BadQuery as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return await _run(
        stats.list_flights(
            session,
            departed_from=departed_from,
            departed_to=departed_to,
            region=region,
            bbox=_parse_bbox(bbox),
            limit=limit,
            cursor=cursor,
            include_track=include_track,
        )
    )


@router.get("/flights/{external_id}", response_model=FlightOut, responses=NOT_FOUND)
async def get_flight(external_id: str, session: SessionDep, _: Reader) -> Any:
    return await _run(stats.get_flight(session, external_id))


@router.get("/regions", response_model=list[RegionOut])
async def list_regions(session: SessionDep, _: Reader) -> Any:
    return await stats.list_regions(session)


@router.get("/regions/{code}", response_model=RegionFeatureOut, responses=NOT_FOUND)
async def get_region(code: str, session: SessionDep, _: Reader) -> Any:
    """The region as a GeoJSON Feature."""
    return await _run(stats.get_region_feature(session, code))


@router.get("/stats/overview", response_model=OverviewStats, responses={**NOT_FOUND, **BAD_QUERY})
async def overview(
    session: SessionDep, _: Reader, date_from: DateFrom = None, date_to: DateTo = None, region: RegionCode = None
) -> Any:
    """The "overview" dashboard: counts, durations, distances."""
    return await _run(stats.overview(session, stats.StatsFilter(date_from, date_to, region)))


@router.get("/stats/regions", response_model=RegionsStats, responses={**NOT_FOUND, **BAD_QUERY})
async def regions(
    session: SessionDep, _: Reader, date_from: DateFrom = None, date_to: DateTo = None, region: RegionCode = None
) -> Any:
    """The "regions" dashboard: flights per region (null code = outside every region)."""
    return await _run(stats.by_region(session, stats.StatsFilter(date_from, date_to, region)))


@router.get("/stats/time", response_model=TimeStats, responses={**NOT_FOUND, **BAD_QUERY})
async def over_time(
    session: SessionDep,
    _: Reader,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    region: RegionCode = None,
    granularity: Literal["day", "hour"] = "day",
) -> Any:
    """The "time" dashboard: a series per day or hour, and distributions by hour of day and weekday."""
    return await _run(stats.over_time(session, stats.StatsFilter(date_from, date_to, region), granularity))
