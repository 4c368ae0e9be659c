"""Backtest routes: the runs ``mandi backtest --save`` stored, and one run in full."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from mandi.web.deps import Api, Read, read_db
from mandi.web.models import BacktestDetailOut, BacktestRunsOut

router = APIRouter(prefix="/api/v1", tags=["backtests"])


@router.get(
    "/backtests",
    summary="Stored backtest runs (newest first)",
    response_model=BacktestRunsOut,
    response_model_exclude_unset=True,
)
async def backtests(
    p: Read,
    api: Api,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    return await read_db(api, "backtests", limit, strategy)


@router.get(
    "/backtests/{run_id}",
    summary="One stored backtest run: stats, equity curve and trades",
    response_model=BacktestDetailOut,
    response_model_exclude_unset=True,
)
async def backtest(p: Read, api: Api, run_id: Annotated[str, Path(max_length=80)]) -> Any:
    return await read_db(api, "backtest", run_id)
