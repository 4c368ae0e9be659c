"""The simulated exchange: a seeded, deterministic market of indices, stocks and option chains.

* Underlyings (NIFTY, BANKNIFTY, FINNIFTY, SENSEX, INDIA VIX) and a handful of stocks follow
  geometric random walks scaled to trading time (annual variance / 252 per session), stepping
  every ``step_ms`` of exchange time.
* Every index has a full option chain — ``strikes_each_side`` strikes around the opening ATM at
  the real strike spacing — for its expiries by the calendar rules (NIFTY and SENSEX: the next two
  weeklies and the monthly; BANKNIFTY, FINNIFTY: the next two monthlies). Prices are Black-Scholes
  prices (``mandi.options.bs_price``) at a volatility smile (:func:`smile`) around a drifting ATM
  vol, rounded to the 5-paise tick; bid/ask, volume and open interest evolve plausibly.
* Everything is generated per minute of exchange time from ``numpy.random.default_rng([seed,
  day, minute])``, so the market is identical for a given seed and date, and
  :meth:`SimExchange.seek` can jump to any second of the day (restart) without emitting ticks.

:class:`SimExchange` is pure (no I/O, no clock); :class:`SimFeed` paces it in real time at a speed
multiplier for the shell.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np

from mandi.config import SimConfig
from mandi.core.calendar import ExchangeCalendar, calendar, ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ConfigError
from mandi.feeds.pacer import ExchangePacer
from mandi.model.batches import (
    N_TICK_FIELDS,
    T_ASK,
    T_ASK_QTY,
    T_BID,
    T_BID_QTY,
    T_EXCHANGE,
    T_INIT,
    T_LAST_QTY,
    T_OI,
    T_PRICE,
    T_TOKEN,
    T_TS,
    T_VOLUME,
    TickBatch,
    exchange_code,
)
from mandi.model.instruments import AnyInstrument, Equity, Index, Option
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote, Tick

TICK = 5  # paise
NS_PER_YEAR = 365 * 86_400 * NS_PER_SECOND  # ACT/365
RISK_FREE_RATE = 0.065


@dataclass(frozen=True)
class UnderlyingSpec:
    symbol: str
    exchange: str
    token: int
    spot: float  # rupees, a typical level
    vol: float  # annualised
    spacing: int  # strike spacing, rupees
    lot: int
    freeze: int


UNDERLYINGS: dict[str, UnderlyingSpec] = {
    u.symbol: u
    for u in (
        UnderlyingSpec("NIFTY", "NSE", 256265, 24200.0, 0.13, 50, 65, 1800),
        UnderlyingSpec("BANKNIFTY", "NSE", 260105, 55000.0, 0.15, 100, 30, 600),
        UnderlyingSpec("FINNIFTY", "NSE", 257801, 26000.0, 0.14, 50, 60, 1800),
        UnderlyingSpec("SENSEX", "BSE", 265, 80000.0, 0.13, 100, 20, 1000),
    )
}
VIX_TOKEN = 264969
STOCKS: dict[str, tuple[int, float, float]] = {  # symbol: (token, price, vol)
    "RELIANCE": (738561, 1400.0, 0.22),
    "HDFCBANK": (341249, 1950.0, 0.18),
    "INFY": (408065, 1550.0, 0.24),
    "TCS": (2953217, 3400.0, 0.20),
    "ICICIBANK": (1270529, 1400.0, 0.21),
}


def smile(
    atm_vol: float | np.ndarray, spot: float | np.ndarray, strike: float | np.ndarray
) -> np.ndarray:
    """The simulator's implied-volatility smile: a put skew and a convex wing in log-moneyness."""
    x = np.log(np.asarray(strike, dtype=float) / np.asarray(spot, dtype=float))
    atm = np.asarray(atm_vol, dtype=float)
    return np.asarray(np.clip(atm * (1.0 - 1.5 * x + 12.0 * x * x), 0.5 * atm, 3.0 * atm))


