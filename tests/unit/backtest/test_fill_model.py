"""The documented bar fill model, bar by bar, on scripted signals."""

from __future__ import annotations

import datetime as dt

from mandi.core.calendar import ist_ns

from .kit import DAY, bars, run_script

T0 = ist_ns(DAY, dt.time(9, 15))
MIN = 60 * 10**9


def test_market_orders_fill_at_the_next_bars_open():
    s = bars(
        [(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105), (107, 108, 106, 107)]
    )
    res, _ = run_script(s, {0: "BUY", 2: "SELL"})
    (t,) = res.trades
    assert (t.entry_time, t.entry_price) == (T0 + 1 * MIN, 10200)  # bar 1's open
    assert (t.exit_time, t.exit_price) == (T0 + 3 * MIN, 10700)  # bar 3's open
    assert t.pnl == 10 * (10700 - 10200)


def test_fill_close_fills_at_the_signal_bars_close():
    s = bars(
        [(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105), (107, 108, 106, 107)]
    )
    res, _ = run_script(s, {0: "BUY", 2: "SELL"}, fill="close")
    (t,) = res.trades
    assert (t.entry_price, t.exit_price) == (10000, 10500)
    assert t.entry_time == T0 + MIN + 1  # just after the bar's end


def test_slippage_moves_fills_against_us():
    s = bars(
        [(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105), (107, 108, 106, 107)]
    )
    res, _ = run_script(s, {0: "BUY", 2: "SELL"}, slippage_ticks=2)
    (t,) = res.trades
    assert (t.entry_price, t.exit_price) == (10210, 10690)  # 2 ticks of ₹0.05


def test_stop_and_target_in_one_bar_the_stop_wins():
    # long from 100 (bar 1's open); 1 % stop = 99, 2 % target = 102; bar 2 touches both
    s = bars(
        [(100, 100, 100, 100), (100, 100, 100, 100), (100, 103, 98, 101), (101, 101, 101, 101)]
    )
    res, _ = run_script(s, {0: "BUY"}, stop_loss_pct=1.0, target_pct=2.0)
    (t,) = res.trades
    assert t.exit_reason == "STOP_LOSS_HIT"
    assert t.exit_price == 9900  # at the stop level, not the low
    assert T0 + 2 * MIN < t.exit_time < T0 + 3 * MIN


def test_short_pessimism_takes_the_high_first():
    s = bars([(100, 100, 100, 100), (100, 100, 100, 100), (100, 102, 97, 99), (99, 99, 99, 99)])
    res, _ = run_script(s, {0: "SELL"}, stop_loss_pct=1.0, target_pct=2.0, allow_short=True)
    (t,) = res.trades
    assert (t.side, t.exit_reason, t.exit_price) == ("SELL", "STOP_LOSS_HIT", 10100)


def test_target_alone_fills_at_the_target():
    s = bars(
        [(100, 100, 100, 100), (100, 100, 100, 100), (100, 103, 100, 101), (101, 101, 101, 101)]
    )
    res, _ = run_script(s, {0: "BUY"}, stop_loss_pct=1.0, target_pct=2.0)
    (t,) = res.trades
    assert (t.exit_reason, t.exit_price) == ("TARGET_REACHED", 10200)


def test_a_gap_through_the_stop_fills_at_the_open():
    s = bars([(100, 100, 100, 100), (100, 100, 100, 100), (95, 96, 94, 95), (95, 95, 95, 95)])
    res, _ = run_script(s, {0: "BUY"}, stop_loss_pct=1.0)
    (t,) = res.trades
    assert (t.exit_reason, t.exit_price, t.exit_time) == ("STOP_LOSS_HIT", 9500, T0 + 2 * MIN + 1)


def test_trailing_stop_follows_the_high_then_exits_on_the_way_down():
    s = bars(
        [(100, 100, 100, 100), (100, 100, 100, 100), (100, 110, 100, 109), (109, 109, 100, 101)]
    )
    res, _ = run_script(s, {0: "BUY"}, trailing_stop_pct=5.0)
    (t,) = res.trades
    assert t.exit_reason == "TRAILING_STOP"
    assert t.exit_price == 10450  # 5 % below the high of 110


def test_intraday_positions_are_squared_off_at_1515():
    # bars from 09:15 to 15:30; a long opened in the morning is closed at the 15:15 bar's open
    n = 375
    s = bars([(100 + (i % 3), 103, 99, 101) for i in range(n)])
    res, _ = run_script(s, {0: "BUY"})
    (t,) = res.trades
    assert t.exit_reason == "INTRADAY_SQUARE_OFF"
    assert t.exit_time == ist_ns(DAY, dt.time(15, 15))


def test_no_entries_after_the_cutoff_and_outside_hours():
    n = 375
    s = bars([(100, 101, 99, 100)] * n)
    res, _ = run_script(s, {365: "BUY"})  # 15:20 close: after the 15:15 entry cutoff
    assert res.trades == [] and res.stats["risk_denials"] == {"entry_cutoff": 1}


def test_charges_follow_the_indian_schedule():
    s = bars(
        [(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105), (107, 108, 106, 107)]
    )
    res, _ = run_script(s, {0: "BUY", 2: "SELL"}, charges="india", commission_inr=20.0)
    (t,) = res.trades
    # 10 × ₹102 buy and 10 × ₹107 sell intraday: ₹20 flat brokerage each, STT 0.025 % on the
    # sell, NSE 0.00307 %, SEBI ₹10/crore, stamp 0.003 % on the buy, GST 18 %
    buy = (
        20 * 100
        + 102000 * (0.0000307 + 0.000001 + 0.00003)
        + 0.18 * (2000 + 102000 * (0.0000307 + 0.000001))
    )
    sell = (
        20 * 100
        + 107000 * (0.00025 + 0.0000307 + 0.000001)
        + 0.18 * (2000 + 107000 * (0.0000307 + 0.000001))
    )
    assert t.charges == round(buy) + round(sell)
    assert t.pnl == 10 * 500 - t.charges


def test_close_at_end_books_what_is_still_open_at_the_last_close():
    s = bars([(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105)])
    open_res, _ = run_script(s, {0: "BUY"})
    assert open_res.trades == [] and open_res.stats["open_positions"] == 1
    res, _ = run_script(s, {0: "BUY"}, close_at_end=True)
    (t,) = res.trades
    assert (t.exit_reason, t.exit_price) == ("END_OF_DATA", 10500)
    assert res.final_value == open_res.final_value == 1_000_000 + 10 * (105 - 102)
