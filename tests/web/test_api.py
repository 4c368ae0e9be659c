"""The REST API over HTTP against a real ``mandi run`` node (see conftest.py)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from .conftest import NIFTY, auth, wait_for_chain

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC = {
    "/health",
    "/api/v1/auth/session",
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/",
    "/vendor/lightweight-charts.js",
}
#: POST routes that only compute (a basket's payoff, placing nothing): read scope
READ_ONLY_POSTS = {"/api/v1/payoff", "/api/v1/positions/payoff/NIFTY"}


def routes(live):
    """(method, path) of every HTTP route of the running app (so new routes are covered): the
    app's own and those of every router it includes."""
    from mandi.web import routers

    out = []
    for r in [*live.web.app.routes, *(r for router in routers.ALL for r in router.routes)]:
        methods = getattr(r, "methods", None)
        if (
            not methods
            or r.path.startswith("/static")
            or r.path in ("/api/docs", "/api/v1/openapi.json", "/docs/oauth2-redirect")
        ):
            continue
        path = (
            r.path.replace("{token}", str(NIFTY))
            .replace("{underlying}", "NIFTY")
            .replace("{order_id}", "nope")
            .replace("{run_id}", "nope")
            .replace("{basket_id}", "nope")
            .replace("{template}", "straddle")
        )
        out += [(m, path) for m in methods if m != "HEAD"]
    return out