def option_symbol(
    underlying: str, expiry: dt.date, strike_rupees: int, kind: str, monthly: bool
) -> str:
    """Kite-style trading symbol: ``NIFTY26APR24200CE`` (monthly) or ``NIFTY2641324200CE``
    (weekly: year, month 1-9/O/N/D, day)."""
    yy = expiry.year % 100
    if monthly:
        return f"{underlying}{yy:02d}{expiry.strftime('%b').upper()}{strike_rupees}{kind}"
    m = "123456789OND"[expiry.month - 1]
    return f"{underlying}{yy:02d}{m}{expiry.day:02d}{strike_rupees}{kind}"


def _token_for(symbol: str, taken: set[int]) -> int:
    t = 0x1000000 | (zlib.crc32(symbol.encode()) & 0x3FFFFFF)
    while t in taken:  # deterministic probe on the (rare) collision
        t += 1
    taken.add(t)
    return t


def day_listing(
    cfg: SimConfig, day: dt.date, spots: list[float] | None = None
) -> tuple[list[AnyInstrument], list[Option], dict[str, list[dt.date]]]:
    """The instruments the simulated exchange lists on ``day``: indices, stocks and India VIX,
    then every option contract (``strikes_each_side`` strikes around each index's ATM at
    ``spots``, by default the opening levels, for its expiries by the calendar rules); and the
    expiries per index. Pure and cheap: no prices are computed."""
    specs = [UNDERLYINGS[u] for u in cfg.underlyings]
    spots = spots if spots is not None else [u.spot for u in specs]
    contracts: list[Option] = []
    instruments: list[AnyInstrument] = []
    taken: set[int] = set()
    for spec in specs:
        instruments.append(
            Index(spec.token, spec.exchange, spec.symbol, spec.symbol, "INDICES", 1, TICK)
        )
        taken.add(spec.token)
    for s in cfg.stocks:
        tok = STOCKS[s][0]
        instruments.append(Equity(tok, "NSE", s, s, "NSE", 1, TICK))
        taken.add(tok)
    instruments.append(Index(VIX_TOKEN, "NSE", "INDIA VIX", "INDIA VIX", "INDICES", 1, 1))
    taken.add(VIX_TOKEN)
    expiries: dict[str, list[dt.date]] = {}
    for i, spec in enumerate(specs):
        ecal = calendar(spec.exchange)
        weekly = spec.symbol in ("NIFTY", "SENSEX")
        exps = ecal.expiries(spec.symbol, day, 2)
        monthly = ecal.monthly_expiry(day.year, day.month)
        if monthly < day:
            y, m = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
            monthly = ecal.monthly_expiry(y, m)
        if weekly and monthly not in exps:
            exps.append(monthly)
        expiries[spec.symbol] = sorted(exps)
        atm = round(spots[i] / spec.spacing) * spec.spacing
        strikes = [
            atm + k * spec.spacing for k in range(-cfg.strikes_each_side, cfg.strikes_each_side + 1)
        ]
        seg = "NFO-OPT" if spec.exchange == "NSE" else "BFO-OPT"
        fo_exchange = spec.exchange  # mandi keys F&O by the parent exchange (NSE/BSE)
        for e in expiries[spec.symbol]:
            is_monthly = e == ecal.monthly_expiry(e.year, e.month)
            for k in strikes:
                for kind in ("CE", "PE"):
                    sym = option_symbol(spec.symbol, e, int(k), kind, is_monthly)
                    contracts.append(
                        Option(
                            _token_for(sym, taken),
                            fo_exchange,
                            sym,
                            spec.symbol,
                            seg,
                            spec.lot,
                            TICK,
                            spec.freeze,
                            underlying=spec.symbol,
                            expiry=e,
                            strike=int(k) * 100,
                            option_type=kind,
                        )
                    )
    return instruments, contracts, expiries


def latest_trading_day(cal: ExchangeCalendar, today: dt.date) -> dt.date:
    return today if cal.is_trading_day(today) else cal.previous_trading_day(today)


