"""Views in schema ``analytics`` that DataLens reads (the read-only role gets SELECT on these only).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS: dict[str, str] = {
    # One row per flight, flat, with the region's code and name (the "overview" and "time" dashboards).
    "flights": """
        SELECT f.id AS flight_id,
               f.external_id,
               f.departed_at,
               f.landed_at,
               (f.departed_at AT TIME ZONE 'UTC')::date AS departure_date,
               extract(hour FROM f.departed_at AT TIME ZONE 'UTC')::int AS departure_hour,
               extract(isodow FROM f.departed_at AT TIME ZONE 'UTC')::int AS departure_weekday,
               f.duration_s,
               round(f.duration_s / 60.0, 1) AS duration_min,
               f.distance_km,
               r.code AS region_code,
               r.name AS region_name,
               public.st_x(f.start_point) AS start_lon,
               public.st_y(f.start_point) AS start_lat,
               public.st_x(f.end_point) AS end_lon,
               public.st_y(f.end_point) AS end_lat
          FROM app.flights f
          LEFT JOIN app.regions r ON r.id = f.region_id
    """,
    # Region shapes for the "regions" map (GeoJSON and centroid).
    "regions": """
        SELECT r.code AS region_code,
               r.name AS region_name,
               round((public.st_area(r.geom::public.geography) / 1e6)::numeric, 1) AS area_km2,
               public.st_y(public.st_pointonsurface(r.geom)) AS centroid_lat,
               public.st_x(public.st_pointonsurface(r.geom)) AS centroid_lon,
               public.st_asgeojson(r.geom, 6) AS geojson
          FROM app.regions r
    """,
    # Per day and region (the "regions" dashboard).
    "region_daily_stats": """
        SELECT s.day,
               coalesce(r.code, '') AS region_code,
               coalesce(r.name, 'outside any region') AS region_name,
               s.flights,
               s.duration_s_sum,
               round((s.duration_s_sum::numeric / nullif(s.flights, 0)) / 60, 1) AS avg_duration_min,
               s.duration_s_max,
               s.distance_km_sum AS total_distance_km,
               s.distance_km_sum / nullif(s.flights, 0) AS avg_distance_km,
               s.distance_km_max AS max_distance_km
          FROM app.flight_daily_region_stats s
          LEFT JOIN app.regions r ON r.id = s.region_id
    """,
    # Per hour (the "time" dashboard).
    "hourly_stats": """
        SELECT s.hour,
               (s.hour AT TIME ZONE 'UTC')::date AS day,
               extract(hour FROM s.hour AT TIME ZONE 'UTC')::int AS hour_of_day,
               extract(isodow FROM s.hour AT TIME ZONE 'UTC')::int AS weekday,
               s.flights,
               round((s.duration_s_sum::numeric / nullif(s.flights, 0)) / 60, 1) AS avg_duration_min,
               s.distance_km_sum AS total_distance_km
          FROM app.flight_hourly_stats s
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW analytics.{name} AS {query}")
        op.execute(f"COMMENT ON VIEW analytics.{name} IS 'DataLens source; read-only role'")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS analytics.{name}")
