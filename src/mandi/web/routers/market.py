"""Market data routes: instruments, underlyings, the info bar, candles and indicators."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from mandi.web import serialize as ser
from mandi.web.deps import Api, Limit, Read, TokenQ, read_db
from mandi.web.models import (
    CandlesOut,
    IndicatorsOut,
    InstrumentOut,
    InstrumentsOut,
    OverviewOut,
    UnderlyingOut,
)

router = APIRouter(prefix="/api/v1", tags=["market"])


@router.get(
    "/instruments",
    summary="Instruments (filterable)",
    response_model=InstrumentsOut,
    response_model_exclude_unset=True,
)
async def instruments(
    p: Read,
    api: Api,
    exchange: Literal["NSE", "BSE"] | None = None,
    kind: Literal["index", "equity", "future", "option"] | None = None,
    underlying: Annotated[str | None, Query(max_length=20)] = None,
    expiry: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
    q: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> Any:
    return api.instruments(exchange, kind, underlying, expiry, q, limit, offset)


@router.get(
    "/instruments/{token}",
    summary="One instrument",
    response_model=InstrumentOut,
    response_model_exclude_unset=True,
)
async def instrument(p: Read, api: Api, token: Annotated[int, Path(ge=0, le=2**40)]) -> Any:
    return ser.instrument(api.instrument(token, field="path"))


@router.get(
    "/underlyings",
    summary="Underlyings with option chains and their expiries",
    response_model=list[UnderlyingOut],
)
async def underlyings(p: Read, api: Api) -> Any:
    return api.underlyings()


@router.get(
    "/overview/{underlying}",
    summary="Info bar: price, change vs previous close, PCR, India VIX, ITM delta %",
    response_model=OverviewOut,
    response_model_exclude_unset=True,
)
async def overview(p: Read, api: Api, underlying: str) -> Any:
    return api.overview(underlying[:20])


@router.get(
    "/candles",
    summary="Confirmed candles (oldest first)",
    response_model=CandlesOut,
    response_model_exclude_unset=True,
)
async def candles(
    p: Read,
    api: Api,
    token: TokenQ,
    timeframe: Annotated[int, Query(ge=1, le=86400, description="Seconds")] = 60,
    limit: Limit = 300,
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> Any:
    return await read_db(api, "candles", token, timeframe, limit, before)


@router.get(
    "/indicators",
    summary="Confirmed indicator values per name (oldest first)",
    response_model=IndicatorsOut,
    response_model_exclude_unset=True,
)
async def indicators(
    p: Read,
    api: Api,
    token: TokenQ,
    timeframe: Annotated[int, Query(ge=1, le=86400)] = 60,
    names: Annotated[
        list[str] | None,
        Query(max_length=40, description="e.g. SMA_9 (repeat or comma-separate)"),
    ] = None,
    limit: Limit = 300,
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> Any:
    flat = [n for x in (names or []) for n in x.split(",") if n] or None
    return await read_db(api, "indicators", token, timeframe, flat, limit, before)