class SimExchange:
    """Deterministic market generator for one or more consecutive trading days."""

    def __init__(
        self,
        config: SimConfig | None = None,
        start_date: dt.date | None = None,
        cal: ExchangeCalendar | None = None,
    ) -> None:
        self.config = cfg = config or SimConfig()
        self.cal = cal or calendar("NSE")
        unknown = [u for u in cfg.underlyings if u not in UNDERLYINGS]
        if unknown:
            raise ConfigError(
                "sim.underlyings", unknown[0], f"unknown; choose from {sorted(UNDERLYINGS)}"
            )
        unknown = [s for s in cfg.stocks if s not in STOCKS]
        if unknown:
            raise ConfigError("sim.stocks", unknown[0], f"unknown; choose from {sorted(STOCKS)}")
        if not 1 <= cfg.step_ms <= 1000 or 1000 % cfg.step_ms:
            raise ConfigError("sim.step_ms", cfg.step_ms, "must divide 1000")
        day = start_date or cfg.date
        if day is None:
            raise ConfigError("sim.date", None, "a start date is required")
        if not self.cal.is_trading_day(day):
            raise ConfigError("sim.date", day.isoformat(), "not a trading day")
        self._steps_per_s = 1000 // cfg.step_ms
        self._day_count = 0
        # underlying state: indices first, then stocks, then VIX
        self._u_specs = [UNDERLYINGS[u] for u in cfg.underlyings]
        self._u_price = np.array(
            [u.spot for u in self._u_specs] + [STOCKS[s][1] for s in cfg.stocks], dtype=float
        )
        self._u_vol = np.array(
            [u.vol for u in self._u_specs] + [STOCKS[s][2] for s in cfg.stocks], dtype=float
        )
        self._atm_vol = np.array([u.vol for u in self._u_specs], dtype=float)
        self._u_token = np.array(
            [u.token for u in self._u_specs] + [STOCKS[s][0] for s in cfg.stocks], dtype=np.int64
        )
        self._u_exchange = np.array(
            [exchange_code(u.exchange) for u in self._u_specs]
            + [exchange_code("NSE")] * len(cfg.stocks),
            dtype=np.int64,
        )
        self._start_day(day)

    # --- day setup ------------------------------------------------------------------------------
    def _start_day(self, day: dt.date) -> None:
        cfg = self.config
        self.date = day
        session = self.cal.session(day)
        assert session is not None
        self.open_ns, self.close_ns = session.open_ns, session.close_ns
        self._u_cum = np.zeros(len(self._u_price), dtype=np.int64)
        self._prev_close = self._u_price.copy()
        instruments, contracts, self.expiries = day_listing(
            cfg, day, [float(p) for p in self._u_price[: len(self._u_specs)]]
        )
        self.contracts = contracts
        self._c_token = np.array([c.token for c in contracts], dtype=np.int64)
        self._c_exchange = np.array([exchange_code(c.exchange) for c in contracts], dtype=np.int64)
        self.instruments: list[AnyInstrument] = [*instruments, *contracts]
        n = len(contracts)
        self._c_under = np.array(
            [cfg.underlyings.index(c.underlying) for c in contracts], dtype=np.int64
        )
        self._c_strike = np.array([c.strike / 100 for c in contracts], dtype=float)
        self._c_call = np.array([c.option_type == "CE" for c in contracts])
        self._c_expiry_ns = np.array(
            [self.cal.expiry_ns(c.expiry) for c in contracts if c.expiry], dtype=np.int64
        )
        self._c_lot = np.array([c.lot_size for c in contracts], dtype=np.int64)
        rng = np.random.default_rng([cfg.seed, day.toordinal(), 1_000_000])
        spot0 = self._u_price[self._c_under]
        near = np.exp(-np.abs(np.log(self._c_strike / spot0)) * 40)
        self._c_oi = (self._c_lot * (rng.integers(200, 2000, n) * (0.2 + near))).astype(np.int64)
        self._c_oi -= self._c_oi % self._c_lot
        self._c_oi_open = self._c_oi.copy()
        self._c_cum = np.zeros(n, dtype=np.int64)
        self._c_price = np.zeros(n, dtype=np.int64)
        self._c_iv = np.zeros(n, dtype=float)
        self._minute = 0  # next minute chunk of the day to generate
        self._price_options(self.open_ns)

    def _price_options(self, ts_ns: int) -> np.ndarray:
        from mandi.options.pricing import bs_price  # numba: loaded when prices are first made

        spot = self._u_price[self._c_under]
        t = np.maximum(self._c_expiry_ns - ts_ns, 60 * NS_PER_SECOND) / (365 * 86400 * 1e9)
        iv = smile(self._atm_vol[self._c_under], spot, self._c_strike)
        px = bs_price(spot, self._c_strike, t, RISK_FREE_RATE, iv, self._c_call)
        paise = np.maximum(np.round(px * 100 / TICK) * TICK, TICK).astype(np.int64)
        self._c_price, self._c_iv = paise, iv
        return paise

    # --- generation -----------------------------------------------------------------------------
    @property
    def minutes_in_session(self) -> int:
        return -(-(self.close_ns - self.open_ns) // (60 * NS_PER_SECOND))

    def _chunk(self, emit: bool) -> list[Tick]:
        """Advance one minute of exchange time; return its ticks in time order if ``emit``."""
        batch = self._chunk_columns(emit)
        return batch.to_ticks() if emit else []

    def _chunk_columns(self, emit: bool) -> TickBatch:
        """Advance one minute of exchange time; return its ticks (columns) in time order if
        ``emit`` (else an empty batch)."""
        cfg = self.config
        minute = self._minute
        self._minute += 1
        t0 = self.open_ns + minute * 60 * NS_PER_SECOND
        rng = np.random.default_rng([cfg.seed, self.date.toordinal(), minute])
        sps = self._steps_per_s
        steps = 60 * sps
        step_ns = cfg.step_ms * 1_000_000
        n_u, n_i = len(self._u_price), len(self._u_specs)
        n_c = len(self.contracts)
        # underlying paths: trading-time GBM
        dt_years = (cfg.step_ms / 1000) / (252 * 22_500)
        sig = self._u_vol * math.sqrt(dt_years)
        z = rng.standard_normal((steps, n_u))
        path = self._u_price * np.exp(np.cumsum(-0.5 * sig**2 + sig * z, axis=0))
        u_trades = rng.poisson(3.0, (steps, n_u)) * (rng.random((steps, n_u)) < 0.8)
        u_trades[:, :n_i] = 0  # indices have no volume
        u_cum = self._u_cum + np.cumsum(u_trades, axis=0)
        vol_walk = self._atm_vol * np.exp(np.cumsum(rng.normal(0, 0.002, (60, n_i)), axis=0))
        vol_walk = np.clip(
            vol_walk,
            0.6 * np.array([s.vol for s in self._u_specs]),
            2.0 * np.array([s.vol for s in self._u_specs]),
        )
        # options: per second, which contracts trade, how much, and OI changes
        spot_s = path[sps - 1 :: sps]  # spot at the end of each second
        near = np.exp(-np.abs(np.log(self._c_strike / self._u_price[self._c_under])) * 30)
        trade = rng.random((60, n_c)) < cfg.option_tick_probability * (0.25 + 0.75 * near)
        qty = (rng.poisson(4.0, (60, n_c)) + 1) * self._c_lot * trade
        d_oi = (rng.integers(-3, 5, (60, n_c)) * self._c_lot) * trade
        offs = rng.integers(0, sps, (60, n_c))
        ticks = TickBatch.empty()
        c_cum = self._c_cum + np.cumsum(qty, axis=0)
        c_oi = np.maximum(self._c_oi + np.cumsum(d_oi, axis=0), 0)
        if emit:
            ticks = self._emit_minute(
                t0, path, u_trades, u_cum, vol_walk, spot_s, trade, qty, c_cum, c_oi, offs
            )
        # carry state to the next minute
        last = min(steps, max(1, (self.close_ns - t0) // step_ns)) - 1
        last_sec = min(59, max(0, (self.close_ns - t0) // NS_PER_SECOND - 1))
        self._u_price = path[last].copy()
        self._u_cum = u_cum[last].copy()
        self._atm_vol = vol_walk[last_sec].copy()
        self._c_cum = c_cum[last_sec].copy()
        self._c_oi = c_oi[last_sec].copy()
        self._price_options(t0 + (last_sec + 1) * NS_PER_SECOND)
        return ticks

    def _emit_minute(
        self,
        t0: int,
        path: np.ndarray,
        u_trades: np.ndarray,
        u_cum: np.ndarray,
        vol_walk: np.ndarray,
        spot_s: np.ndarray,
        trade: np.ndarray,
        qty: np.ndarray,
        c_cum: np.ndarray,
        c_oi: np.ndarray,
        offs: np.ndarray,
    ) -> TickBatch:
        """Ticks of one generated minute in event-time order (ties: indices, stocks, VIX,
        options), as columns: every field is computed for the whole minute with NumPy."""
        from mandi.options.pricing import bs_price

        cfg = self.config
        step_ns = cfg.step_ms * 1_000_000
        n_i = len(self._u_specs)
        steps = min(len(path), max(0, -(-(self.close_ns - t0) // step_ns)))
        secs = min(60, max(0, -(-(self.close_ns - t0) // NS_PER_SECOND)))
        # --- underlyings: every index every step, a stock when it trades
        px = (np.round(path[:steps] * 100 / TICK) * TICK).astype(np.int64)
        step_ts = t0 + np.arange(steps, dtype=np.int64) * step_ns
        s_idx, j_idx = np.nonzero(
            np.column_stack([np.ones((steps, n_i), bool), u_trades[:steps, n_i:] > 0])
        )
        u_ts = step_ts[s_idx]
        tokens = self._u_token
        u_px = px[s_idx, j_idx]
        spread = np.maximum(TICK, np.round(u_px * 0.0002 / TICK) * TICK).astype(np.int64)
        # --- options: every (second, contract) that trades, priced at that second's spot/vol
        o_sec, o_j = np.nonzero(trade[:secs])
        base = t0 + o_sec.astype(np.int64) * NS_PER_SECOND
        o_ts = base + offs[o_sec, o_j] * step_ns
        under = self._c_under[o_j]
        spot = spot_s[o_sec, under]
        t_years = np.maximum(self._c_expiry_ns[o_j] - base, 60 * NS_PER_SECOND) / NS_PER_YEAR
        iv = smile(vol_walk[o_sec, under], spot, self._c_strike[o_j])
        o_px = np.maximum(
            np.round(
                bs_price(spot, self._c_strike[o_j], t_years, RISK_FREE_RATE, iv, self._c_call[o_j])
                * 100
                / TICK
            )
            * TICK,
            TICK,
        ).astype(np.int64)
        o_spread = np.maximum(TICK, (o_px * 4 // 1000) // TICK * TICK)
        lots = self._c_lot[o_j]
        # --- one time-ordered merge by (ts, kind, index); every time is on the step grid, and
        # within a (step, kind) the rows already come in index order, so a stable sort of the
        # (step, kind) key is the whole merge (a radix sort when the key fits 16 bits)
        vix = cfg.underlyings.index("NIFTY") if "NIFTY" in cfg.underlyings else -1
        v_sec = np.arange(secs if vix >= 0 else 0)
        v_ts = t0 + v_sec.astype(np.int64) * NS_PER_SECOND
        all_ts = np.concatenate([u_ts, v_ts, o_ts])
        kind_rank = np.concatenate(  # indices 0, stocks 1, VIX 2, options 3
            [np.where(j_idx < n_i, 0, 1), np.full(len(v_ts), 2), np.full(len(o_ts), 3)]
        )
        key = (all_ts - t0) // step_ns * 4 + kind_rank
        order = np.argsort(key.astype(np.int16 if steps * 4 < 1 << 15 else np.int64), kind="stable")
        # --- the columns of the merged stream (underlyings, VIX, options), then in time order
        n_u, n_v, n_o = len(u_ts), len(v_ts), len(o_ts)
        is_stock = j_idx >= n_i
        exch_codes = self._u_exchange
        u_zero = np.zeros(n_u, dtype=np.int64)
        u_ts_ms = u_ts // 1_000_000
        data = np.empty((N_TICK_FIELDS, n_u + n_v + n_o), dtype=np.int64)
        u, v, o = slice(0, n_u), slice(n_u, n_u + n_v), slice(n_u + n_v, None)
        data[T_TOKEN, u] = tokens[j_idx]
        data[T_EXCHANGE, u] = exch_codes[j_idx]
        data[T_TS, u] = u_ts
        data[T_PRICE, u] = u_px
        data[T_VOLUME, u] = np.where(is_stock, u_cum[s_idx, j_idx], u_zero)
        data[T_LAST_QTY, u] = np.where(is_stock, u_trades[s_idx, j_idx], u_zero)
        data[T_OI, u] = 0
        data[T_BID, u] = np.where(is_stock, u_px - spread, u_zero)
        data[T_ASK, u] = np.where(is_stock, u_px + spread, u_zero)
        data[T_BID_QTY, u] = np.where(is_stock, 1 + (u_ts_ms + 7919 * j_idx) % 500, u_zero)
        data[T_ASK_QTY, u] = np.where(is_stock, 1 + (u_ts_ms + 7919 * (j_idx + 7)) % 500, u_zero)
        data[:, v] = 0
        data[T_TOKEN, v] = VIX_TOKEN
        data[T_EXCHANGE, v] = exchange_code("NSE")
        data[T_TS, v] = v_ts
        if vix >= 0:
            data[T_PRICE, v] = np.round(vol_walk[v_sec, vix] * 10_000).astype(np.int64)
        data[T_TOKEN, o] = self._c_token[o_j]
        data[T_EXCHANGE, o] = self._c_exchange[o_j]
        data[T_TS, o] = o_ts
        data[T_PRICE, o] = o_px
        data[T_VOLUME, o] = c_cum[o_sec, o_j]
        data[T_LAST_QTY, o] = qty[o_sec, o_j]
        data[T_OI, o] = c_oi[o_sec, o_j]
        data[T_BID, o] = (o_px - o_spread).clip(0)
        data[T_ASK, o] = o_px + o_spread
        data[T_BID_QTY, o] = lots * (1 + o_ts % 13)
        data[T_ASK_QTY, o] = lots * (1 + o_ts % 11)
        data[T_INIT] = data[T_TS]
        return TickBatch(np.take(data, order, axis=1))

    def tick_batches(self) -> Iterator[TickBatch]:
        """Minute batches of ticks (columns) from the current position to the session close."""
        while self._minute < self.minutes_in_session:
            yield self._chunk_columns(emit=True)

    def ticks(self) -> Iterator[list[Tick]]:
        """Minute batches of ticks from the current position to the session close."""
        while self._minute < self.minutes_in_session:
            yield self._chunk(emit=True)

    def seek(self, ts_ns: int) -> None:
        """Jump (without emitting) to the start of the minute holding ``ts_ns`` on the
        current day; earlier positions are not reachable."""
        target = (ts_ns - self.open_ns) // (60 * NS_PER_SECOND)
        if target < self._minute:
            raise ValueError("cannot seek backwards in the simulated market")
        while self._minute < min(target, self.minutes_in_session):
            self._chunk(emit=False)

    def next_day(self) -> dt.date:
        """Move to the next trading day's open; prices carry over, volumes restart."""
        day = self.cal.next_trading_day(self.date)
        self._start_day(day)
        return day

    # --- chain snapshots ------------------------------------------------------------------------
    def chain_snapshots(self, ts_ns: int, last: dict[int, Tick]) -> list[ChainSnapshot]:
        """Chain snapshots of every underlying and expiry from the latest ticks ``last``."""
        out = []
        rows_by: dict[tuple[str, dt.date], dict[int, list[OptionQuote | None]]] = {}
        for j, c in enumerate(self.contracts):
            t = last.get(c.token)
            if t is None or c.expiry is None:
                continue
            q = OptionQuote(
                t.price,
                t.bid,
                t.ask,
                t.volume,
                t.oi,
                t.oi - int(self._c_oi_open[j]),
                c.token,
                c.symbol,
                float(self._c_iv[j]),
                t.bid_qty,
                t.ask_qty,
            )
            slot = rows_by.setdefault((c.underlying, c.expiry), {}).setdefault(
                c.strike, [None, None]
            )
            slot[0 if c.option_type == "CE" else 1] = q
        for spec in self._u_specs:
            ut = last.get(spec.token)
            if ut is None:
                continue
            for e in self.expiries[spec.symbol]:
                strikes = rows_by.get((spec.symbol, e))
                if not strikes:
                    continue
                rows = tuple(ChainRow(k, v[0], v[1]) for k, v in sorted(strikes.items()))
                out.append(
                    ChainSnapshot(
                        spec.symbol, spec.exchange, e, ts_ns, ut.price, rows, spec.lot, "sim"
                    )
                )
        return out


class SimFeed:
    """Paces a :class:`SimExchange` in real time at ``speed`` × (``math.inf`` = flat out)."""

    def __init__(
        self,
        exchange: SimExchange,
        speed: float = 1.0,
        days: int | None = None,
        resume_from_ns: int | None = None,
    ) -> None:
        if not speed > 0:
            raise ConfigError("speed", speed, "must be > 0")
        self.exchange = exchange
        self.speed = speed
        self.days = days
        self.resume_from_ns = resume_from_ns
        self.exchange_time_ns = exchange.open_ns

    async def batches(self) -> AsyncIterator[list[Tick]]:
        """Yield lists of ticks, each list of the same exchange step, paced by ``speed``."""
        async for batch in self.column_batches(whole_minutes=False):
            yield batch.to_ticks()

    async def column_batches(self, whole_minutes: bool | None = None) -> AsyncIterator[TickBatch]:
        """Yield :class:`TickBatch` es paced by ``speed``: one exchange step each, or — flat
        out (``whole_minutes``, the default at infinite speed) — a whole generated minute each,
        the next minute being generated on a worker thread meanwhile (NumPy's generators and the
        pricing kernel release the GIL). An empty batch ends each session."""
        ex = self.exchange
        loop = asyncio.get_running_loop()
        pacer = ExchangePacer(self.speed)
        if whole_minutes is None:
            whole_minutes = not pacer.paced
        days = 0
        resume = self.resume_from_ns
        while True:
            if resume is not None:
                while ist_date(resume) > ex.date:  # a restart on a later simulated day
                    ex.seek(ex.close_ns)
                    ex.next_day()
                ex.seek(resume)
            async for minute in self._minutes(loop, prefetch=whole_minutes):
                if resume is not None:
                    minute = minute.take(minute.ts_event >= resume)
                ts = minute.ts_event
                if whole_minutes:
                    parts = [minute] if len(minute) else []
                else:
                    cut = np.flatnonzero(np.diff(ts // 250_000_000)) + 1
                    parts = [minute.slice(i, j) for i, j in _pairs(cut, len(minute))]
                for batch in parts:
                    self.exchange_time_ns = int(batch.ts_event[-1])
                    await pacer.pace(batch)
                    yield batch
            resume = None
            self.exchange_time_ns = ex.close_ns
            yield TickBatch.empty()  # session over: lets the consumer confirm the last buckets
            days += 1
            if self.days is not None and days >= self.days:
                return
            ex.next_day()
            pacer.restart()  # the night is skipped: pacing restarts at the next open

    async def _minutes(
        self, loop: asyncio.AbstractEventLoop, prefetch: bool
    ) -> AsyncIterator[TickBatch]:
        """The minutes of the current session; with ``prefetch`` the next one is generated on a
        worker thread while the current one is consumed."""
        ex = self.exchange
        if not prefetch:
            for minute in ex.tick_batches():
                yield minute
            return
        pending: asyncio.Future[TickBatch] | None = None
        try:
            while True:
                if pending is None:
                    if ex._minute >= ex.minutes_in_session:
                        return
                    pending = loop.run_in_executor(None, ex._chunk_columns, True)
                minute = await pending
                pending = None
                if ex._minute < ex.minutes_in_session:
                    pending = loop.run_in_executor(None, ex._chunk_columns, True)
                yield minute
        finally:
            if pending is not None:  # the worker finishes before anybody else touches ``ex``
                await asyncio.wait([pending])


def _pairs(cuts: np.ndarray, n: int) -> list[tuple[int, int]]:
    bounds = [0, *cuts.tolist(), n]
    return [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1) if bounds[k + 1] > bounds[k]]


def sim_start_date(cfg: SimConfig, today: dt.date) -> dt.date:
    return cfg.date or latest_trading_day(calendar("NSE"), today)


__all__ = ["RISK_FREE_RATE", "SimConfig", "SimExchange", "SimFeed", "ist_ns", "smile"]