def test_health_is_public_and_says_nothing_secret(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["feed"] == "sim" and body["trading"] is True
    assert set(body) == {
        "status",
        "version",
        "uptime_s",
        "feed",
        "mode",
        "trading",
        "exchange_time",
    }


def test_every_state_changing_route_needs_a_trade_token(live, client, web_tokens):
    changing = [
        (m, p)
        for m, p in routes(live)
        if m in STATE_CHANGING and p not in PUBLIC and p not in READ_ONLY_POSTS
    ]
    assert {
        ("POST", "/api/v1/orders"),
        ("DELETE", "/api/v1/orders/nope"),
        ("POST", "/api/v1/trading/halt"),
        ("POST", "/api/v1/trading/resume"),
        ("POST", "/api/place_order"),
    } <= set(changing)
    for method, path in changing:
        r = client.request(method, path, json={"side": "BUY", "symbol": "X", "quantity": 1})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["error"] in ("not_authenticated",) and "WWW-Authenticate" in r.headers
        r = client.request(
            method,
            path,
            json={"side": "BUY", "symbol": "X", "quantity": 1},
            headers=auth(web_tokens["read"]),
        )
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"] == "insufficient_scope"
        r = client.request(method, path, headers=auth("mandi_bogus_" + "x" * 40))
        assert r.status_code == 401


def test_every_read_route_needs_a_token(live, client, web_tokens):
    reads = [(m, p) for m, p in routes(live) if m == "GET" and p not in PUBLIC]
    assert len(reads) >= 18
    for method, path in reads:
        r = client.request(method, path, params={"token": NIFTY})
        assert r.status_code == 401, (path, r.status_code)
        r = client.request(method, path, params={"token": NIFTY}, headers=auth(web_tokens["read"]))
        assert r.status_code in (200, 404), (path, r.status_code, r.text)


def test_status_candles_indicators_and_units(client, web_tokens):
    h = auth(web_tokens["read"])
    s1 = client.get("/api/v1/status", headers=h).json()
    time.sleep(1.5)
    s2 = client.get("/api/v1/status", headers=h).json()
    assert s2["ticks_in"] > s1["ticks_in"] > 0
    assert s2["feed"] == "sim" and s2["risk"]["trading"] and "lags" in s2 and "web" in s2
    nifty = s2["indices"]["NIFTY"]
    assert 15_000 < nifty < 40_000  # rupees, not paise
    c = wait_for(  # a candle of the run's day (the history backfill holds earlier sessions')
        lambda: (
            lambda d: d if d["candles"] and "2026-04-13" in d["candles"][-1]["time"] else None
        )(
            client.get(
                "/api/v1/candles", params={"token": NIFTY, "timeframe": 15, "limit": 5}, headers=h
            ).json()
        )
    )
    assert c["instrument"]["symbol"] == "NIFTY" and 1 <= len(c["candles"]) <= 5
    bar = c["candles"][-1]
    assert re.fullmatch(r"2026-04-13T\d\d:\d\d:[0-5][05]\.000\+05:30", bar["time"])
    assert bar["low"] <= bar["close"] <= bar["high"] and abs(bar["close"] - nifty) < 500
    # one-second candles are held in memory, not in SQLite: the API serves them from there
    sec = wait_for(
        lambda: (lambda d: d if len(d["candles"]) >= 3 else None)(
            client.get(
                "/api/v1/candles", params={"token": NIFTY, "timeframe": 1, "limit": 3}, headers=h
            ).json()
        )
    )
    times = [b["time"] for b in sec["candles"]]
    assert len(times) == 3 and times == sorted(set(times))
    ind = wait_for(
        lambda: (lambda d: d if "SMA_9" in d["available"] else None)(
            client.get(
                "/api/v1/indicators", params={"token": NIFTY, "timeframe": 15}, headers=h
            ).json()
        )
    )
    sma = [p["value"] for p in ind["series"]["SMA_9"] if p["value"] is not None]
    assert sma and abs(sma[-1] - nifty) < 500  # SMA in rupees like the price
    rsi = [p["value"] for p in ind["series"].get("RSI_14", []) if p["value"] is not None]
    assert all(0 <= v <= 100 for v in rsi)


def test_chain_table_overview_and_both_exchanges(live, client, web_tokens):
    h = auth(web_tokens["read"])
    chain = wait_for_chain(live.url, web_tokens["read"])
    assert chain["underlying"] == "NIFTY" and chain["exchange"] == "NSE"
    rows = chain["rows"]
    assert len(rows) >= 21 and sum(r["atm"] for r in rows) == 1
    assert any(r["max_pain"] for r in rows) == (chain["max_pain"] is not None)
    atm = next(r for r in rows if r["atm"])
    for side in ("ce", "pe"):
        q = atm[side]
        assert q["ltp"] > 0 and 0.01 < q["iv"] < 2 and q["oi"] > 0
        assert set(q["oi_change_pct"]) == {"3", "5", "10", "15", "30"}
        assert q["highlight"] in (-1, 0, 1) and q["moneyness"] == "ATM"
    assert 0 < atm["ce"]["delta"] < 1 and -1 < atm["pe"]["delta"] < 0
    s = chain["summary"]
    assert s["pcr"] == chain["pcr_oi"] and s["vix"] and 5 < s["vix"] < 60
    assert s["itm_ce_delta_pct"] is not None and s["previous_close"]
    sensex = client.get("/api/v1/chain/SENSEX", headers=h)
    assert sensex.status_code == 200 and sensex.json()["exchange"] == "BSE"
    u = client.get("/api/v1/underlyings", headers=h).json()
    assert {x["symbol"] for x in u} == {"NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"}


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "field"),
    [
        ("GET", "/api/v1/candles", {"params": {"token": "abc"}}, 422, "query.token"),
        (
            "GET",
            "/api/v1/candles",
            {"params": {"token": NIFTY, "timeframe": 7}},
            422,
            "query.timeframe",
        ),
        ("GET", "/api/v1/candles", {"params": {"token": 999999}}, 404, "query.token"),
        ("GET", "/api/v1/candles", {"params": {"token": NIFTY, "limit": 0}}, 422, "query.limit"),
        (
            "GET",
            "/api/v1/candles",
            {"params": {"token": NIFTY, "before": "yesterday"}},
            422,
            "query.before",
        ),
        ("GET", "/api/v1/chain/NOPE", {}, 404, "path.underlying"),
        ("GET", "/api/v1/chain/NIFTY", {"params": {"expiry": "13-04-2026"}}, 422, "query.expiry"),
        ("GET", "/api/v1/positions", {"params": {"status": "maybe"}}, 422, "query.status"),
        (
            "POST",
            "/api/v1/orders",
            {"json": {"side": "HOLD", "symbol": "NIFTY", "quantity": 1}},
            422,
            "body.side",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"json": {"side": "BUY", "symbol": "NIFTY", "quantity": -5}},
            422,
            "body.quantity",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"json": {"side": "BUY", "symbol": "NOPE", "quantity": 5}},
            404,
            "body.symbol",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"json": {"side": "BUY", "symbol": "NIFTY"}},
            422,
            "body.quantity",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"json": {"side": "BUY", "symbol": "NIFTY", "quantity": 1, "colour": "red"}},
            422,
            "body.colour",
        ),
        (
            "POST",
            "/api/v1/orders",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
            "body.1",
        ),
        ("DELETE", "/api/v1/orders/no-such-order", {}, 404, "path.order_id"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(client, web_tokens, method, path, kw, status, field):
    headers = {**auth(web_tokens["trade"]), **kw.pop("headers", {})}
    r = client.request(method, path, headers=headers, **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    assert body["error"] and body["message"]
    assert '"input"' not in r.text and "colour" not in body["message"].replace(field, "")


def option_symbol(client, token, side="CE", offset=0):
    """The NIFTY option ``offset`` strikes from ATM on the nearest expiry."""
    h = auth(token)
    chain = client.get("/api/v1/chain/NIFTY", headers=h).json()
    strikes = [r["strike"] for r in chain["rows"] if (r[side.lower()] or {}).get("ltp")]
    atm = chain["atm_strike"]
    strikes.sort(key=lambda k: abs(k - atm))
    k = strikes[offset]
    inst = client.get(
        "/api/v1/instruments",
        params={"kind": "option", "underlying": "NIFTY", "expiry": chain["expiry"], "limit": 5000},
        headers=h,
    ).json()["instruments"]
    return next(i for i in inst if i["strike"] == k and i["option_type"] == side)


def wait_for(fn, timeout=60.0, every=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_an_order_the_risk_manager_denies_returns_the_reason(client, web_tokens):
    opt = option_symbol(client, web_tokens["trade"])
    r = client.post(
        "/api/v1/orders",
        headers=auth(web_tokens["trade"]),
        json={"side": "BUY", "symbol": opt["symbol"], "lots": 2000},
    )
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "risk_denied" and body["status"] == "DENIED"
    assert body["rule"] and body["reason"] and body["message"] == body["reason"]
    risk = client.get("/api/v1/risk", headers=auth(web_tokens["read"])).json()
    assert any(d["rule"] == body["rule"] for d in risk["recent_denials"])
    seed = client.post(
        "/api/place_order",
        headers=auth(web_tokens["trade"]),
        json={"action": "BUY", "symbol": opt["symbol"], "qty": 65 * 2000},
    )
    assert seed.status_code == 409 and seed.json()["success"] is False
    assert seed.json()["rule"] == body["rule"]


def test_paper_order_opens_a_position_with_mtm_and_closing_it_books_pnl(client, web_tokens):
    t, rd = auth(web_tokens["trade"]), auth(web_tokens["read"])
    opt = option_symbol(client, web_tokens["trade"], "CE", 1)
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": opt["symbol"], "lots": 1, "request_id": "api-test-open-1"},
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "ACCEPTED" and out["quantity"] == opt["lot_size"] and out["order_ids"]

    def open_pos():
        ps = client.get("/api/v1/positions", headers=rd).json()
        return next((p for p in ps if p["symbol"] == opt["symbol"]), None)

    pos = wait_for(open_pos)
    assert pos["status"] == "OPEN" and pos["net_quantity"] == opt["lot_size"]
    assert pos["entry_premium"] > 0 and "mtm" in pos and pos["side"] == "LONG"
    seed = client.get("/api/positions", headers=rd).json()["positions"]
    assert any(p["position_id"] == pos["position_id"] for p in seed)
    orders = client.get("/api/v1/orders", headers=rd).json()
    assert any(o.get("symbol") == opt["symbol"] and o["status"] == "FILLED" for o in orders)
    # the same request id never places a second order
    again = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": opt["symbol"], "lots": 1, "request_id": "api-test-open-1"},
    )
    # ... it returns the original order's ids instead
    assert again.status_code == 201 and again.json()["order_ids"] == out["order_ids"]
    after = client.get("/api/v1/orders", headers=rd).json()
    assert len(after) == len(orders)
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "SELL", "symbol": opt["symbol"], "quantity": opt["lot_size"]},
    )
    assert r.status_code == 201, r.text
    wait_for(lambda: open_pos() is None)
    closed = client.get("/api/v1/positions", params={"status": "closed"}, headers=rd).json()
    done = next(p for p in closed if p["position_id"] == pos["position_id"])
    assert done["status"] == "CLOSED" and done["exit_premium"] > 0
    pnl = client.get("/api/v1/pnl", headers=rd).json()
    assert pnl["charges"] > 0 and pnl["fills"] >= 2
    daily = client.get("/api/v1/performance/daily", headers=rd).json()
    assert daily[0]["date"] == "2026-04-13" and daily[0]["total_trades"] >= 1
    trades = client.get("/api/v1/trades", headers=rd).json()
    assert any(x["position_id"] == pos["position_id"] for x in trades)


