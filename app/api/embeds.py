"""DataLens embed tokens (R-APP-3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from app.deps import Reader
from app.embeds import EmbedSigner, EmbedsNotConfigured
from app.schemas import EmbedRequest, EmbedToken

router = APIRouter(prefix="/api/embeds", tags=["embeds"])


@router.post("/datalens", response_model=EmbedToken, responses={503: {"description": "embeds not configured"}})
async def datalens_embed(body: EmbedRequest, request: Request, _: Reader) -> Any:
    """A short-lived JWT (PS256, ``kid`` header) for one dashboard's private embed."""
    signer: EmbedSigner = request.app.state.embed_signer
    try:
        return signer.issue(body.dashboard, body.params)
    except EmbedsNotConfigured as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
