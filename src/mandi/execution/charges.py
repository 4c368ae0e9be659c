"""Indian trading charges: brokerage, STT, exchange transaction charge (+ IPFT), SEBI turnover
fee, stamp duty and GST — with the statutory rates as **dated data**.

The rates live in :data:`RATES_CSV`, one complete row per (exchange, segment) and the date it took
effect; :func:`rates_for` picks the latest row in force on the trade date, so a trade of July 2023
is charged at 2023 rates and one of April 2026 at 2026 rates. A user can add or correct rows with
``[trading.charges] rates_file = "my_rates.csv"`` (same columns) without touching code.

Arithmetic (as Zerodha's contract notes do it; see ``tests/data/kite_virtual_contract_note.json``):

* turnover = quantity × price (for options: the premium);
* STT = turnover × the buy or sell rate; stamp duty = turnover × rate, buy side only;
* exchange charge = turnover × (transaction rate + IPFT rate) — reported together like Kite's
  ``exchange_turnover_charge``;
* SEBI fee = turnover × ₹10 per crore;
* GST = 18 % × (brokerage + transaction charge **without IPFT** + SEBI fee) — the Kite note's GST
  is reproduced exactly only without IPFT in the base;
* brokerage: flat per executed order for options; the lower of flat and a percentage for futures
  and intraday equity; a separate (default zero) amount for delivery (:class:`BrokerageConfig`).

Everything is computed in exact :class:`~decimal.Decimal` paise and rounded once, half-up, to
whole paise for the ledger (:attr:`Charges.total`); :meth:`Charges.as_rupees` gives the exact
components for display and for checking against contract notes.
"""

from __future__ import annotations

import csv
import datetime as dt
from bisect import bisect_right
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from mandi.core.errors import ConfigError
from mandi.execution.config import BrokerageConfig
from mandi.model.instruments import AnyInstrument, Future, Option
from mandi.model.orders import Product, Side

ZERO = Decimal(0)
_SEGMENTS = ("OPT", "FUT", "EQ_INTRADAY", "EQ_DELIVERY")

# Rates are fractions of turnover (0.0015 = 0.15 %). Sources (the ``source`` column):
#   K23  Zerodha's virtual contract note mock, 2023-07 rates
#        (tests/data/kite_virtual_contract_note.json)
#   FA23 Finance Act 2023 STT (options 0.0625 %, futures 0.0125 % of the sell side)
#   N24  NSE uniform charges from 01-Oct-2024 (options Rs 3,503/cr + IPFT Rs 50/cr; futures
#        Rs 173/cr; cash Rs 297/cr; IPFT Rs 10/cr) and Finance Act 2024 STT (options 0.1 %,
#        futures 0.02 %)
#   B24  BSE SENSEX/BANKEX options Rs 3,250/cr, index futures nil, cash Rs 375/cr (broker charge
#        tables; BSE's own circular was not available)
#   N26  NSE circular FA73061 from 01-Mar-2026: options Rs 3,552/cr + IPFT Rs 1/cr (0.03553 %),
#        futures Rs 182.99/cr + IPFT Rs 0.01/cr, cash 0.00307 % (IPFT split not published)
#   FA26 NSE circular FATAX73524, Finance Act 2026: STT options 0.15 %, futures 0.05 % (sell)
# SEBI fee Rs 10/cr everywhere; stamp duty (buy side) options 0.003 %, futures 0.002 %, intraday
# 0.003 %, delivery 0.015 %; GST 18 %.
RATES_CSV = """\
effective_from,exchange,segment,stt_buy,stt_sell,txn,ipft,sebi,stamp_buy,gst,source
2023-04-01,NSE,OPT,0,0.000625,0.0005,0.000005,0.000001,0.00003,0.18,K23 FA23
2023-04-01,NSE,FUT,0,0.000125,0.00002,0.000001,0.000001,0.00002,0.18,FA23
2023-04-01,NSE,EQ_DELIVERY,0.001,0.001,0.0000325,0.000001,0.000001,0.00015,0.18,K23
2023-04-01,NSE,EQ_INTRADAY,0,0.00025,0.0000325,0.000001,0.000001,0.00003,0.18,K23
2024-10-01,NSE,OPT,0,0.001,0.0003503,0.000005,0.000001,0.00003,0.18,N24
2024-10-01,NSE,FUT,0,0.0002,0.0000173,0.000001,0.000001,0.00002,0.18,N24
2024-10-01,NSE,EQ_DELIVERY,0.001,0.001,0.0000297,0.000001,0.000001,0.00015,0.18,N24
2024-10-01,NSE,EQ_INTRADAY,0,0.00025,0.0000297,0.000001,0.000001,0.00003,0.18,N24
2024-10-01,BSE,OPT,0,0.001,0.000325,0.000005,0.000001,0.00003,0.18,B24 N24
2024-10-01,BSE,FUT,0,0.0002,0,0.000001,0.000001,0.00002,0.18,B24 N24
2024-10-01,BSE,EQ_DELIVERY,0.001,0.001,0.0000375,0,0.000001,0.00015,0.18,B24
2024-10-01,BSE,EQ_INTRADAY,0,0.00025,0.0000375,0,0.000001,0.00003,0.18,B24
2026-03-01,NSE,OPT,0,0.001,0.0003552,0.0000001,0.000001,0.00003,0.18,N26
2026-03-01,NSE,FUT,0,0.0002,0.000018299,0.000000001,0.000001,0.00002,0.18,N26
2026-03-01,NSE,EQ_DELIVERY,0.001,0.001,0.0000307,0,0.000001,0.00015,0.18,N26
2026-03-01,NSE,EQ_INTRADAY,0,0.00025,0.0000307,0,0.000001,0.00003,0.18,N26
2026-04-01,NSE,OPT,0,0.0015,0.0003552,0.0000001,0.000001,0.00003,0.18,N26 FA26
2026-04-01,NSE,FUT,0,0.0005,0.000018299,0.000000001,0.000001,0.00002,0.18,N26 FA26
2026-04-01,BSE,OPT,0,0.0015,0.000325,0.000005,0.000001,0.00003,0.18,B24 FA26
2026-04-01,BSE,FUT,0,0.0005,0,0.000001,0.000001,0.00002,0.18,B24 FA26
"""


