"""Response and request bodies of the API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Point(BaseModel):
    lon: float
    lat: float


class FlightOut(BaseModel):
    external_id: str
    departed_at: datetime
    landed_at: datetime
    duration_s: int
    distance_km: float
    region_code: str | None
    start: Point
    end: Point
    track: list[tuple[float, float]] | None = Field(default=None, description="[lon, lat] pairs; only when asked for")


class FlightPage(BaseModel):
    items: list[FlightOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class RegionOut(BaseModel):
    code: str
    name: str
    bbox: tuple[float, float, float, float] = Field(description="min_lon, min_lat, max_lon, max_lat")


class RegionFeatureOut(BaseModel):
    type: Literal["Feature"] = "Feature"
    properties: dict[str, Any]
    geometry: dict[str, Any]


class RowProblem(BaseModel):
    row: int | None
    column: str | None
    message: str


class ImportResult(BaseModel):
    kind: Literal["flights", "regions"]
    received: int
    inserted: int
    updated: int
    unchanged: int
    rows_per_second: float


class Filters(BaseModel):
    date_from: date | None
    date_to: date | None
    region: str | None


class OverviewStats(BaseModel):
    filters: Filters
    flights: int
    flights_outside_regions: int
    regions_with_flights: int
    total_duration_h: float
    avg_duration_min: float | None
    max_duration_min: float | None
    total_distance_km: float
    avg_distance_km: float | None
    max_distance_km: float | None
    first_departure: datetime | None
    last_departure: datetime | None


class RegionStats(BaseModel):
    region_code: str | None = Field(description="null for flights outside every region")
    region_name: str
    flights: int
    share: float = Field(description="fraction of all flights in the filter")
    avg_duration_min: float | None
    total_distance_km: float
    avg_distance_km: float | None
    max_distance_km: float | None


class RegionsStats(BaseModel):
    filters: Filters
    regions: list[RegionStats]


class TimeBucket(BaseModel):
    start: datetime
    flights: int
    avg_duration_min: float | None
    total_distance_km: float


class CountBucket(BaseModel):
    key: int
    flights: int


class TimeStats(BaseModel):
    filters: Filters
    granularity: Literal["day", "hour"]
    series: list[TimeBucket]
    by_hour_of_day: list[CountBucket] = Field(description="0–23, UTC")
    by_weekday: list[CountBucket] = Field(description="ISO weekday 1 (Monday) – 7")


class EmbedRequest(BaseModel):
    dashboard: Literal["overview", "regions", "time"]
    params: dict[str, str | list[str]] = Field(default_factory=dict, max_length=20)


class EmbedToken(BaseModel):
    dashboard: str
    token: str
    key_id: str
    expires_at: datetime
    embed_url: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: Literal["ok", "unavailable"]
    migration: str | None = None
