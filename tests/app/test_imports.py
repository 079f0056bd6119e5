"""Imports: happy paths (CSV, XLSX, GeoJSON), validation errors with row/column, all-or-nothing,
duplicates, size limits, idempotent re-import."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.app.data import (
    FLIGHTS_CSV,
    HEADER,
    KM_PER_DEGREE_AT_EQUATOR,
    REGIONS_GEOJSON,
    csv_file,
    geojson_file,
    xlsx_file,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def count(connection: AsyncConnection, table: str) -> int:
    return int((await connection.execute(text(f"SELECT count(*) FROM app.{table}"))).scalar_one())


async def test_flights_csv_happy_path_derives_distance_duration_region(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    assert (
        await client.post("/api/imports/regions", files=geojson_file(REGIONS_GEOJSON), headers=admin)
    ).status_code == 200
    response = await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["kind"], body["received"], body["inserted"], body["updated"], body["unchanged"]) == (
        "flights",
        5,
        5,
        0,
        0,
    )
    rows = {
        r.external_id: r
        for r in await connection.execute(
            text(
                "SELECT f.external_id, f.duration_s, f.distance_km, r.code, f.departed_at "
                "FROM app.flights f LEFT JOIN app.regions r ON r.id = f.region_id"
            )
        )
    }
    assert rows["F1"].duration_s == 3600 and rows["F1"].code == "A"
    assert rows["F1"].distance_km == pytest.approx(KM_PER_DEGREE_AT_EQUATOR, rel=1e-6)
    assert rows["F3"].code == "B" and rows["F3"].distance_km == pytest.approx(3 * KM_PER_DEGREE_AT_EQUATOR, rel=1e-6)
    assert rows["F4"].code is None and rows["F4"].duration_s == 1800
    assert rows["F4"].departed_at == datetime.fromisoformat("2024-05-03T05:00:00+00:00")
    # The track, not the straight line, gives F5's distance (start and end coincide).
    assert rows["F5"].distance_km == pytest.approx(2 * KM_PER_DEGREE_AT_EQUATOR, rel=1e-6)


async def test_reimport_changes_nothing_and_changed_rows_update(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)
    before = (await connection.execute(text("SELECT array_agg(updated_at ORDER BY id) FROM app.flights"))).scalar()
    again = (await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 5)
    after = (await connection.execute(text("SELECT array_agg(updated_at ORDER BY id) FROM app.flights"))).scalar()
    assert before == after
    changed = FLIGHTS_CSV.replace("2024-05-01T11:00:00Z", "2024-05-01T11:30:00Z")
    third = (await client.post("/api/imports/flights", files=csv_file(changed), headers=admin)).json()
    assert (third["inserted"], third["updated"], third["unchanged"]) == (0, 1, 4)
    assert await count(connection, "flights") == 5
    duration = (await connection.execute(text("SELECT duration_s FROM app.flights WHERE external_id = 'F1'"))).scalar()
    assert duration == 5400
    hourly = (await connection.execute(text("SELECT sum(duration_s_sum) FROM app.flight_hourly_stats"))).scalar()
    assert hourly == 3600 * 2 + 7200 + 1800 + 1200 + 1800


async def test_xlsx_with_native_cells(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    rows = [
        HEADER.split(","),
        [1001, datetime(2024, 6, 1, 8, 0), datetime(2024, 6, 1, 9, 15), 37.6, 55.7, 30.3, 59.9, None],
        ["X-2", "2024-06-01T10:00:00Z", "2024-06-01T10:05:00Z", "37,5", "55,5", 37.6, 55.6, None],
    ]
    response = await client.post("/api/imports/flights", files=xlsx_file(rows), headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 2
    stored = (await connection.execute(text("SELECT duration_s FROM app.flights WHERE external_id = '1001'"))).scalar()
    assert stored == 4500


async def test_semicolon_csv_is_accepted(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    content = "external_id;departed_at;landed_at;start_lon;start_lat;end_lon;end_lat\nS1;2024-01-01T00:00:00Z;2024-01-01T01:00:00Z;37,61;55,75;30,31;59,93\n"
    response = await client.post("/api/imports/flights", files=csv_file(content), headers=admin)
    assert response.status_code == 200, response.text


async def test_wrong_columns_are_named(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    content = "external_id,departed,landed_at,start_lon,start_lat,end_lon,end_lat\nF1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2\n"
    response = await client.post("/api/imports/flights", files=csv_file(content), headers=admin)
    assert response.status_code == 422
    errors = {(e["row"], e["column"], e["message"]) for e in response.json()["detail"]["errors"]}
    assert (
        1,
        "departed",
        "unknown column; expected external_id, departed_at, landed_at, start_lon, start_lat, end_lon, end_lat, track",
    ) in errors
    assert (1, "departed_at", "required column is missing") in errors


async def test_bad_rows_reject_the_whole_file(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    content = (
        "\n".join(
            [
                HEADER,
                "G1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,",
                "G2,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,181,1,2,2,",
                "G3,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,-91,abc,2,",
                "G4,yesterday,2024-01-01T01:00:00Z,1,1,2,2,",
                "G5,2024-01-01T02:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,",
                "G6,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,LINESTRING(1 1)",
                ",2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,",
            ]
        )
        + "\n"
    )
    response = await client.post("/api/imports/flights", files=csv_file(content), headers=admin)
    assert response.status_code == 422
    got = {(e["row"], e["column"]) for e in response.json()["detail"]["errors"]}
    assert got == {
        (3, "start_lon"),
        (4, "start_lat"),
        (4, "end_lon"),
        (5, "departed_at"),
        (6, "landed_at"),
        (7, "track"),
        (8, "external_id"),
    }
    assert await count(connection, "flights") == 0  # G1 was valid but nothing is written


async def test_duplicates_in_one_file(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    line = "D1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,"
    response = await client.post("/api/imports/flights", files=csv_file(f"{HEADER}\n{line}\n{line}\n"), headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"]["errors"] == [{"row": 3, "column": "external_id", "message": "duplicate of row 2"}]


async def test_oversize_file_and_too_many_rows(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    big = HEADER + "\n" + ("x" * 1024 + "\n") * 300  # > 256 KiB (the test limit)
    response = await client.post("/api/imports/flights", files=csv_file(big), headers=admin)
    assert response.status_code == 413
    many = HEADER + "\n" + "".join(f"R{i},2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,1,1,2,2,\n" for i in range(1001))
    response = await client.post("/api/imports/flights", files=csv_file(many), headers=admin)
    assert response.status_code == 413
    assert "more than 1000 data rows" in response.json()["detail"]


async def test_empty_and_binary_files(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for content, name in (
        (b"", "flights.csv"),
        (b"\xff\xfe\x00garbage", "flights.csv"),
        (b"PK\x03\x04broken", "f.xlsx"),
    ):
        response = await client.post("/api/imports/flights", files={"file": (name, content, "text/csv")}, headers=admin)
        assert response.status_code == 422, (name, response.text)


async def test_regions_geojson_validation(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    bowtie = [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "OK", "name": "fine"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            },
            {
                "type": "Feature",
                "properties": {"code": "BAD", "name": "self-intersecting"},
                "geometry": {"type": "Polygon", "coordinates": bowtie},
            },
            {
                "type": "Feature",
                "properties": {"name": "no code"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            },
            {
                "type": "Feature",
                "properties": {"code": "PT", "name": "a point"},
                "geometry": {"type": "Point", "coordinates": [0, 0]},
            },
            {
                "type": "Feature",
                "properties": {"code": "FAR", "name": "off the globe"},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]},
            },
        ],
    }
    response = await client.post("/api/imports/regions", files=geojson_file(document), headers=admin)
    assert response.status_code == 422
    got = {(e["row"], e["column"]) for e in response.json()["detail"]["errors"]}
    assert got == {(2, "geometry"), (3, "properties.code"), (4, "geometry"), (5, "geometry")}


async def test_regions_reimport_is_idempotent_and_rejoins_flights(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)
    assert (
        await connection.execute(text("SELECT count(*) FROM app.flights WHERE region_id IS NOT NULL"))
    ).scalar() == 0
    first = (await client.post("/api/imports/regions", files=geojson_file(REGIONS_GEOJSON), headers=admin)).json()
    assert (first["inserted"], first["updated"]) == (2, 0)
    assert (
        await connection.execute(text("SELECT count(*) FROM app.flights WHERE region_id IS NOT NULL"))
    ).scalar() == 4
    again = (await client.post("/api/imports/regions", files=geojson_file(REGIONS_GEOJSON), headers=admin)).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)


async def test_import_is_recorded_in_flow_events(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await client.post("/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=admin)
    payload = (
        await connection.execute(
            text("SELECT payload FROM app.flow_events WHERE event_type = 'import' ORDER BY id DESC LIMIT 1")
        )
    ).scalar()
    assert payload["kind"] == "flights" and payload["inserted"] == 5 and len(payload["sha256"]) == 64
