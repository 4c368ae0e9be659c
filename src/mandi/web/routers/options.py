"""Options routes: basket templates, payoff and Greeks (of a basket before it is placed, and of
the open book), and the volatility and OI views. All read-only (``read`` scope): analysing a
basket places nothing."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from mandi.web.deps import Api, OrderCaller, Read, command
from mandi.web.models import (
    BasketBody,
    BasketOut,
    BasketPlacedOut,
    BasketStatusOut,
    BookPayoffBody,
    IVRankOut,
    OIOut,
    PayoffBody,
    PayoffOut,
    SeriesOut,
    SmileOut,
    TemplateOut,
    TermStructureOut,
)
from mandi.web.options import OptionsViews

router = APIRouter(prefix="/api/v1", tags=["options"])

Underlying = Annotated[str, Path(max_length=20)]
Expiry = Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")]
Day = Annotated[str | None, Query(max_length=10, description="IST date YYYY-MM-DD (today)")]


@router.get("/templates", summary="Basket templates", response_model=list[TemplateOut])
async def templates(p: Read, api: Api) -> Any:
    return OptionsViews.of(api).templates()


@router.get(
    "/basket/{underlying}/{template}",
    summary="The legs of a template around the money",
    response_model=BasketOut,
    response_model_exclude_unset=True,
)
async def basket(
    p: Read,
    api: Api,
    underlying: Underlying,
    template: Annotated[str, Path(max_length=40)],
    expiry: Expiry = None,
    lots: Annotated[int, Query(ge=1, le=1000)] = 1,
    side: Literal["BUY", "SELL"] | None = None,
    strike: Annotated[float | None, Query(gt=0, le=1e7)] = None,
    offset: Annotated[int | None, Query(ge=0, le=50)] = None,
    width: Annotated[int | None, Query(ge=0, le=50)] = None,
    option_type: Literal["CE", "PE"] = "CE",
    far_expiry: Expiry = None,
) -> Any:
    return OptionsViews.of(api).build(
        underlying,
        template,
        expiry=expiry,
        lots=lots,
        side=side,
        strike=strike,
        offset=offset,
        width=width,
        option_type=option_type,
        far_expiry=far_expiry,
    )


@router.post(
    "/payoff",
    summary="Payoff, breakevens, probability of profit, Greeks and margin of a basket",
    response_model=PayoffOut,
    response_model_exclude_unset=True,
)
async def payoff(p: Read, api: Api, body: PayoffBody) -> Any:
    return OptionsViews.of(api).payoff(body.model_dump())


@router.post(
    "/positions/payoff/{underlying}",
    summary="Payoff and Greeks of the open option positions on an underlying",
    response_model=PayoffOut,
    response_model_exclude_unset=True,
)
async def book_payoff(
    p: Read, api: Api, underlying: Underlying, body: BookPayoffBody | None = None
) -> Any:
    return OptionsViews.of(api).book_payoff(underlying, body.model_dump() if body else None)


@router.get(
    "/volatility/{underlying}/smile",
    summary="IV smile of one expiry",
    response_model=SmileOut,
    response_model_exclude_unset=True,
)
async def smile(p: Read, api: Api, underlying: Underlying, expiry: Expiry = None) -> Any:
    return OptionsViews.of(api).smile(underlying, expiry)


@router.get(
    "/volatility/{underlying}/term",
    summary="ATM IV term structure",
    response_model=TermStructureOut,
    response_model_exclude_unset=True,
)
async def term(p: Read, api: Api, underlying: Underlying) -> Any:
    return OptionsViews.of(api).term_structure(underlying)


@router.get(
    "/volatility/{underlying}/rank",
    summary="IV rank and percentile from the stored history",
    response_model=IVRankOut,
    response_model_exclude_unset=True,
)
async def rank(
    p: Read, api: Api, underlying: Underlying, days: Annotated[int, Query(ge=1, le=3650)] = 365
) -> Any:
    views = OptionsViews.of(api)
    current = views.current_atm_iv(underlying)  # the matrix, on the loop
    return await run_in_threadpool(views.iv_rank, underlying, days, current)


@router.get(
    "/volatility/{underlying}/straddle",
    summary="ATM straddle premium through the day",
    response_model=SeriesOut,
    response_model_exclude_unset=True,
)
async def straddle(
    p: Read, api: Api, underlying: Underlying, expiry: Expiry = None, date: Day = None
) -> Any:
    return await run_in_threadpool(OptionsViews.of(api).straddle, underlying, expiry, date)


@router.get(
    "/oi/{underlying}",
    summary="OI and change in OI by strike",
    response_model=OIOut,
    response_model_exclude_unset=True,
)
async def oi(p: Read, api: Api, underlying: Underlying, expiry: Expiry = None) -> Any:
    return OptionsViews.of(api).oi(underlying, expiry)


@router.get(
    "/oi/{underlying}/history",
    summary="OI of one strike through the day",
    response_model=SeriesOut,
    response_model_exclude_unset=True,
)
async def oi_history(
    p: Read,
    api: Api,
    underlying: Underlying,
    strike: Annotated[
        float | None, Query(gt=0, le=1e7, description="Strike in rupees (default: ATM)")
    ] = None,
    expiry: Expiry = None,
    date: Day = None,
) -> Any:
    views = OptionsViews.of(api)
    exp = views.expiry_for(underlying, expiry)
    k = strike if strike is not None else views.atm_strike(underlying, exp)
    return await run_in_threadpool(views.oi_history, underlying, k, exp, date)


@router.get(
    "/oi/{underlying}/pcr",
    summary="PCR and max pain through the day",
    response_model=SeriesOut,
    response_model_exclude_unset=True,
)
async def pcr(
    p: Read, api: Api, underlying: Underlying, expiry: Expiry = None, date: Day = None
) -> Any:
    views = OptionsViews.of(api)
    exp = views.expiry_for(underlying, expiry)
    return await run_in_threadpool(views.pcr_history, underlying, exp, date)


@router.post(
    "/baskets",
    summary="Place a basket as one structure: one risk decision, hedges first (trade scope)",
    response_model=BasketPlacedOut,
    response_model_exclude_unset=True,
    status_code=201,
)
async def place_basket(body: BasketBody, p: OrderCaller, api: Api) -> Any:
    views = OptionsViews.of(api)
    return await command(api, views.place_basket, body.model_dump())


@router.get(
    "/baskets/{basket_id}",
    summary="A placed basket's legs and status",
    response_model=BasketStatusOut,
    response_model_exclude_unset=True,
)
async def basket_status(p: Read, api: Api, basket_id: Annotated[str, Path(max_length=80)]) -> Any:
    return OptionsViews.of(api).basket_status(basket_id)
