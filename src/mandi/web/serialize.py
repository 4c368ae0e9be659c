"""Domain messages → JSON-ready dicts for the REST and WebSocket APIs.

Units on the wire (the API's one convention, documented in the OpenAPI description):

* prices and money: **rupees** as JSON numbers (paise / 100, exact to the paisa);
* times: ``time`` — ISO 8601 in IST with its offset (``2026-04-13T09:15:00.000+05:30``) — and
  ``t`` — seconds since the Unix epoch, UTC (a number; charts use it). Nanosecond integers are
  never sent: JavaScript numbers cannot hold them;
* quantities: shares (units); option-chain OI, change in OI and volume: contracts (as NSE shows
  them; ``lot_size`` converts);
* implied volatility: a decimal (0.13 = 13 %); theta rupees per calendar day; vega rupees per
  volatility point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any

import msgspec

from mandi.model.events import SystemEvent
from mandi.model.instruments import AnyInstrument, Future, Option
from mandi.model.market import Candle, ChainSnapshot, IndicatorValue, Tick

IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
_NS = 1_000_000_000


def rupees(paise: int | None) -> float | None:
    return None if paise is None else round(paise / 100, 2)


def iso(ts_ns: int | None) -> str | None:
    if not ts_ns:
        return None
    return dt.datetime.fromtimestamp(ts_ns / _NS, IST).isoformat(timespec="milliseconds")


def epoch_s(ts_ns: int | None) -> float | None:
    return None if not ts_ns else ts_ns / _NS


def num(x: Any, digits: int = 6) -> float | None:
    """A finite float rounded, or None (JSON has no NaN)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, digits) if math.isfinite(f) else None


def instrument(i: AnyInstrument) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": i.token,
        "exchange": i.exchange,
        "symbol": i.symbol,
        "name": i.name,
        "kind": type(i).__name__.lower(),
        "segment": i.segment,
        "lot_size": i.lot_size,
        "tick_size": rupees(i.tick_size),
        "freeze_qty": i.freeze_qty,
        "tradable": i.tradable,
    }
    if isinstance(i, Option | Future):
        out["underlying"] = i.underlying
        out["expiry"] = i.expiry.isoformat() if i.expiry else None
    if isinstance(i, Option):
        out["strike"] = rupees(i.strike)
        out["option_type"] = i.option_type
    return out


def tick(t: Tick) -> dict[str, Any]:
    return {
        "token": t.token,
        "exchange": t.exchange,
        "price": rupees(t.price),
        "volume": t.volume,
        "oi": t.oi,
        "bid": rupees(t.bid),
        "ask": rupees(t.ask),
        "time": iso(t.ts_event),
        "t": epoch_s(t.ts_event),
    }


def candle(c: Candle) -> dict[str, Any]:
    return {
        "token": c.token,
        "exchange": c.exchange,
        "timeframe": c.timeframe,
        "time": iso(c.bucket),
        "t": c.bucket // _NS,
        "open": rupees(c.open),
        "high": rupees(c.high),
        "low": rupees(c.low),
        "close": rupees(c.close),
        "volume": c.volume,
        "oi": c.oi,
        "ticks": c.ticks,
        "closed": c.closed,
    }


#: indicator families in price units (paise in the engine → rupees on the wire)
PRICE_INDICATORS = frozenset({"SMA", "EMA", "WMA", "BBANDS", "VWAP", "SUPERTREND", "ATR", "MACD"})


def indicator_scale(name: str) -> float:
    return 0.01 if name.split("_")[0].split(".")[0].upper() in PRICE_INDICATORS else 1.0


def indicator(v: IndicatorValue) -> dict[str, Any]:
    """Price-like indicators (SMA, EMA, BBANDS, MACD ...) in rupees; RSI, STOCH, ADX 0-100."""
    return {
        "token": v.token,
        "exchange": v.exchange,
        "timeframe": v.timeframe,
        "name": v.name,
        "time": iso(v.bucket),
        "t": v.bucket // _NS,
        "value": num(v.value * indicator_scale(v.name)),
        "confirmed": v.confirmed,
    }


