"""The dashboard in real headless Chromium: login, live chart and chain, a paper order that shows
up as a position, a closed position's toast, a denial's reason, BSE, no console errors."""

from __future__ import annotations

import re

from playwright.sync_api import expect

LIVE_MS = 60_000


def login(page, live, token):
    page.goto(live.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-token", token)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_MS)
    expect(page.locator("#chain tbody tr.atm")).to_have_count(1, timeout=LIVE_MS)


def js(page, expr):
    return page.evaluate(expr)


def test_dashboard_loads_and_the_chart_and_chain_update_live(page, live, tokens, artifacts):
    login(page, live, tokens["read"])
    assert page.title() == "mandi · dashboard"
    rows = page.locator("#chain tbody tr")
    assert rows.count() >= 21
    expect(page.locator("#chain-title")).to_contain_text("NIFTY")
    # info bar: price, PCR, India VIX, ITM delta %, max pain
    for sel in ("#ib-price", "#ib-pcr", "#ib-vix", "#ib-maxpain"):
        expect(page.locator(sel)).to_have_text(re.compile(r"\d"), timeout=LIVE_MS)
    expect(page.locator("#ib-itm")).to_have_text(re.compile(r"\d+\.\d / \d+\.\d"))
    # the chain updates live (a newer snapshot replaces the table)
    t0 = js(page, "window.mandi.lastChain.time")
    page.wait_for_function(
        "t => window.mandi.lastChain && window.mandi.lastChain.time !== t", arg=t0, timeout=LIVE_MS
    )
    # the OI % change heat map colours cells once the 3-minute window has history
    page.select_option("#oi-window", "3")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chain td[style*=rgba]')].length > 5", timeout=LIVE_MS
    )
    # the chart: 15 s candles; the forming bar moves and confirmed bars are added live
    page.click("#timeframes button[data-tf='15']")
    page.wait_for_function(
        "() => window.mandi.tf === 15 && window.mandi.candles.data().length > 0", timeout=LIVE_MS
    )
    n0 = js(page, "window.mandi.candles.data().length")
    page.wait_for_function("n => window.mandi.candles.data().length > n", arg=n0, timeout=LIVE_MS)
    last = js(page, "window.mandi.candles.data().at(-1)")
    assert last["low"] <= last["close"] <= last["high"]
    # indicator overlays appear as they warm up (SMA_9 on the price, RSI_14 in its own pane)
    page.wait_for_function("() => 'SMA_9' in window.mandi.series", timeout=LIVE_MS)
    expect(page.locator("#overlays input[data-name='SMA_9']")).to_be_checked()
    sma = js(page, "window.mandi.series['SMA_9'].data().at(-1).value")
    assert abs(sma - last["close"]) < 300  # rupees, on the price scale
    # the system panel refreshes from the metrics messages
    expect(page.locator("#system")).to_contain_text("ticks/s")
    expect(page.locator("#risk-state")).to_have_text("risk OK")
    expect(page.locator("#of-buy")).to_be_disabled()  # a read-only token cannot trade
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert page.errors == []


def test_paper_order_shows_the_position_and_closing_it_shows_a_toast(page, live, tokens, artifacts):
    login(page, live, tokens["trade"])
    page.wait_for_function(
        "() => document.querySelector('#chain tr.atm td.ltp[data-symbol]:not([data-symbol=\"\"])')",
        timeout=LIVE_MS,
    )
    page.locator("#chain tr.atm td.ltp").first.click()  # the ATM call fills the form
    symbol = page.input_value("#of-symbol")
    assert re.fullmatch(r"NIFTY\d{5}\d+CE", symbol)
    page.fill("#of-lots", "1")
    page.click("#of-buy")
    expect(page.locator("#of-msg")).to_contain_text("accepted", timeout=LIVE_MS)
    row = page.locator("#positions tbody tr[data-id]", has_text=symbol)
    expect(row).to_have_count(1, timeout=LIVE_MS)
    expect(row.locator("td").nth(1)).to_have_text(re.compile(r"^\d+$"))  # quantity
    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"\d"))  # live MTM
    expect(page.locator(".toast", has_text="Position opened")).to_be_visible(timeout=LIVE_MS)
    row.locator("button[data-close]").click()
    toast = page.locator(".toast", has_text="Position closed")
    expect(toast).to_be_visible(timeout=LIVE_MS)
    expect(toast).to_contain_text(symbol)
    expect(page.locator("#positions tbody tr[data-id]", has_text=symbol)).to_have_count(0)
    page.screenshot(path=str(artifacts / "dashboard-position-closed.png"), full_page=True)
    assert page.errors == []


def test_a_denied_order_shows_the_reason(page, live, tokens):
    login(page, live, tokens["trade"])
    page.wait_for_function(
        "() => document.querySelector('#chain tr.atm td.ltp[data-symbol]:not([data-symbol=\"\"])')",
        timeout=LIVE_MS,
    )
    page.locator("#chain tr.atm td.ltp").last.click()
    page.fill("#of-lots", "5000")
    page.click("#of-buy")
    expect(page.locator("#of-msg")).to_contain_text("Denied (", timeout=LIVE_MS)
    expect(page.locator(".toast.err", has_text="Order denied")).to_be_visible()
    # the 409 itself is the only thing the browser reports
    assert all("status of 409" in e for e in page.errors), page.errors


def test_bse_sensex_chain(page, live, tokens):
    login(page, live, tokens["read"])
    page.select_option("#underlying", "SENSEX")
    expect(page.locator("#chain-title")).to_contain_text("SENSEX", timeout=LIVE_MS)
    expect(page.locator("#chain tbody tr.atm")).to_have_count(1, timeout=LIVE_MS)
    expect(page.locator("#ib-name")).to_have_text("SENSEX")
    page.wait_for_function(
        "() => window.mandi.u === 'SENSEX' && window.mandi.lastChain.exchange === 'BSE'",
        timeout=LIVE_MS,
    )
    assert page.errors == []


def test_saved_backtests_are_listed_and_shown(page, live, tokens, data_dir, artifacts):
    from mandi.services.backtest.api import run
    from mandi.services.backtest.report import save_to_store

    res = run(
        str(data_dir / "backtrader_2006-day-001.txt"),
        "sma_cross",
        {"fast": 10, "slow": 30},
        quantity=10,
        charges="none",
        commission=0,
    )
    run_id = save_to_store(res, live.node.cfg.store.db)  # as `mandi backtest --save` does
    login(page, live, tokens["read"])
    row = page.locator(f"#backtests tbody tr[data-run='{run_id}']")
    expect(row).to_contain_text("sma_cross", timeout=LIVE_MS)
    row.click()
    expect(page.locator("#bt-detail")).to_be_visible()
    expect(page.locator("#bt-title")).to_contain_text("sma_cross")
    expect(page.locator("#bt-stats")).to_contain_text("Sharpe")
    trades = page.locator("#bt-trades tbody tr")
    assert trades.count() == res.stats["trades"] > 0
    page.wait_for_function(
        "() => window.mandi.btChart && window.mandi.backtest.equity.length > 10", timeout=LIVE_MS
    )
    page.screenshot(path=str(artifacts / "backtests.png"), full_page=True)
    assert page.errors == []