class ChargeRates(msgspec.Struct, frozen=True):
    """Statutory rates of one (exchange, segment) from ``effective_from`` on, as fractions of
    turnover."""

    effective_from: dt.date
    exchange: str
    segment: str
    stt_buy: Decimal
    stt_sell: Decimal
    txn: Decimal
    ipft: Decimal
    sebi: Decimal
    stamp_buy: Decimal
    gst: Decimal
    source: str = ""


def parse_rates_csv(text: str) -> list[ChargeRates]:
    """Rows of a rates CSV (columns as :data:`RATES_CSV`); errors name the line and value."""
    out = []
    for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            seg = row["segment"].strip()
            if seg not in _SEGMENTS:
                raise ValueError(f"segment {seg!r} is not one of {', '.join(_SEGMENTS)}")
            nums = {
                k: Decimal(row[k].strip())
                for k in ("stt_buy", "stt_sell", "txn", "ipft", "sebi", "stamp_buy", "gst")
            }
            if any(not v.is_finite() or v < 0 or v > 1 for v in nums.values()):
                raise ValueError("rates must be fractions between 0 and 1")
            out.append(
                ChargeRates(
                    dt.date.fromisoformat(row["effective_from"].strip()),
                    row["exchange"].strip().upper(),
                    seg,
                    **nums,
                    source=(row.get("source") or "").strip(),
                )
            )
        except (KeyError, ValueError, ArithmeticError) as e:
            raise ConfigError("trading.charges.rates_file", f"line {n}", str(e)) from None
    return out


class RateTable:
    """Dated rates by (exchange, segment)."""

    def __init__(self, rows: list[ChargeRates]) -> None:
        self._rows: dict[tuple[str, str], list[ChargeRates]] = {}
        for r in rows:
            lst = self._rows.setdefault((r.exchange, r.segment), [])
            lst[:] = [x for x in lst if x.effective_from != r.effective_from] + [r]
            lst.sort(key=lambda x: x.effective_from)

    def rates_for(self, exchange: str, segment: str, day: dt.date) -> ChargeRates:
        lst = self._rows.get((exchange, segment))
        if not lst:
            raise ConfigError(
                "trading.charges",
                f"{exchange}:{segment}",
                "no statutory rates are known for this exchange and segment",
            )
        i = bisect_right([r.effective_from for r in lst], day)
        if i == 0:
            raise ConfigError(
                "trading.charges",
                f"{exchange}:{segment}:{day}",
                f"no rates in force before {lst[0].effective_from}",
            )
        return lst[i - 1]

    def __iter__(self):  # type: ignore[no-untyped-def]
        for lst in self._rows.values():
            yield from lst


