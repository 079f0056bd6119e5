"""Hand-made test data with hand-computed expectations (distances along the equator are exact:
one degree of longitude = 6378137 m × π/180 = 111.319 km on the WGS 84 spheroid)."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

KM_PER_DEGREE_AT_EQUATOR = 6378137 * 3.141592653589793 / 180 / 1000  # 111.3195 km

HEADER = "external_id,departed_at,landed_at,start_lon,start_lat,end_lon,end_lat,track"
FLIGHTS_CSV = (
    "\n".join(
        [
            HEADER,
            "F1,2024-05-01T10:00:00Z,2024-05-01T11:00:00Z,1,0,2,0,",
            "F2,2024-05-01T10:30:00Z,2024-05-01T12:30:00Z,3,0,5,0,",
            "F3,2024-05-02T23:30:00Z,2024-05-03T00:30:00Z,12,0,15,0,",
            "F4,2024-05-03T08:00:00+03:00,2024-05-03T08:30:00+03:00,30,0,31,0,",
            '"F5",2024-05-02 12:00:00,2024-05-02 12:20:00,1,0,1,0,"LINESTRING(1 0, 2 0, 1 0)"',
        ]
    )
    + "\n"
)


def square(code: str, name: str, lon0: float, lon1: float, lat0: float = -10, lat1: float = 10) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


REGIONS = {"type": "FeatureCollection", "features": [square("A", "Region A", 0, 10), square("B", "Region B", 10, 20)]}
REGIONS_GEOJSON = json.dumps(REGIONS).encode()


def csv_file(text: str, name: str = "flights.csv") -> dict[str, Any]:
    return {"file": (name, text.encode(), "text/csv")}


def geojson_file(data: bytes | dict[str, Any], name: str = "regions.geojson") -> dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"file": (name, raw, "application/geo+json")}


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def xlsx_file(rows: list[list[Any]], name: str = "flights.xlsx") -> dict[str, Any]:
    return {"file": (name, xlsx_bytes(rows), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)
