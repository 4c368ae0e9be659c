"""The options card in real headless Chromium: the basket builder builds a template, draws its
payoff (at expiry and at a target date, breakevens, a hover read-out) and redraws when a leg or
the target date changes; a bad leg's reason shows; the open positions' payoff; the volatility
and OI views draw."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from .test_dashboard import LIVE_MS, js, login


def last(page):
    return js(page, "window.mandiOptions.last")


def test_basket_builder_and_payoff_chart(page, live, tokens, artifacts):
    login(page, live, tokens["trade"])
    page.wait_for_function("() => window.mandiOptions.templates.length >= 10", timeout=LIVE_MS)
    page.select_option("#bk-template", "iron_condor")
    page.fill("#bk-offset", "2")
    page.click("#bk-build")
    expect(page.locator("#bk-legs tbody tr[data-i]")).to_have_count(4, timeout=LIVE_MS)
    page.wait_for_function("() => window.mandiOptions.last !== null", timeout=LIVE_MS)
    p = last(page)
    assert p["net_premium"] > 0 and len(p["breakevens"]) == 2
    # the chart: the expiry and target-date curves, the spot and both breakevens marked
    chart = page.locator("#payoff-chart")
    expect(chart.locator("path.line-0")).to_have_count(1)
    expect(chart.locator("path.line-1")).to_have_count(1)
    expect(chart.locator("line.be")).to_have_count(2)
    expect(chart.locator("line.spot")).to_have_count(1)
    stats = page.locator("#payoff-stats")
    expect(stats).to_contain_text("Max profit")
    expect(stats).to_contain_text("Prob. of profit")
    expect(stats).to_contain_text("Hedge benefit")
    # the prices used and the IVs fill the legs table
    expect(page.locator("#bk-legs tbody td.used").first).to_have_text(re.compile(r"\d"))
    # hovering reads the P&L at that price
    box = chart.bounding_box()
    chart.hover(position={"x": box["width"] * 0.55, "y": box["height"] * 0.5})
    expect(page.locator("#payoff-tip")).to_contain_text("expiry ₹")
    page.screenshot(path=str(artifacts / "options-payoff.png"), full_page=True)
    # two lots on the first leg: a new analysis of a custom basket
    lots = page.locator("#bk-legs tbody tr[data-i='0'] input[data-f='lots']")
    lots.fill("2")
    lots.dispatch_event("change")
    page.wait_for_function(
        "() => window.mandiOptions.last && window.mandiOptions.last.legs[0].lots === 2",
        timeout=LIVE_MS,
    )
    assert last(page)["legs"][0]["quantity"] == 2 * last(page)["legs"][1]["quantity"]
    # a target date closer to expiry moves the target-date curve towards the expiry payoff
    d0 = last(page)["curve"]["today"]
    page.locator("#bk-days").fill("0.5")
    page.locator("#bk-days").dispatch_event("input")
    page.wait_for_function("() => window.mandiOptions.last.horizon_days > 0", timeout=LIVE_MS)
    assert last(page)["curve"]["today"] != d0
    # a bad contract: the whole basket is refused and the leg's reason shows
    sym = page.locator("#bk-legs tbody tr[data-i='1'] input[data-f='symbol']")
    sym.fill("NIFTYNOPE")
    sym.dispatch_event("change")
    expect(page.locator("#bk-msg")).to_contain_text("leg 2: unknown contract", timeout=LIVE_MS)
    # the 422 itself is the only thing the browser reports
    assert all("status of 422" in e for e in page.errors), page.errors


def test_open_positions_payoff_and_the_vol_and_oi_views(page, live, tokens, artifacts):
    login(page, live, tokens["trade"])
    page.wait_for_function("() => window.mandiOptions.templates.length >= 10", timeout=LIVE_MS)
    # a position to draw: one ATM call through the API
    h = {"Authorization": f"Bearer {tokens['trade']}"}
    b = httpx.get(f"{live.url}/api/v1/basket/NIFTY/straddle", params={"side": "BUY"}, headers=h)
    call = b.json()["legs"][0]["symbol"]
    r = httpx.post(
        f"{live.url}/api/v1/orders",
        headers=h,
        json={"side": "BUY", "symbol": call, "lots": 1, "request_id": "browser-book-1"},
    )
    assert r.status_code == 201, r.text
    page.wait_for_function(
        "() => document.querySelector('#positions tbody tr:not(.empty)')", timeout=LIVE_MS
    )
    page.click("#bk-book")
    expect(page.locator("#bk-source")).to_have_text("open positions", timeout=LIVE_MS)
    page.wait_for_function(
        "s => window.mandiOptions.last && window.mandiOptions.last.legs.some(l => l.symbol === s)",
        arg=call,
        timeout=LIVE_MS,
    )
    expect(page.locator("#payoff-chart path.line-0")).to_have_count(1)
    # place a basket from the builder: one risk decision, the hedges first
    page.select_option("#bk-template", "straddle")
    page.select_option("#bk-side", "BUY")
    page.click("#bk-build")
    page.wait_for_function(
        "() => window.mandiOptions.source === 'basket' && window.mandiOptions.legs.length === 2",
        timeout=LIVE_MS,
    )
    expect(page.locator("#bk-place")).to_be_visible()
    page.click("#bk-place")
    expect(page.locator("#bk-placed")).to_contain_text("basket accepted", timeout=LIVE_MS)
    # volatility: the smile and the term structure draw
    page.click("#opt-tabs button[data-tab='vol']")
    expect(page.locator("#tab-vol")).to_be_visible()
    expect(page.locator("#vol-smile path.line-0")).to_have_count(1, timeout=LIVE_MS)
    expect(page.locator("#vol-term path.line-0")).to_have_count(1, timeout=LIVE_MS)
    expect(page.locator("#vol-rank")).to_contain_text("IV percentile", timeout=LIVE_MS)
    # open interest: bars per strike for calls and puts
    page.click("#opt-tabs button[data-tab='oi']")
    page.wait_for_function(
        "() => document.querySelectorAll('#oi-bars rect').length > 10", timeout=LIVE_MS
    )
    page.screenshot(path=str(artifacts / "options-oi.png"), full_page=True)
    assert page.errors == []