def test_halt_blocks_new_entries_until_resumed(client, web_tokens):
    t = auth(web_tokens["trade"])
    opt = option_symbol(client, web_tokens["trade"], "PE", 1)
    try:
        r = client.post("/api/v1/trading/halt", headers=t, json={"reason": "api test"})
        assert r.status_code == 200 and r.json()["halted"] is True
        r = client.post(
            "/api/v1/orders", headers=t, json={"side": "BUY", "symbol": opt["symbol"], "lots": 1}
        )
        assert r.status_code == 409 and r.json()["rule"] == "halted", r.text
        assert client.get("/api/v1/risk", headers=t).json()["halt_reason"] == "api test"
    finally:
        r = client.post("/api/v1/trading/resume", headers=t, json={"reason": "api test done"})
    assert r.status_code == 200 and r.json()["halted"] is False


def test_metrics_are_prometheus_text(client, web_tokens):
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=auth(web_tokens["read"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            m = re.fullmatch(r"([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+|NaN)", line)
            assert m, line
            samples[m.group(1)] = float(m.group(3))
    assert samples["mandi_ticks_total"] > 0 and "mandi_trading_halted" in samples
    assert "mandi_ws_clients" in samples and "mandi_http_responses_total" in samples


def test_cors_is_closed_and_security_headers_are_set(client, web_tokens):
    r = client.get(
        "/api/v1/status", headers={**auth(web_tokens["read"]), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/v1/orders",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    page = client.get("/")
    assert page.status_code == 200 and "mandi" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    js = client.get("/vendor/lightweight-charts.js")
    assert js.status_code == 200 and "LightweightCharts" in js.text[:5000] + js.text[-5000:]


def test_dashboard_session_login_cookie_csrf_and_rate_limit(live, web_tokens):
    with httpx.Client(base_url=live.url, timeout=30) as c:
        bad = c.post("/api/v1/auth/login", json={"token": "wrong"})
        assert bad.status_code == 401 and "wrong" not in bad.text
        r = c.post("/api/v1/auth/login", json={"token": web_tokens["trade"]})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert web_tokens["trade"] not in r.text and r.json()["scope"] == "trade"
        csrf = r.json()["csrf_token"]
        assert c.get("/api/v1/auth/session").json()["token_id"] == web_tokens["trade_id"]
        # a cookie-authenticated state change needs the CSRF header and the same origin
        no_csrf = c.post("/api/v1/trading/resume", json={})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
        cross = c.post(
            "/api/v1/trading/resume",
            json={},
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        )
        assert cross.status_code == 403 and cross.json()["error"] == "bad_origin"
        ok = c.post("/api/v1/trading/resume", json={}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200
        c.post("/api/v1/auth/logout")
        assert c.get("/api/v1/auth/session").json() == {"authenticated": False}
    limiter = live.web.security.login_limit
    saved = limiter.limit
    limiter.limit = 3
    try:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            codes = [
                c.post("/api/v1/auth/login", json={"token": "x"}).status_code for _ in range(5)
            ]
        assert codes[-1] == 429 and 401 in codes
    finally:
        limiter.limit = saved
        limiter._hits.clear()


def test_order_routes_are_rate_limited_per_token(live, client, web_tokens):
    limiter = live.web.security.order_limit
    saved = limiter.limit
    limiter.limit = 2
    limiter._hits.clear()
    try:
        codes = [
            client.post(
                "/api/v1/orders",
                headers=auth(web_tokens["trade"]),
                json={"side": "BUY", "symbol": "NOPE", "quantity": 1},
            ).status_code
            for _ in range(4)
        ]
        assert codes[:2] == [404, 404] and codes[2:] == [429, 429]
        r = client.post(
            "/api/v1/orders",
            headers=auth(web_tokens["fuzz"]),
            json={"side": "BUY", "symbol": "NOPE", "quantity": 1},
        )
        assert r.status_code == 404  # another token has its own budget
    finally:
        limiter.limit = saved
        limiter._hits.clear()


def test_no_secret_is_ever_logged(live, client, web_tokens, watch_logs):
    client.get("/api/v1/status", headers=auth("mandi_deadbeef_not-a-real-secret"))
    client.post("/api/v1/auth/login", json={"token": web_tokens["read"] + "x"})
    text = "\n".join(watch_logs.lines)
    assert watch_logs.lines  # the node logs (start-up, dashboard URL ...)
    for key in ("read", "trade", "fuzz"):
        assert web_tokens[key] not in text
        assert web_tokens[key].split("_")[-1] not in text
    assert "not-a-real-secret" not in text


def test_a_resting_limit_order_can_be_cancelled(client, web_tokens):
    t = auth(web_tokens["trade"])
    opt = option_symbol(client, web_tokens["trade"], "PE", 2)
    chain = client.get("/api/v1/chain/NIFTY", headers=t).json()
    ltp = next(r["pe"]["ltp"] for r in chain["rows"] if r["strike"] == opt["strike"])
    price = round(round(ltp * 0.9 / 0.05) * 0.05, 2)  # inside the band, below the market
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": opt["symbol"], "lots": 1, "price": price},
    )
    assert r.status_code == 201, r.text
    assert r.json()["order_type"] == "LIMIT" and r.json()["price"] == price
    oid = r.json()["order_ids"][0]
    opened = client.get("/api/v1/orders", params={"status": "OPEN"}, headers=t).json()
    assert any(o["client_order_id"] == oid for o in opened)
    r = client.delete(f"/api/v1/orders/{oid}", headers=t)
    assert r.status_code == 200 and r.json()["cancel_requested"] is True

    def cancelled():
        rows = client.get("/api/v1/orders", params={"status": "CANCELLED"}, headers=t).json()
        return any(o["client_order_id"] == oid for o in rows)

    wait_for(cancelled)
    again = client.delete(f"/api/v1/orders/{oid}", headers=t)
    assert again.status_code == 409 and again.json()["error"] == "order_not_open"
