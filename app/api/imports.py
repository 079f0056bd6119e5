"""Imports (admins): flights from CSV/XLSX, regions from GeoJSON; all-or-nothing and idempotent."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import ingest, store
from app.deps import Importer, SessionDep, SettingsDep
from app.observability import record_event
from app.schemas import ImportResult

router = APIRouter(prefix="/api/imports", tags=["imports"])

CHUNK = 1 << 20
RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "the file exceeds the size limit"},
    422: {"description": "the file has errors: detail.errors lists row, column and message; nothing was written"},
}


async def _read_limited(request: Request, upload: UploadFile, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"the upload exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"the file exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _rejected(exc: ingest.ImportRejected) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": {
                "message": "the file was rejected and nothing was imported; fix the rows listed in errors",
                "errors": [e.as_dict() for e in exc.errors],
                "truncated": exc.truncated,
            }
        },
    )


@router.post("/flights", response_model=ImportResult, responses=RESPONSES)
async def import_flights(
    request: Request, file: UploadFile, session: SessionDep, settings: SettingsDep, user: Importer
) -> Any:
    """Flights from CSV (``,`` or ``;``) or XLSX (first sheet). Columns: external_id, departed_at,
    landed_at (ISO 8601; UTC if no zone), start_lon, start_lat, end_lon, end_lat, optional track
    (WKT LINESTRING). Re-importing a file changes nothing; changed rows update by external_id."""
    data = await _read_limited(request, file, settings.import_max_bytes)
    started = time.perf_counter()
    try:
        rows = await run_in_threadpool(
            ingest.parse_flights,
            data,
            file.filename or "",
            max_rows=settings.import_max_rows,
            max_errors=settings.import_max_errors,
        )
    except ingest.ImportRejected as exc:
        return _rejected(exc)
    except ingest.ImportTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from exc
    counts = await store.upsert_flights(session, rows)
    await session.commit()
    return await _finish(request, "flights", counts, started, data, file.filename, user.username)


@router.post("/regions", response_model=ImportResult, responses=RESPONSES)
async def import_regions(
    request: Request, file: UploadFile, session: SessionDep, settings: SettingsDep, user: Importer
) -> Any:
    """Regions from a GeoJSON FeatureCollection (EPSG:4326) of Polygon/MultiPolygon features with
    ``code`` and ``name`` properties; upserted by code, then flights are re-joined to regions."""
    data = await _read_limited(request, file, settings.import_max_bytes)
    started = time.perf_counter()
    try:
        regions = await run_in_threadpool(
            ingest.parse_regions, data, max_rows=settings.import_max_rows, max_errors=settings.import_max_errors
        )
    except ingest.ImportRejected as exc:
        return _rejected(exc)
    except ingest.ImportTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from exc
    counts = await store.upsert_regions(session, regions)
    await session.commit()
    return await _finish(request, "regions", counts, started, data, file.filename, user.username)


async def _finish(
    request: Request,
    kind: str,
    counts: store.UpsertCounts,
    started: float,
    data: bytes,
    filename: str | None,
    username: str | None,
) -> dict[str, Any]:
    elapsed = max(time.perf_counter() - started, 1e-6)
    request.app.state.metrics.imported_rows.labels(kind).inc(counts.inserted + counts.updated)
    await record_event(
        request.app.state.sessionmaker,
        "import",
        f"{kind} imported",
        {
            "kind": kind,
            "file": filename,
            "sha256": hashlib.sha256(data).hexdigest(),
            "user": username,
            **counts.as_dict(),
        },
    )
    return {"kind": kind, **counts.as_dict(), "rows_per_second": round(counts.received / elapsed, 1)}
