"""A small hand-made NIFTY option master and prices for the payoff and structure tests."""

from __future__ import annotations

import datetime as dt

from mandi.core.calendar import ist_ns
from mandi.model.instruments import Index, InstrumentMaster, Option
from mandi.options import bs_price, year_fraction

NEAR = dt.date(2026, 4, 14)
FAR = dt.date(2026, 4, 21)
NOW = ist_ns(dt.date(2026, 4, 13), dt.time(10, 0))
SPOT = 2_401_000  # paise: 24,010
LOT = 65
RATE = 0.065
STRIKES = range(23_500, 24_550, 50)


def smile_iv(strike_rupees: float) -> float:
    return 0.13 + 0.4 * (strike_rupees / 24_010 - 1) ** 2


def master() -> InstrumentMaster:
    out: list = [Index(256265, "NSE", "NIFTY 50", "NIFTY 50", "INDICES")]
    out.append(Index(260105, "NSE", "NIFTY BANK", "NIFTY BANK", "INDICES"))
    token = 1000
    for expiry in (NEAR, FAR):
        for k in STRIKES:
            for kind in ("CE", "PE"):
                token += 1
                out.append(
                    Option(
                        token,
                        "NSE",
                        f"NIFTY{expiry:%y%m%d}{k}{kind}",
                        "NIFTY",
                        "NFO-OPT",
                        LOT,
                        5,
                        1800,
                        underlying="NIFTY",
                        expiry=expiry,
                        strike=k * 100,
                        option_type=kind,
                    )
                )
    for kind in ("CE", "PE"):
        token += 1
        out.append(
            Option(
                token,
                "NSE",
                f"BANKNIFTY{NEAR:%y%m%d}52000{kind}",
                "BANKNIFTY",
                "NFO-OPT",
                30,
                5,
                900,
                underlying="BANKNIFTY",
                expiry=NEAR,
                strike=5_200_000,
                option_type=kind,
            )
        )
    old = dt.date(2026, 4, 7)
    out.append(
        Option(
            9999,
            "NSE",
            "NIFTY26040724000CE",
            "NIFTY",
            "NFO-OPT",
            LOT,
            5,
            1800,
            underlying="NIFTY",
            expiry=old,
            strike=2_400_000,
            option_type="CE",
        )
    )
    return InstrumentMaster(out)


def model_prices(m: InstrumentMaster) -> tuple[dict[int, int], dict[int, float]]:
    """Black-Scholes prices (paise, on the 5-paise tick) and the IVs they were priced at."""
    prices, ivs = {}, {}
    for inst in m:
        if isinstance(inst, Option) and inst.expiry and inst.expiry >= NEAR:
            k = inst.strike / 100
            iv = smile_iv(k)
            t = float(year_fraction(NOW, inst.expiry))
            p = float(bs_price(SPOT / 100, k, t, RATE, iv, inst.is_call))
            prices[inst.token] = max(round(p * 20) * 5, 5)
            ivs[inst.token] = iv
    return prices, ivs
