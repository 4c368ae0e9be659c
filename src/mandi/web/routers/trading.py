"""Trading routes: signals, the alpha card, orders, positions, P&L, daily performance, trades and
the risk state (read scope); placing and cancelling orders and the HALTED latch (trade scope,
rate-limited per token); the seed's ``/api/place_order`` and ``/api/positions``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from mandi.logs import printable
from mandi.web.api import ApiError
from mandi.web.deps import (
    Api,
    CommandCaller,
    Limit,
    OrderCaller,
    Read,
    Sec,
    Trade,
    command,
    read_db,
)
from mandi.web.models import (
    CancelOut,
    DailyOut,
    LatchOut,
    OrderBody,
    OrderOut,
    OrderPlacedOut,
    PnlOut,
    PositionOut,
    PositionsOut,
    ReasonBody,
    RiskOut,
    SeedOrderBody,
    SeedOrderPlacedOut,
    SignalOut,
    TradeOut,
)

router = APIRouter(tags=["trading"])
V1 = "/api/v1"
OrderStatus = Literal[
    "OPEN",
    "NEW",
    "SUBMITTED",
    "ACKED",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELLED",
    "REJECTED",
    "UNKNOWN",
]

# --- reads ----------------------------------------------------------------------------------------


@router.get(
    f"{V1}/signals",
    summary="Recent signals (newest first)",
    response_model=list[SignalOut],
    response_model_exclude_unset=True,
)
async def signals(
    p: Read,
    api: Api,
    limit: Limit = 50,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    return api.signals(limit, strategy)


@router.get(
    f"{V1}/alpha",
    summary="The latest signal as the alpha card (signal, confidence, probabilities)",
    response_model=SignalOut | None,
    response_model_exclude_unset=True,
)
async def alpha(p: Read, api: Api) -> Any:
    return api.alpha()


@router.get(
    f"{V1}/orders",
    summary="Orders (newest first)",
    response_model=list[OrderOut],
    response_model_exclude_unset=True,
)
async def orders(p: Read, api: Api, limit: Limit = 100, status: OrderStatus | None = None) -> Any:
    return api.orders(status, limit)


@router.get(
    f"{V1}/positions",
    summary="Positions with live MTM",
    response_model=list[PositionOut],
    response_model_exclude_unset=True,
)
async def positions(
    p: Read, api: Api, status: Literal["open", "closed", "all"] = "open", limit: Limit = 100
) -> Any:
    return api.positions(status, limit)


@router.get(
    f"{V1}/pnl",
    summary="Today's P&L (realized, unrealized)",
    response_model=PnlOut,
    response_model_exclude_unset=True,
)
async def pnl(p: Read, api: Api) -> Any:
    return await command(api, api.pnl)


@router.get(
    f"{V1}/performance/daily",
    summary="Daily performance rows",
    response_model=list[DailyOut],
    response_model_exclude_unset=True,
)
async def daily(p: Read, api: Api, days: Annotated[int, Query(ge=1, le=3650)] = 30) -> Any:
    return api.daily_performance(days)


@router.get(
    f"{V1}/trades",
    summary="Closed trades (newest first)",
    response_model=list[TradeOut],
    response_model_exclude_unset=True,
)
async def trades(p: Read, api: Api, limit: Limit = 100) -> Any:
    return await read_db(api, "trades", limit)


@router.get(
    f"{V1}/risk",
    summary="Risk state: HALTED latch, denials by rule, recent denials",
    response_model=RiskOut,
    response_model_exclude_unset=True,
)
async def risk(p: Read, api: Api) -> Any:
    return api.risk()


# --- state changes (trade scope, rate-limited) ----------------------------------------------------


@router.post(
    f"{V1}/orders",
    status_code=201,
    summary="Place an order through the risk manager (trade scope; rate-limited)",
    response_model=OrderPlacedOut,
    response_model_exclude_unset=True,
    responses={
        409: {"description": "Denied by the risk manager: the body has `rule` and `reason`"}
    },
)
async def place_order(body: OrderBody, p: OrderCaller, api: Api) -> Any:
    return await command(api, api.place_order, **body.model_dump())


@router.delete(
    f"{V1}/orders/{{order_id}}",
    summary="Cancel an open order (trade scope; rate-limited)",
    response_model=CancelOut,
)
async def cancel_order(p: OrderCaller, api: Api, order_id: str) -> Any:
    return await command(api, api.cancel_order, order_id[:80])


@router.post(
    f"{V1}/trading/halt",
    summary="Set the HALTED latch: no new entries (trade scope; rate-limited)",
    response_model=LatchOut,
    response_model_exclude_unset=True,
)
async def halt(p: CommandCaller, api: Api, body: ReasonBody | None = None) -> Any:
    return await command(api, api.halt, printable(body.reason) if body else "")


@router.post(
    f"{V1}/trading/resume",
    summary="Clear the HALTED latch by hand (trade scope; rate-limited)",
    response_model=LatchOut,
    response_model_exclude_unset=True,
)
async def resume(p: CommandCaller, api: Api, body: ReasonBody | None = None) -> Any:
    return await command(api, api.resume, printable(body.reason) if body else "")


# --- the seed's routes ----------------------------------------------------------------------------


@router.post(
    "/api/place_order",
    tags=["seed"],
    summary="Seed alias of POST /api/v1/orders (adds success/message)",
    response_model=SeedOrderPlacedOut,
    response_model_exclude_unset=True,
)
async def seed_place(body: SeedOrderBody, p: Trade, api: Api, security: Sec) -> Any:
    side = body.side or body.action
    if side is None:
        raise ApiError(
            422, "invalid_parameter", "body.side: give side (or action) BUY or SELL", "body.side"
        )
    try:
        wait = security.order_limit.hit(p.token_id)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many orders; retry in {wait:.1f} s",
                retry_after_s=round(wait, 1),
            )
        out = await command(
            api,
            api.place_order,
            side=side,
            symbol=body.symbol,
            token=body.token,
            exchange=body.exchange,
            quantity=body.quantity or body.qty,
            lots=body.lots,
            price=body.price,
            request_id=body.request_id,
            order_type=body.order_type,
        )
    except ApiError as e:
        return JSONResponse({"success": False, "message": str(e), **e.body()}, status_code=e.status)
    return {"success": True, "message": f"order {out['status'].lower()}", **out}


@router.get(
    "/api/positions",
    tags=["seed"],
    summary="Seed alias: open positions with MTM",
    response_model=PositionsOut,
    response_model_exclude_unset=True,
)
async def seed_positions(p: Read, api: Api) -> Any:
    return {"positions": api.positions("open")}
