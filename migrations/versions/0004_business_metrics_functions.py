"""Business metrics for the SQL exporter: aggregate-only functions in schema metrics.

The functions run as their owner, the migrator (SECURITY DEFINER, with a fixed search_path), and return
counts only. The stack grants EXECUTE on the migrator's functions in schema metrics to the exporter role
and nothing on any table, so the exporter sees how many flights and events there are, never a row
(R-DB-1, R-OBS-1). PUBLIC has no EXECUTE on them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Schema metrics exists already (migrations/env.py creates what is missing); every name below is qualified.
FLIGHTS = """
    CREATE FUNCTION metrics.flights(OUT total float8, OUT last_hour float8)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        SELECT count(*)::float8,
               count(*) FILTER (WHERE created_at > now() - interval '1 hour')::float8
          FROM app.flights
    $$
"""
FLOW_EVENTS = """
    CREATE FUNCTION metrics.flow_events(OUT event_type text, OUT total float8, OUT last_hour float8)
    RETURNS SETOF record
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        SELECT e.event_type::text, count(*)::float8,
               count(*) FILTER (WHERE e.created_at > now() - interval '1 hour')::float8
          FROM app.flow_events e
         GROUP BY e.event_type
    $$
"""


def upgrade() -> None:
    op.execute(FLIGHTS)
    op.execute(FLOW_EVENTS)
    # Whatever default privileges the database has: owner's rights are for the exporter alone.
    op.execute("REVOKE ALL ON FUNCTION metrics.flights(), metrics.flow_events() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION metrics.flow_events()")
    op.execute("DROP FUNCTION metrics.flights()")
