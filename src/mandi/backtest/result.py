"""What a backtest returns: trades, the equity curve, statistics — in paise and ns inside, rupees
and ISO times (IST) outside.

:meth:`BacktestResult.to_dict` is the ``--json`` document::

    {"stats": {..., "final_value": ...},
     "trades": [{"entry_time", "exit_time", "side", "quantity", "entry_price", "exit_price",
                 "charges", "pnl", "symbol"(, "structure")}, ...],
     "equity": [{"time", "value"}, ...]
     (, "structures": [{"structure", "strategy", "legs", "entry_time", "exit_time",
                        "net_premium", "charges", "pnl", "stopped_legs"}, ...])}

with prices and money in rupees and times as ISO 8601 with the IST offset.
:meth:`BacktestResult.trades_frame` gives the trades as a pandas DataFrame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import numpy as np

from mandi.core.calendar import ist_datetime

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
TRADE_KEYS = (
    "entry_time",
    "exit_time",
    "side",
    "quantity",
    "entry_price",
    "exit_price",
    "charges",
    "pnl",
    "symbol",
)


def iso(ts_ns: int) -> str:
    """ISO 8601 IST of a UTC-ns time (``2026-04-13T09:18:00+05:30``)."""
    return ist_datetime(ts_ns).replace(tzinfo=IST).isoformat()


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed position (money in paise, times in ns UTC)."""

    entry_time: int
    exit_time: int
    side: str  # BUY (long) | SELL (short)
    quantity: int
    entry_price: int
    exit_price: int
    charges: int
    pnl: int  # net of charges
    symbol: str = ""
    strategy: str = ""
    exit_reason: str = ""
    structure: str = ""  # the option structure the leg belongs to (option-leg strategies)

    def key(self) -> tuple[Any, ...]:
        """What two engines must agree on for the same trade."""
        return (
            self.entry_time,
            self.exit_time,
            self.side,
            self.quantity,
            self.entry_price,
            self.exit_price,
            self.charges,
            self.pnl,
            self.symbol,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "entry_time": iso(self.entry_time),
            "exit_time": iso(self.exit_time),
            "side": self.side,
            "quantity": self.quantity,
            "entry_price": self.entry_price / 100,
            "exit_price": self.exit_price / 100,
            "charges": self.charges / 100,
            "pnl": self.pnl / 100,
            "symbol": self.symbol,
            **({"structure": self.structure} if self.structure else {}),
        }


