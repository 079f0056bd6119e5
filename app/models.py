"""The domain: regions, flights, pre-aggregated statistics and ops events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

SRID = 4326


class Region(Base):
    """An administrative region; flights get the region their start point lies in."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    geom: Mapped[WKBElement] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_regions_geom", "geom", postgresql_using="gist"),)


class Flight(Base):
    """One flight; distance, duration and region are derived when it is imported."""

    __tablename__ = "flights"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    departed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    landed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    start_point: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    end_point: Mapped[WKBElement] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    track: Mapped[WKBElement | None] = mapped_column(
        Geometry("LINESTRING", srid=SRID, spatial_index=False), nullable=True
    )
    distance_km: Mapped[float] = mapped_column(Double)
    duration_s: Mapped[int] = mapped_column(Integer)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("landed_at >= departed_at", name="landed_after_departed"),
        CheckConstraint("distance_km >= 0", name="distance_non_negative"),
        Index("ix_flights_departed_at", "departed_at"),
        Index("ix_flights_region_id_departed_at", "region_id", "departed_at"),
        Index("ix_flights_start_point", "start_point", postgresql_using="gist"),
        Index("ix_flights_end_point", "end_point", postgresql_using="gist"),
        Index("ix_flights_track", "track", postgresql_using="gist"),
    )


class FlightDailyRegionStats(Base):
    """Flights per UTC day of departure and region (region 0 = none), kept in step by imports."""

    __tablename__ = "flight_daily_region_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flights: Mapped[int] = mapped_column(BigInteger)
    duration_s_sum: Mapped[int] = mapped_column(BigInteger)
    duration_s_max: Mapped[int] = mapped_column(Integer)
    distance_km_sum: Mapped[float] = mapped_column(Double)
    distance_km_max: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index("ix_flight_daily_region_stats_region_id_day", "region_id", "day"),)


class FlightMonthlyRegionStats(Base):
    """Flights per UTC month of departure and region: long date ranges read this, not the days."""

    __tablename__ = "flight_monthly_region_stats"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    region_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flights: Mapped[int] = mapped_column(BigInteger)
    duration_s_sum: Mapped[int] = mapped_column(BigInteger)
    duration_s_max: Mapped[int] = mapped_column(Integer)
    distance_km_sum: Mapped[float] = mapped_column(Double)
    distance_km_max: Mapped[float] = mapped_column(Double)


class FlightHourlyStats(Base):
    """Flights per UTC hour of departure over all regions, kept in step by imports; the calendar
    columns spare the time dashboard a time-zone conversion per row."""

    __tablename__ = "flight_hourly_stats"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    hour_of_day: Mapped[int] = mapped_column(SmallInteger)
    weekday: Mapped[int] = mapped_column(SmallInteger)  # ISO: 1 = Monday
    flights: Mapped[int] = mapped_column(BigInteger)
    duration_s_sum: Mapped[int] = mapped_column(BigInteger)
    distance_km_sum: Mapped[float] = mapped_column(Double)


class FlowEvent(Base):
    """Operational events (startup, migration version, readiness, imports); secrets are masked."""

    __tablename__ = "flow_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    message: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (Index("ix_flow_events_event_type_created_at", "event_type", "created_at"),)
