"""Domain tables: regions, flights, statistics roll-ups, flow_events; GiST indexes.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "app"


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_regions"),
        sa.UniqueConstraint("code", name="uq_regions_code"),
        schema=SCHEMA,
    )
    op.create_index("ix_regions_geom", "regions", ["geom"], schema=SCHEMA, postgresql_using="gist")

    op.create_table(
        "flights",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("departed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_point", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("end_point", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("track", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=True),
        sa.Column("distance_km", sa.Double(), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flights"),
        sa.UniqueConstraint("external_id", name="uq_flights_external_id"),
        sa.ForeignKeyConstraint(
            ["region_id"], [f"{SCHEMA}.regions.id"], name="fk_flights_region_id_regions", ondelete="SET NULL"
        ),
        sa.CheckConstraint("landed_at >= departed_at", name="ck_flights_landed_after_departed"),
        sa.CheckConstraint("distance_km >= 0", name="ck_flights_distance_non_negative"),
        schema=SCHEMA,
    )
    op.create_index("ix_flights_departed_at", "flights", ["departed_at"], schema=SCHEMA)
    op.create_index("ix_flights_region_id_departed_at", "flights", ["region_id", "departed_at"], schema=SCHEMA)
    for column in ("start_point", "end_point", "track"):
        op.create_index(f"ix_flights_{column}", "flights", [column], schema=SCHEMA, postgresql_using="gist")

    op.create_table(
        "flight_daily_region_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("flights", sa.BigInteger(), nullable=False),
        sa.Column("duration_s_sum", sa.BigInteger(), nullable=False),
        sa.Column("duration_s_max", sa.Integer(), nullable=False),
        sa.Column("distance_km_sum", sa.Double(), nullable=False),
        sa.Column("distance_km_max", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("day", "region_id", name="pk_flight_daily_region_stats"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_flight_daily_region_stats_region_id_day", "flight_daily_region_stats", ["region_id", "day"], schema=SCHEMA
    )

    op.create_table(
        "flight_hourly_stats",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flights", sa.BigInteger(), nullable=False),
        sa.Column("duration_s_sum", sa.BigInteger(), nullable=False),
        sa.Column("distance_km_sum", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("hour", name="pk_flight_hourly_stats"),
        schema=SCHEMA,
    )

    op.create_table(
        "flow_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flow_events"),
        schema=SCHEMA,
    )
    op.create_index("ix_flow_events_event_type_created_at", "flow_events", ["event_type", "created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("flow_events", schema=SCHEMA)
    op.drop_table("flight_hourly_stats", schema=SCHEMA)
    op.drop_table("flight_daily_region_stats", schema=SCHEMA)
    op.drop_table("flights", schema=SCHEMA)
    op.drop_table("regions", schema=SCHEMA)