@dataclass
class BacktestResult:
    """The outcome of one backtest.

    Attributes
    ----------
    stats : dict
        The statistics of :mod:`mandi.backtest.stats` (rupees, fractions) plus the run's
        description (strategy, parameters, symbols, engine).
    trades : list[Trade]
        Closed trades in the order they closed (paise, ns).
    times, equity : ndarray
        The equity curve: bar-end times (ns) and values (paise).
    """

    stats: dict[str, Any]
    trades: list[Trade]
    times: np.ndarray
    equity: np.ndarray
    in_market: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    signals: list[Any] = field(default_factory=list)
    fills: list[Any] = field(default_factory=list)
    prices: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )  # symbol -> (bucket, open, high, low, close) for the report
    notes: list[str] = field(default_factory=list)
    structures: list[dict[str, Any]] = field(default_factory=list)  # rupees, IST times

    # --- views ------------------------------------------------------------------------------------
    @property
    def final_value(self) -> float:
        return float(self.stats["final_value"])

    def trade_records(self) -> list[dict[str, Any]]:
        """Trades as plain dicts (rupees, timezone-aware IST datetimes) — pandas-friendly."""
        out = []
        for t in self.trades:
            d = asdict(t)
            d["entry_time"] = ist_datetime(t.entry_time).replace(tzinfo=IST)
            d["exit_time"] = ist_datetime(t.exit_time).replace(tzinfo=IST)
            for k in ("entry_price", "exit_price", "charges", "pnl"):
                d[k] = d[k] / 100
            out.append(d)
        return out

    def trades_frame(self) -> Any:
        """The trades as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        cols = [*TRADE_KEYS, "strategy", "exit_reason", "structure"]
        return pd.DataFrame(self.trade_records(), columns=cols)

    def equity_frame(self) -> Any:
        import pandas as pd

        idx = pd.to_datetime(self.times, utc=True).tz_convert("Asia/Kolkata")
        return pd.Series(self.equity / 100, index=idx, name="equity")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "stats": self.stats,
            "trades": [t.as_json() for t in self.trades],
            "equity": [
                {"time": iso(t), "value": v / 100}
                for t, v in zip(self.times.tolist(), self.equity.tolist(), strict=True)
            ],
        }
        if self.structures:
            doc["structures"] = self.structures
        return doc

    def to_json(self) -> bytes:
        """The ``--json`` document (deterministic: the same run gives the same bytes)."""
        return msgspec.json.format(msgspec.json.encode(self.to_dict()), indent=1)

    def summary(self) -> str:
        """One line: trades, final value, return, Sharpe, drawdown, win rate."""
        s = self.stats

        def pct(x: float | None) -> str:
            return "–" if x is None else f"{x * 100:+.2f} %"

        def num(x: float | None) -> str:
            return "–" if x is None else f"{x:.2f}"

        return (
            f"{s['trades']} trades, final value ₹{s['final_value']:,.2f} "
            f"({pct(s['total_return'])}), Sharpe {num(s['sharpe'])}, "
            f"max drawdown {pct(-(s['max_drawdown'] or 0.0))}, "
            f"win rate {pct(s['win_rate'])}, profit factor {num(s['profit_factor'])}"
        )


def from_raw(raw: Any, meta: dict[str, Any] | None = None) -> BacktestResult:
    """A :class:`BacktestResult` from an engine's :class:`~mandi.backtest.engine.RawResult`."""
    from mandi.backtest.stats import compute_stats

    structure_of = _structures_by_position(raw.store)
    trades = [
        Trade(
            entry_time=t.entry_time,
            exit_time=t.exit_time,
            side=t.side,
            quantity=t.quantity,
            entry_price=t.entry_price,
            exit_price=t.exit_price,
            charges=t.charges,
            pnl=t.pnl,
            symbol=t.symbol,
            strategy=t.strategy,
            exit_reason=t.exit_reason,
            structure=structure_of.get(t.position_id, ""),
        )
        for t in raw.store.trades
    ]
    fills = list(raw.store.fills.values())
    stats = compute_stats(
        raw.times,
        raw.equity,
        raw.in_market,
        raw.cash,
        [t.pnl for t in trades],
        open_positions=len(raw.open_positions),
        bars=raw.bars,
        charges=sum(f.charges for f in fills),
    )
    stats["signals"] = len(raw.signals)
    stats["orders"] = len(raw.store.orders)
    stats["fills"] = len(fills)
    stats["risk_denials"] = dict(sorted(raw.denials.items()))
    if raw.strategy_errors:
        stats["strategy_errors"] = dict(sorted(raw.strategy_errors.items()))
    if stats["start"] is not None:
        stats["start"] = iso(stats["start"])
        stats["end"] = iso(stats["end"])
    if meta:
        stats.update(meta)
    prices: dict[str, Any] = {}
    for s in sorted(raw.series, key=lambda s: -s.timeframe):  # the finest of a symbol wins
        prices[s.symbol] = (s.bucket, s.open, s.high, s.low, s.close)
    return BacktestResult(
        stats=stats,
        trades=trades,
        times=raw.times,
        equity=raw.equity,
        in_market=raw.in_market,
        signals=list(raw.signals),
        fills=fills,
        prices=prices,
        notes=list(raw.notes),
        structures=structure_results(trades),
    )


def _structures_by_position(store: Any) -> dict[str, str]:
    """position id -> the ``structure`` its entry signal named (option-leg strategies)."""
    signals = getattr(store, "signals", {})
    out: dict[str, str] = {}
    for pid, pos in getattr(store, "positions", {}).items():
        if pos.signal_id.startswith("basket:"):  # a leg of a basket
            out[pid] = pos.signal_id.removeprefix("basket:")
            continue
        sig = signals.get(pos.signal_id)
        name = (sig.metadata or {}).get("structure", "") if sig is not None else ""
        if name:
            out[pid] = str(name)
    return out


def structure_results(trades: list[Trade]) -> list[dict[str, Any]]:
    """Per-structure results of option-leg trades (rupees, IST times), in entry order: the legs,
    entry (first leg in) and exit (last leg out) times, net premium (> 0 a credit), charges,
    P&L net of charges, and how many legs were stopped out."""
    groups: dict[str, list[Trade]] = {}
    for t in trades:
        if t.structure:
            groups.setdefault(t.structure, []).append(t)
    out = []
    for name, legs in sorted(groups.items(), key=lambda kv: min(t.entry_time for t in kv[1])):
        premium = sum((1 if t.side == "SELL" else -1) * t.entry_price * t.quantity for t in legs)
        out.append(
            {
                "structure": name,
                "strategy": legs[0].strategy,
                "legs": [f"{t.side} {t.quantity} {t.symbol}" for t in legs],
                "entry_time": iso(min(t.entry_time for t in legs)),
                "exit_time": iso(max(t.exit_time for t in legs)),
                "net_premium": premium / 100,
                "charges": sum(t.charges for t in legs) / 100,
                "pnl": sum(t.pnl for t in legs) / 100,
                "stopped_legs": sum(t.exit_reason == "STOP_LOSS_HIT" for t in legs),
            }
        )
    return out
