"""Parsing and validation of imported files: flights (CSV, XLSX) and regions (GeoJSON).

Every row is checked before anything is written; problems are collected as :class:`RowError`
(file row number as a spreadsheet shows it, header = row 1, and the column name) and raised
together as :class:`ImportRejected`, so an import is all-or-nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shapely import wkt as shapely_wkt
from shapely.errors import ShapelyError
from shapely.geometry import LineString, MultiPolygon, Polygon, shape
from shapely.validation import explain_validity

REQUIRED_COLUMNS = ("external_id", "departed_at", "landed_at", "start_lon", "start_lat", "end_lon", "end_lat")
OPTIONAL_COLUMNS = ("track",)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
MAX_EXTERNAL_ID = 64
MAX_FLIGHT_DURATION = timedelta(days=7)
MAX_REGION_CODE = 32
MAX_REGION_NAME = 200
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RowError:
    row: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


class ImportRejected(Exception):
    """The file is invalid; nothing was written."""

    def __init__(self, errors: list[RowError], truncated: bool = False) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file")
        self.errors = errors
        self.truncated = truncated


class ImportTooLarge(Exception):
    """The file exceeds a size limit (bytes or rows)."""


@dataclass(frozen=True)
class FlightRow:
    external_id: str
    departed_at: datetime
    landed_at: datetime
    start_lon: float
    start_lat: float
    end_lon: float
    end_lat: float
    track_wkt: str | None

    def as_record(self) -> tuple[Any, ...]:
        return (
            self.external_id,
            self.departed_at,
            self.landed_at,
            self.start_lon,
            self.start_lat,
            self.end_lon,
            self.end_lat,
            self.track_wkt,
        )


@dataclass(frozen=True)
class RegionFeature:
    code: str
    name: str
    wkt: str


@dataclass
class _Collector:
    max_errors: int
    errors: list[RowError] = field(default_factory=list)
    truncated: bool = False

    def add(self, row: int | None, column: str | None, message: str) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(row, column, message))
        else:
            self.truncated = True

    def raise_if_any(self) -> None:
        if self.errors:
            raise ImportRejected(self.errors, self.truncated)


# -- flights ------------------------------------------------------------------------------


def parse_flights(data: bytes, filename: str, *, max_rows: int, max_errors: int) -> list[FlightRow]:
    """Parse and validate a flights file (``.csv`` or ``.xlsx`` by name, else by content)."""
    kind = flight_file_kind(data, filename)
    rows = _xlsx_rows(data) if kind == "xlsx" else _csv_rows(data)
    return validate_flight_rows(rows, max_rows=max_rows, max_errors=max_errors)


def flight_file_kind(data: bytes, filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(".xlsx"):
        return "xlsx"
    if lower.endswith(".csv"):
        return "csv"
    return "xlsx" if data[:4] == b"PK\x03\x04" else "csv"


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected(
            [RowError(None, None, f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8")]
        ) from exc
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for values in reader:
            yield reader.line_num, values
    except csv.Error as exc:
        raise ImportRejected([RowError(reader.line_num, None, f"malformed CSV: {exc}")]) from exc


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook  # imported lazily: only XLSX imports pay for it

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as exc:
        raise ImportRejected([RowError(None, None, "the file is not a readable XLSX workbook")]) from exc
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, list(values)
    except Exception as exc:
        raise ImportRejected([RowError(None, None, "the XLSX workbook could not be read")]) from exc
    finally:
        workbook.close()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def validate_flight_rows(rows: Iterable[tuple[int, list[Any]]], *, max_rows: int, max_errors: int) -> list[FlightRow]:
    errors = _Collector(max_errors)
    iterator = iter(rows)
    header_row: list[Any] | None = None
    for _, values in iterator:
        if not all(_blank(v) for v in values):
            header_row = values
            break
    if header_row is None:
        raise ImportRejected(
            [RowError(1, None, f"the file is empty; the first row must name the columns {', '.join(REQUIRED_COLUMNS)}")]
        )
    header = [str(v).strip().lower() if v is not None else "" for v in header_row]
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        if not name:
            continue
        if name not in KNOWN_COLUMNS:
            errors.add(1, name, f"unknown column; expected {', '.join(KNOWN_COLUMNS)}")
        elif name in index:
            errors.add(1, name, "column appears twice")
        else:
            index[name] = position
    for name in REQUIRED_COLUMNS:
        if name not in index:
            errors.add(1, name, "required column is missing")
    errors.raise_if_any()

    result: list[FlightRow] = []
    seen: dict[str, int] = {}
    count = 0
    for number, values in iterator:
        if all(_blank(v) for v in values):
            continue
        count += 1
        if count > max_rows:
            raise ImportTooLarge(f"the file has more than {max_rows} data rows; split it into smaller files")
        row = _validate_flight(number, values, index, errors)
        if row is None:
            continue
        first = seen.get(row.external_id)
        if first is not None:
            errors.add(number, "external_id", f"duplicate of row {first}")
            continue
        seen[row.external_id] = number
        result.append(row)
    if count == 0:
        errors.add(2, None, "the file has a header but no data rows")
    errors.raise_if_any()
    return result


def _cell(values: list[Any], index: dict[str, int], name: str) -> Any:
    position = index.get(name)
    if position is None or position >= len(values):
        return None
    value = values[position]
    return value.strip() if isinstance(value, str) else value


def _validate_flight(number: int, values: list[Any], index: dict[str, int], errors: _Collector) -> FlightRow | None:
    before = len(errors.errors) + (1 if errors.truncated else 0)
    external_id = _cell(values, index, "external_id")
    if _blank(external_id):
        errors.add(number, "external_id", "required")
    else:
        if isinstance(external_id, float) and external_id.is_integer():
            external_id = int(external_id)
        external_id = str(external_id)
        if len(external_id) > MAX_EXTERNAL_ID or any(ord(c) < 32 for c in external_id):
            errors.add(number, "external_id", f"must be at most {MAX_EXTERNAL_ID} printable characters")
    departed = _timestamp(number, "departed_at", _cell(values, index, "departed_at"), errors)
    landed = _timestamp(number, "landed_at", _cell(values, index, "landed_at"), errors)
    if departed and landed:
        if landed < departed:
            errors.add(number, "landed_at", "is before departed_at")
        elif landed - departed > MAX_FLIGHT_DURATION:
            errors.add(number, "landed_at", f"the flight lasts more than {MAX_FLIGHT_DURATION.days} days")
    coords = {
        name: _coordinate(number, name, _cell(values, index, name), 180.0 if name.endswith("lon") else 90.0, errors)
        for name in ("start_lon", "start_lat", "end_lon", "end_lat")
    }
    track = _track(number, _cell(values, index, "track"), errors)
    after = len(errors.errors) + (1 if errors.truncated else 0)
    start_lon, start_lat, end_lon, end_lat = (coords[k] for k in ("start_lon", "start_lat", "end_lon", "end_lat"))
    if (
        after != before
        or departed is None
        or landed is None
        or start_lon is None
        or start_lat is None
        or end_lon is None
        or end_lat is None
    ):
        return None
    return FlightRow(str(external_id), departed, landed, start_lon, start_lat, end_lon, end_lat, track)


def _timestamp(number: int, column: str, value: Any, errors: _Collector) -> datetime | None:
    if _blank(value):
        errors.add(number, column, "required")
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            errors.add(number, column, "not an ISO 8601 timestamp (e.g. 2024-05-01T10:30:00Z)")
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # naive times are UTC by definition of the format
    if not EARLIEST <= parsed < LATEST:
        errors.add(number, column, "outside 1970–2099")
        return None
    return parsed


def _coordinate(number: int, column: str, value: Any, limit: float, errors: _Collector) -> float | None:
    if _blank(value):
        errors.add(number, column, "required")
        return None
    try:
        number_value = float(str(value).replace(",", ".")) if not isinstance(value, int | float) else float(value)
    except ValueError:
        errors.add(number, column, "not a number")
        return None
    if not math.isfinite(number_value) or not -limit <= number_value <= limit:
        errors.add(number, column, f"must be between {-limit:g} and {limit:g} degrees")
        return None
    return number_value


def _track(number: int, value: Any, errors: _Collector) -> str | None:
    if _blank(value):
        return None
    try:
        geometry = shapely_wkt.loads(str(value))
    except (ShapelyError, ValueError, TypeError):
        errors.add(number, "track", "not WKT; expected LINESTRING(lon lat, lon lat, ...)")
        return None
    if not isinstance(geometry, LineString) or geometry.is_empty or len(geometry.coords) < 2:
        errors.add(number, "track", "must be a LINESTRING with at least two points")
        return None
    if geometry.has_z or not _in_range(geometry.coords):
        errors.add(number, "track", "coordinates must be 2D lon/lat within ±180/±90")
        return None
    return str(geometry.wkt)


def _in_range(coords: Iterable[Any]) -> bool:
    return all(math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90 for x, y, *_ in coords)


# -- regions ------------------------------------------------------------------------------


def parse_regions(data: bytes, *, max_rows: int, max_errors: int) -> list[RegionFeature]:
    """Validate a GeoJSON FeatureCollection of (Multi)Polygons with ``code`` and ``name`` properties."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ImportRejected([RowError(None, None, "the file is not GeoJSON (invalid JSON)")]) from exc
    if (
        not isinstance(document, dict)
        or document.get("type") != "FeatureCollection"
        or not isinstance(document.get("features"), list)
    ):
        raise ImportRejected([RowError(None, "type", "expected a GeoJSON FeatureCollection with a features list")])
    features = document["features"]
    if len(features) > max_rows:
        raise ImportTooLarge(f"the file has more than {max_rows} features; split it into smaller files")
    if not features:
        raise ImportRejected([RowError(None, "features", "the FeatureCollection has no features")])
    errors = _Collector(max_errors)
    result: list[RegionFeature] = []
    seen: dict[str, int] = {}
    for number, feature in enumerate(features, start=1):
        region = _validate_region(number, feature, errors)
        if region is None:
            continue
        if region.code in seen:
            errors.add(number, "properties.code", f"duplicate of feature {seen[region.code]}")
            continue
        seen[region.code] = number
        result.append(region)
    errors.raise_if_any()
    return result


