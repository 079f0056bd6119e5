"""Statistics and the read API against hand-computed expectations (see tests/app/data.py)."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.app.data import FLIGHTS_CSV, KM_PER_DEGREE_AT_EQUATOR, REGIONS_GEOJSON, csv_file, geojson_file

pytestmark = pytest.mark.asyncio(loop_scope="session")
KM = KM_PER_DEGREE_AT_EQUATOR


@pytest_asyncio.fixture(loop_scope="session")
async def seeded(client: httpx.AsyncClient, admin: dict[str, str]) -> httpx.AsyncClient:
    assert (
        await client.post("/api/imports/regions", files=geojson_file(REGIONS_GEOJSON), headers=admin)
    ).status_code == 200
    assert (await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)).status_code == 200
    return client


async def test_overview_all(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    body = (await seeded.get("/api/stats/overview", headers=analyst)).json()
    assert body["flights"] == 5
    assert body["flights_outside_regions"] == 1
    assert body["regions_with_flights"] == 2
    assert body["total_duration_h"] == pytest.approx(17400 / 3600, abs=1e-3)
    assert body["avg_duration_min"] == pytest.approx(58.0)
    assert body["max_duration_min"] == pytest.approx(120.0)
    assert body["total_distance_km"] == pytest.approx(9 * KM, abs=1e-3)
    assert body["avg_distance_km"] == pytest.approx(9 * KM / 5, abs=1e-3)
    assert body["max_distance_km"] == pytest.approx(3 * KM, abs=1e-3)
    assert body["first_departure"] == "2024-05-01T10:00:00Z"
    assert body["last_departure"] == "2024-05-03T05:00:00Z"


async def test_overview_filtered_by_day_and_region(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    day = (await seeded.get("/api/stats/overview?date_from=2024-05-02&date_to=2024-05-02", headers=analyst)).json()
    assert day["flights"] == 2 and day["total_duration_h"] == pytest.approx(4800 / 3600, abs=1e-3)
    region = (await seeded.get("/api/stats/overview?region=A", headers=analyst)).json()
    assert region["flights"] == 3 and region["total_duration_h"] == pytest.approx(12000 / 3600, abs=1e-3)
    assert region["total_distance_km"] == pytest.approx(5 * KM, abs=1e-3)
    assert region["last_departure"] == "2024-05-02T12:00:00Z"
    empty = (await seeded.get("/api/stats/overview?date_from=2030-01-01", headers=analyst)).json()
    assert empty["flights"] == 0 and empty["avg_duration_min"] is None and empty["first_departure"] is None


async def test_regions_dashboard(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    body = (await seeded.get("/api/stats/regions", headers=analyst)).json()
    got = [(r["region_code"], r["flights"], r["share"]) for r in body["regions"]]
    assert got == [("A", 3, 0.6), ("B", 1, 0.2), (None, 1, 0.2)]
    a = body["regions"][0]
    assert a["avg_duration_min"] == pytest.approx(12000 / 3 / 60, abs=1e-3)
    assert a["total_distance_km"] == pytest.approx(5 * KM, abs=1e-3)
    assert a["max_distance_km"] == pytest.approx(2 * KM, abs=1e-3)


async def test_time_dashboard_by_day(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    body = (await seeded.get("/api/stats/time", headers=analyst)).json()
    assert [(b["start"], b["flights"]) for b in body["series"]] == [
        ("2024-05-01T00:00:00Z", 2),
        ("2024-05-02T00:00:00Z", 2),
        ("2024-05-03T00:00:00Z", 1),
    ]
    hours = {b["key"]: b["flights"] for b in body["by_hour_of_day"] if b["flights"]}
    assert hours == {10: 2, 12: 1, 23: 1, 5: 1}
    weekdays = {b["key"]: b["flights"] for b in body["by_weekday"] if b["flights"]}
    assert weekdays == {3: 2, 4: 2, 5: 1}  # 2024-05-01 was a Wednesday


async def test_time_dashboard_by_hour_and_region(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    hourly = (
        await seeded.get("/api/stats/time?granularity=hour&date_from=2024-05-01&date_to=2024-05-01", headers=analyst)
    ).json()
    assert [(b["start"], b["flights"]) for b in hourly["series"]] == [("2024-05-01T10:00:00Z", 2)]
    assert hourly["series"][0]["avg_duration_min"] == pytest.approx(90.0)
    region = (await seeded.get("/api/stats/time?region=A", headers=analyst)).json()
    assert [(b["start"], b["flights"]) for b in region["series"]] == [
        ("2024-05-01T00:00:00Z", 2),
        ("2024-05-02T00:00:00Z", 1),
    ]
    too_long = await seeded.get("/api/stats/time?granularity=hour", headers=analyst)
    assert too_long.status_code == 422


async def test_stats_errors(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    assert (await seeded.get("/api/stats/overview?region=NOPE", headers=analyst)).status_code == 404
    reversed_range = await seeded.get("/api/stats/regions?date_from=2024-05-03&date_to=2024-05-01", headers=analyst)
    assert reversed_range.status_code == 422


async def test_flights_filters_and_paging(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    async def ids(query: str) -> list[str]:
        response = await seeded.get(f"/api/flights?{query}", headers=analyst)
        assert response.status_code == 200, response.text
        return [f["external_id"] for f in response.json()["items"]]

    assert await ids("") == ["F1", "F2", "F5", "F3", "F4"]
    assert await ids("region=B") == ["F3"]
    assert await ids("bbox=29,-1,32,1") == ["F4"]
    assert await ids("departed_from=2024-05-02T00:00:00Z&departed_to=2024-05-03T00:00:00Z") == ["F5", "F3"]
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await seeded.get(f"/api/flights?{query}", headers=analyst)).json()
        seen += [f["external_id"] for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["F1", "F2", "F5", "F3", "F4"]
    assert (await seeded.get("/api/flights?cursor=garbage", headers=analyst)).status_code == 422
    assert (await seeded.get("/api/flights?bbox=1,2,3", headers=analyst)).status_code == 422


async def test_flight_and_region_detail(seeded: httpx.AsyncClient, analyst: dict[str, str]) -> None:
    flight = (await seeded.get("/api/flights/F5", headers=analyst)).json()
    assert flight["track"] == [[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]] and flight["region_code"] == "A"
    assert (await seeded.get("/api/flights/NOPE", headers=analyst)).status_code == 404
    regions = (await seeded.get("/api/regions", headers=analyst)).json()
    assert [(r["code"], r["bbox"]) for r in regions] == [("A", [0, -10, 10, 10]), ("B", [10, -10, 20, 10])]
    feature = (await seeded.get("/api/regions/A", headers=analyst)).json()
    assert feature["geometry"]["type"] == "MultiPolygon" and feature["properties"]["name"] == "Region A"


async def test_analytics_views_match_the_api(seeded: httpx.AsyncClient, connection: AsyncConnection) -> None:
    """The DataLens role reads the views (not the tables) and sees what the API reports."""
    await connection.execute(text("SET LOCAL ROLE datalens"))
    rows = (
        await connection.execute(
            text("SELECT region_code, sum(flights) FROM analytics.region_daily_stats GROUP BY 1 ORDER BY 1")
        )
    ).all()
    assert [(r[0], int(r[1])) for r in rows] == [("", 1), ("A", 3), ("B", 1)]
    assert (await connection.execute(text("SELECT sum(flights) FROM analytics.hourly_stats"))).scalar() == 5
    flights = (
        await connection.execute(
            text(
                "SELECT departure_hour, departure_weekday, region_code FROM analytics.flights WHERE external_id = 'F4'"
            )
        )
    ).one()
    assert tuple(flights) == (5, 5, None)
    regions = (
        await connection.execute(text("SELECT region_code, area_km2 > 0 FROM analytics.regions ORDER BY 1"))
    ).all()
    assert [tuple(r) for r in regions] == [("A", True), ("B", True)]
    with pytest.raises(DBAPIError, match="permission denied"):
        async with connection.begin_nested():
            await connection.execute(text("SELECT count(*) FROM app.flights"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date_from=2024-04-15&date_to=2024-06-10", 5),  # a whole month plus partial months at both ends
        ("date_from=2024-05-02", 3),  # a partial month, then whole months
        ("date_to=2024-05-01", 2),  # whole months, then a partial one
        ("date_from=2024-05-01&date_to=2024-05-31", 5),  # exactly one month
        ("date_from=2024-05-03&date_to=2024-05-03", 1),  # one day
    ],
)
async def test_date_ranges_across_month_boundaries(
    seeded: httpx.AsyncClient, analyst: dict[str, str], query: str, expected: int
) -> None:
    overview = (await seeded.get(f"/api/stats/overview?{query}", headers=analyst)).json()
    regions = (await seeded.get(f"/api/stats/regions?{query}", headers=analyst)).json()
    assert overview["flights"] == expected
    assert sum(r["flights"] for r in regions["regions"]) == expected
