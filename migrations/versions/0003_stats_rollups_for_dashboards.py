"""Faster dashboards: a per-month/region roll-up, and calendar columns on the hourly roll-up.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "app"


def upgrade() -> None:
    op.create_table(
        "flight_monthly_region_stats",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("flights", sa.BigInteger(), nullable=False),
        sa.Column("duration_s_sum", sa.BigInteger(), nullable=False),
        sa.Column("duration_s_max", sa.Integer(), nullable=False),
        sa.Column("distance_km_sum", sa.Double(), nullable=False),
        sa.Column("distance_km_max", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("month", "region_id", name="pk_flight_monthly_region_stats"),
        schema=SCHEMA,
    )
    op.execute("""
        INSERT INTO app.flight_monthly_region_stats
        SELECT date_trunc('month', day)::date, region_id, sum(flights), sum(duration_s_sum), max(duration_s_max),
               sum(distance_km_sum), max(distance_km_max)
          FROM app.flight_daily_region_stats GROUP BY 1, 2
    """)
    for column, type_ in (("day", sa.Date()), ("hour_of_day", sa.SmallInteger()), ("weekday", sa.SmallInteger())):
        op.add_column("flight_hourly_stats", sa.Column(column, type_, nullable=True), schema=SCHEMA)
    op.execute("""
        UPDATE app.flight_hourly_stats
           SET day = (hour AT TIME ZONE 'UTC')::date,
               hour_of_day = extract(hour FROM hour AT TIME ZONE 'UTC'),
               weekday = extract(isodow FROM hour AT TIME ZONE 'UTC')
    """)
    for column in ("day", "hour_of_day", "weekday"):
        op.alter_column("flight_hourly_stats", column, nullable=False, schema=SCHEMA)


def downgrade() -> None:
    for column in ("weekday", "hour_of_day", "day"):
        op.drop_column("flight_hourly_stats", column, schema=SCHEMA)
    op.drop_table("flight_monthly_region_stats", schema=SCHEMA)