def system_event(e: SystemEvent) -> dict[str, Any]:
    return {
        "time": iso(e.ts_event),
        "kind": e.kind,
        "message": e.message,
        "severity": e.severity,
        "source": e.source,
        "data": e.data,
    }


def chain_snapshot(s: ChainSnapshot) -> dict[str, Any]:
    """A raw snapshot (the analytics-free view), for when no matrix is running."""
    lot = max(s.lot_size, 1)

    def side(q: Any) -> dict[str, Any] | None:
        if q is None:
            return None
        return {
            "ltp": rupees(q.ltp),
            "bid": rupees(q.bid),
            "ask": rupees(q.ask),
            "volume": q.volume / lot,
            "oi": q.oi / lot,
            "oi_change": q.oi_change / lot,
            "iv": num(q.iv),
            "token": q.token,
            "symbol": q.symbol,
        }

    return {
        "underlying": s.underlying,
        "exchange": s.exchange,
        "expiry": s.expiry.isoformat(),
        "time": iso(s.ts_event),
        "t": epoch_s(s.ts_event),
        "underlying_price": rupees(s.underlying_price),
        "lot_size": s.lot_size,
        "source": s.source,
        "rows": [
            {"strike": rupees(r.strike), "ce": side(r.call), "pe": side(r.put)} for r in s.rows
        ],
    }


# --- trading messages ---------------------------------------------------------------------------

_MONEY_FIELDS = frozenset(
    {
        "price",
        "limit_price",
        "reference_price",
        "target",
        "stop_loss",
        "entry_price",
        "exit_price",
        "entry_premium",
        "exit_premium",
        "current_premium",
        "cost",
        "total_investment",
        "stop_loss_premium",
        "target_premium",
        "unrealized_pnl",
        "realized_pnl",
        "charges",
        "high_water",
        "fill_value",
        "filled_price",
        "pnl",
        "max_loss",
        "investment",
        "strike",
        "gross_profit",
        "gross_loss",
        "net_pnl",
        "max_drawdown",
        "peak",
        "day_pnl",
        "entry",
        "ltp",
        "capital",
        "available_cash",
        "exposure",
    }
)
_TIME_FIELDS = frozenset(
    {
        "ts_event",
        "timestamp",
        "entry_timestamp",
        "exit_timestamp",
        "created_ns",
        "updated_ns",
        "entry_time",
        "exit_time",
        "bucket",
        "updated_at",
        "processed_at",
        "created_at",
        "ts_ns",
    }
)
_OPAQUE = frozenset({"metadata", "detail", "charges_detail", "data"})


def _plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    out = msgspec.to_builtins(obj, builtin_types=(dt.date,))
    return out if isinstance(out, dict) else {"value": out}


def record(obj: Any) -> dict[str, Any]:
    """Any msgspec struct / dataclass / dict of the trading side with paise → rupees and
    ns → ISO applied by field name (money fields listed in :data:`_MONEY_FIELDS`)."""
    return _convert(_plain(obj))


