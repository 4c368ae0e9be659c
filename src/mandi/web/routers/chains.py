"""Option chain routes: the chain table with OI, OI % change, IV, Greeks, PCR and max pain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from mandi.web.deps import Api, Read
from mandi.web.models import ChainOut

router = APIRouter(prefix="/api/v1", tags=["options"])


@router.get(
    "/chain/{underlying}",
    summary="Option chain table with OI, OI % change, IV, Greeks, PCR, max pain",
    response_model=ChainOut,
    response_model_exclude_unset=True,
)
async def chain(
    p: Read,
    api: Api,
    underlying: str,
    expiry: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
) -> Any:
    return api.chain(underlying[:20], expiry)