def default_rate_table(extra_csv: str = "") -> RateTable:
    rows = parse_rates_csv(RATES_CSV)
    if extra_csv:
        rows += parse_rates_csv(extra_csv)
    return RateTable(rows)


def segment_of(inst: AnyInstrument, product: Product) -> str:
    """The charges segment of an instrument traded with ``product``."""
    if isinstance(inst, Option):
        return "OPT"
    if isinstance(inst, Future):
        return "FUT"
    return "EQ_DELIVERY" if product is Product.CNC else "EQ_INTRADAY"


class Charges(msgspec.Struct, frozen=True):
    """Charges of one execution in exact decimal paise; :attr:`total` is the rounded ledger
    amount in int paise."""

    brokerage: Decimal
    stt: Decimal
    exchange: Decimal  # transaction charge + IPFT (Kite's exchange_turnover_charge)
    ipft: Decimal
    sebi: Decimal
    stamp: Decimal
    gst: Decimal

    @property
    def exact(self) -> Decimal:
        return self.brokerage + self.stt + self.exchange + self.sebi + self.stamp + self.gst

    @property
    def total(self) -> int:
        return int(self.exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def as_rupees(self) -> dict[str, Decimal]:
        h = Decimal(100)
        return {
            "brokerage": self.brokerage / h,
            "stt": self.stt / h,
            "exchange": self.exchange / h,
            "ipft": self.ipft / h,
            "sebi": self.sebi / h,
            "stamp": self.stamp / h,
            "gst": self.gst / h,
            "total": self.exact / h,
        }


class ChargesModel:
    """Charges of executions: statutory rates from a :class:`RateTable`, brokerage from a
    :class:`BrokerageConfig`."""

    def __init__(
        self, brokerage: BrokerageConfig | None = None, table: RateTable | None = None
    ) -> None:
        b = brokerage or BrokerageConfig()
        self.table = table or default_rate_table()
        self._flat = Decimal(repr(b.per_order_inr)) * 100
        self._pct = Decimal(repr(b.percent)) / 100
        self._delivery = Decimal(repr(b.delivery_inr)) * 100

    def brokerage(self, segment: str, order_turnover: Decimal) -> Decimal:
        """Brokerage of a whole order with ``order_turnover`` paise executed so far."""
        if order_turnover <= 0:
            return ZERO
        if segment == "EQ_DELIVERY":
            return self._delivery
        if segment == "OPT" or self._pct == 0:
            return self._flat
        return min(self._flat, order_turnover * self._pct)

    def compute(
        self,
        *,
        exchange: str,
        segment: str,
        side: Side,
        quantity: int,
        price: int,
        day: dt.date,
        order_turnover_before: int = 0,
    ) -> Charges:
        """Charges of one execution of ``quantity`` at ``price`` paise on ``day``.

        ``order_turnover_before`` is the turnover already executed by the same order, so a
        per-order brokerage (flat, or capped) is charged once across partial fills."""
        r = self.table.rates_for(exchange, segment, day)
        turnover = Decimal(quantity * price)
        before = Decimal(order_turnover_before)
        brokerage = self.brokerage(segment, before + turnover) - self.brokerage(segment, before)
        buy = Side(side) is Side.BUY
        txn = turnover * r.txn
        ipft = turnover * r.ipft
        sebi = turnover * r.sebi
        gst = r.gst * (brokerage + txn + sebi)
        return Charges(
            brokerage=brokerage,
            stt=turnover * (r.stt_buy if buy else r.stt_sell),
            exchange=txn + ipft,
            ipft=ipft,
            sebi=sebi,
            stamp=turnover * r.stamp_buy if buy else ZERO,
            gst=gst,
        )
