"""Inbound signal webhooks: ``POST /api/v1/webhooks/signal`` (a ``trade`` token, an HMAC
signature of the body with ``webhooks.secret``, fresh and never replayed; see
:mod:`mandi.web.inbound`)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from mandi.web.api import ApiError
from mandi.web.deps import Api, OrderCaller, command
from mandi.web.inbound import SIGNATURE_HEADER, InboundError, ReplayGuard, loads, parse, verify

router = APIRouter()


class InboundSignalOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    signal_id: str
    symbol: str
    action: str
    status: str = Field(description="ORDERED | LOGGED | DENIED | IGNORED | NEW")
    reason: str = ""
    duplicate: bool = Field(description="The same alert was received before: nothing new done.")


class InboundOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    strategy: str = Field(description="The strategy id the signals carry (webhook_<name>).")
    signals: list[InboundSignalOut]


@router.post(
    "/api/v1/webhooks/signal",
    tags=["trading"],
    summary="An alert (TradingView / ChartInk style) becomes signals through the risk manager "
    f"(trade token + {SIGNATURE_HEADER} HMAC, replay-protected)",
    response_model=InboundOut,
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "{symbol, action, price?, confidence?, quantity?, "
                        "strategy?, id?} or ChartInk's {stocks, trigger_prices, scan_name, ...}",
                    }
                }
            },
        }
    },
)
async def signal_webhook(request: Request, p: OrderCaller, api: Api) -> Any:
    cfg = api.node.cfg.webhooks
    if not cfg.secret:
        raise ApiError(404, "not_found", "inbound webhooks are off (set webhooks.secret)")
    body = await request.body()
    now = time.time()
    try:
        key = verify(cfg.secret, request.headers.get(SIGNATURE_HEADER), body, now, cfg.tolerance_s)
        guard = getattr(request.app.state, "replay_guard", None)
        if guard is None:
            guard = request.app.state.replay_guard = ReplayGuard()
        if not guard.first_use(key, now, cfg.tolerance_s):
            raise InboundError(409, "replayed", "this signed request was received already")
        source, items = parse(loads(body), cfg.chartink_action, key)
    except InboundError as e:
        raise ApiError(e.status, e.code, str(e), e.field) from None
    return await command(api, api.inbound_signals, source, items)