def _printable(value: str, max_length: int) -> bool:
    return 0 < len(value) <= max_length and not any(ord(c) < 32 for c in value)


def _validate_region(number: int, feature: Any, errors: _Collector) -> RegionFeature | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        errors.add(number, "type", "not a GeoJSON Feature")
        return None
    raw_properties = feature.get("properties")
    properties: dict[str, Any] = raw_properties if isinstance(raw_properties, dict) else {}
    code = properties.get("code")
    name = properties.get("name")
    ok = True
    if not isinstance(code, str | int) or not _printable(str(code).strip(), MAX_REGION_CODE):
        errors.add(number, "properties.code", f"required, at most {MAX_REGION_CODE} printable characters")
        ok = False
    if not isinstance(name, str) or not _printable(name.strip(), MAX_REGION_NAME):
        errors.add(number, "properties.name", f"required, at most {MAX_REGION_NAME} printable characters")
        ok = False
    geometry_json = feature.get("geometry")
    if not isinstance(geometry_json, dict) or geometry_json.get("type") not in ("Polygon", "MultiPolygon"):
        errors.add(number, "geometry", "must be a Polygon or MultiPolygon")
        return None
    try:
        geometry = shape(geometry_json)
    except (ShapelyError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        errors.add(number, "geometry", "malformed coordinates")
        return None
    if geometry.is_empty:
        errors.add(number, "geometry", "is empty")
        return None
    if geometry.has_z:
        errors.add(number, "geometry", "must be 2D (lon, lat)")
        return None
    coords = [c for polygon in getattr(geometry, "geoms", [geometry]) for c in polygon.exterior.coords]
    if not _in_range(coords):
        errors.add(number, "geometry", "coordinates must be lon/lat within ±180/±90 (EPSG:4326)")
        return None
    if not geometry.is_valid:
        errors.add(number, "geometry", f"invalid polygon: {explain_validity(geometry)}")
        return None
    if not ok:
        return None
    multi = (
        geometry
        if isinstance(geometry, MultiPolygon)
        else MultiPolygon([geometry] if isinstance(geometry, Polygon) else [])
    )
    return RegionFeature(code=str(code).strip(), name=str(name).strip(), wkt=str(multi.wkt))