def _convert(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in _OPAQUE:
            out[k] = _convert(v)
        elif k in _MONEY_FIELDS and isinstance(v, int) and not isinstance(v, bool):
            out[k] = rupees(v)
        elif k in _TIME_FIELDS and isinstance(v, int) and not isinstance(v, bool):
            if k == "ts_event":
                out["time"] = iso(v)
                out["t"] = epoch_s(v)
            else:
                out[k] = iso(v)
        elif isinstance(v, dt.date):
            out[k] = v.isoformat()
        elif isinstance(v, float):
            out[k] = num(v)
        else:
            out[k] = v
    if d.get("fill_value") and d.get("filled_qty"):
        out["avg_price"] = round(d["fill_value"] / d["filled_qty"] / 100, 2)
    return out


def position(rec: Any) -> dict[str, Any]:
    """A position (record or row) with the signed quantity, lots, P&L % and MTM spelled out."""
    d = _plain(rec)
    out = _convert(d)
    qty = int(d.get("quantity") or 0)
    direction = int(d.get("direction") or 1)
    lot = max(int(d.get("lot_size") or 1), 1)
    out["side"] = "LONG" if direction > 0 else "SHORT"
    out["net_quantity"] = qty * direction
    out["lots"] = qty / lot
    cost = int(d.get("cost") or 0)
    unreal = int(d.get("unrealized_pnl") or 0)
    out["pnl"] = rupees(unreal + int(d.get("realized_pnl") or 0))
    out["pnl_pct"] = num(100 * unreal / cost, 2) if cost else None
    out["mtm"] = rupees(unreal)
    if isinstance(out.get("metadata"), str):
        with contextlib.suppress(ValueError):
            out["metadata"] = json.loads(out["metadata"])
    return out


def alpha(sig: Any) -> dict[str, Any]:
    """The seed's alpha-card fields of a signal: signal, confidence and class probabilities
    (from the strategy's metadata when it gives them, else confidence on the chosen side)."""
    d = _plain(sig)
    action = str(d.get("action", ""))
    conf = float(d.get("confidence") or 0.0)
    meta = d.get("metadata") or {}
    probs = meta.get("probabilities") if isinstance(meta, dict) else None
    label = {"BUY": "Bullish", "SELL": "Bearish"}.get(action, "Neutral")
    if isinstance(meta, dict) and meta.get("alpha_signal"):  # an ML strategy's own class
        label = str(meta["alpha_signal"])
    if not isinstance(probs, dict):
        rest = max(0.0, 1.0 - conf) / 2
        probs = {
            "Bullish": conf if label == "Bullish" else rest,
            "Neutral": rest,
            "Bearish": conf if label == "Bearish" else rest,
        }
    out = {
        "alpha_signal": label,
        "alpha_confidence": num(conf, 4),
        "alpha_probabilities": {str(k): num(v, 4) for k, v in probs.items()},
    }
    if isinstance(meta, dict) and meta.get("model"):
        out.update(alpha_model=str(meta["model"]), alpha_model_date=str(meta.get("model_date", "")))
    return out


def prediction(strategy: str, p: dict[str, Any]) -> dict[str, Any]:
    """The alpha card of an ML strategy's latest prediction (``last_prediction``)."""
    return {
        "time": iso(p["time_ns"]),
        "t": epoch_s(p["time_ns"]),
        "strategy": strategy,
        "symbol": p["symbol"],
        "action": "",
        "alpha_signal": p["signal"],
        "alpha_confidence": num(p["confidence"], 4),
        "alpha_probabilities": {k: num(v, 4) for k, v in p["probabilities"].items()},
        "alpha_model": p["model"],
        "alpha_model_date": p["model_date"],
    }


def message(topic: str, msg: Any) -> Any:
    """The JSON view of any bus message (by type)."""
    conv = _BY_TYPE.get(type(msg))
    if conv is not None:
        return conv(msg)
    name = type(msg).__name__
    if name in ("PositionOpened", "PositionUpdated"):
        return {"time": iso(msg.ts_event), "position": position(msg.position)}
    if name == "PositionClosed":
        return {"time": iso(msg.ts_event), "reason": msg.reason, "position": position(msg.position)}
    if name.startswith("Order") and hasattr(msg, "order"):
        d = {"time": iso(msg.ts_event), "event": name, "order": record(msg.order)}
        if hasattr(msg, "reason"):
            d["reason"] = msg.reason
        return d
    if isinstance(msg, msgspec.Struct | dict):
        d = record(msg)
        if name == "SignalGenerated":
            d.update(alpha(msg))
        return d
    return msg


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    Tick: tick,
    Candle: candle,
    IndicatorValue: indicator,
    SystemEvent: system_event,
    ChainSnapshot: chain_snapshot,
}
