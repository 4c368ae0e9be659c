"""Issue 13's web reproductions against the live node (see conftest.py), each of which broke the
gateway before: unauthenticated WebSockets fed metrics and took client slots, a price of 0.001
became a market order, unbounded bodies, errors echoing input, a halt reason forging a log line,
unlimited halt/resume. Plus the backtests router and the response schemas of every route."""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from mandi.web.security import RateLimiter

from .conftest import NIFTY, auth
from .test_api import option_symbol, wait_for
from .test_ws import frames, of

ROOT = pathlib.Path(__file__).resolve().parents[2]


def drain(ws, seconds: float) -> list[dict]:
    """Every message that arrives within ``seconds`` (until the socket closes)."""
    got: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        except (TimeoutError, ConnectionClosed):
            break
        got += [json.loads(line) for line in raw.split("\n") if line]
    return got


def test_an_unauthenticated_websocket_gets_nothing_but_the_challenge_and_no_slot(live, web_tokens):
    hub = live.web.hub
    clients_before = live.call(lambda: len(hub.clients))
    with connect(live.ws_url) as anon:
        first = frames(anon, lambda ms: of(ms, type="error"))
        assert [m["error"] for m in first] == ["not_authenticated"]
        assert live.call(lambda: len(hub.clients)) == clients_before  # holds no client slot
        assert live.call(lambda: hub.pending.total()) >= 1
        # an authenticated dashboard meanwhile sees two metrics broadcasts go out ...
        with connect(live.ws_url, additional_headers=auth(web_tokens["read"])) as dash:
            frames(dash, lambda ms: len(of(ms, type="metrics")) >= 2, timeout=30)
        # ... none of which reached the unauthenticated socket: no P&L, halt state or index levels
        leaked = [m for m in drain(anon, 0.5) if m.get("type") != "error"]
        assert leaked == []
    wait_for(lambda: live.call(lambda: hub.pending.total()) == 0, timeout=30)


def test_unauthenticated_websockets_are_capped_per_address_and_never_lock_out_a_dashboard(
    live, web_tokens
):
    hub = live.web.hub
    cap = live.node.cfg.web.ws_unauth_per_address
    with contextlib.ExitStack() as stack:
        opened = []
        for _ in range(cap):
            ws = stack.enter_context(connect(live.ws_url))
            frames(ws, lambda ms: of(ms, type="error"))
            opened.append(ws)
        with pytest.raises(InvalidStatus):  # one more from this address: refused at the handshake
            stack.enter_context(connect(live.ws_url))
        assert live.call(lambda: hub.pending_refused) >= 1
        with connect(live.ws_url, additional_headers=auth(web_tokens["read"])) as dash:
            hello = frames(dash, lambda ms: of(ms, type="hello"))
            assert of(hello, type="hello")[0]["data"]["scope"] == "read"
        # the challenge has a deadline: the silent sockets are closed (4401), freeing their room
        with pytest.raises(ConnectionClosed) as e:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                opened[0].recv(timeout=30)
        assert e.value.rcvd is not None and e.value.rcvd.code == 4401
    wait_for(lambda: live.call(lambda: hub.pending.total()) == 0, timeout=30)
    with connect(live.ws_url) as again:  # room again
        frames(again, lambda ms: of(ms, type="error"))


def test_a_mistyped_limit_price_is_refused_with_the_nearest_valid_prices(client, web_tokens):
    t = auth(web_tokens["trade"])
    opt = option_symbol(client, web_tokens["trade"], "CE", 3)
    before = len(client.get("/api/v1/orders", headers=t, params={"limit": 5000}).json())
    order = {"side": "BUY", "symbol": opt["symbol"], "lots": 1}
    r = client.post("/api/v1/orders", headers=t, json={**order, "price": 0.001})
    assert r.status_code == 422, r.text  # not 0 paise, which would have been a market order
    body = r.json()
    assert body["field"] == "body.price" and "₹0.05" in body["message"]
    r = client.post("/api/v1/orders", headers=t, json={**order, "price": 100.03})
    assert r.status_code == 422 and "₹100.00 or ₹100.05" in r.json()["message"]
    for bad in ({"price": 0}, {"order_type": "MARKET", "price": 100.05}, {"order_type": "LIMIT"}):
        r = client.post("/api/v1/orders", headers=t, json={**order, **bad})
        assert r.status_code == 422 and r.json()["field"] == "body.price", (bad, r.text)
    r = client.post("/api/place_order", headers=t, json={**order, "price": 0.001})
    assert r.status_code == 422 and r.json()["success"] is False
    after = len(client.get("/api/v1/orders", headers=t, params={"limit": 5000}).json())
    assert after == before  # nothing was placed


def test_a_manual_request_off_the_tick_is_denied_by_the_node(live, client, web_tokens):
    from mandi.stores import queries
    from mandi.stores.trading import add_order_request

    opt = option_symbol(client, web_tokens["trade"], "PE", 4)
    db = live.node.cfg.store.db
    rid = uuid.uuid4().hex
    add_order_request(db, rid, opt["symbol"], "BUY", opt["lot_size"], 1003, "NSE")  # ₹10.03
    row = wait_for(
        lambda: (
            (queries.order_request(db, rid) or {}).get("status") != "PENDING"
            and queries.order_request(db, rid)
        )
    )
    assert row["status"] == "DENIED" and row["rule"] == "price_not_on_tick", row
    assert "₹10.00 or ₹10.05" in row["result"]


def test_request_bodies_are_capped(live, client):
    cap = getattr(live.node.cfg.web, "max_body_bytes", 65_536)
    big = b'{"token": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    r = client.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: streamed, refused once past the cap
        yield b'{"token": "'
        for _ in range(64):
            yield b"x" * cap

    r = client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert client.get("/health").status_code == 200  # and the server is fine


def test_error_bodies_name_the_field_and_never_echo_the_value(client, web_tokens):
    h = auth(web_tokens["trade"])
    marker = "ECHO<script>x"
    cases = [
        ("GET", "/api/v1/candles", {"token": NIFTY, "timeframe": 60, "before": marker}, None),
        ("GET", "/api/v1/indicators", {"token": NIFTY, "timeframe": 15, "names": marker}, None),
        ("GET", "/api/v1/chain/ECHOZZ", {}, None),
        ("GET", "/api/v1/instruments", {"expiry": "ECHO-01-01"}, None),
        ("POST", "/api/v1/orders", None, {"side": "BUY", "symbol": "ECHOSYM", "quantity": 1}),
    ]
    for method, path, params, body in cases:
        r = client.request(method, path, params=params, json=body, headers=h)
        assert 400 <= r.status_code < 500, (path, r.text)
        assert r.json().get("field"), (path, r.text)
        assert "ECHO" not in r.text, (path, r.text)


def test_a_halt_reason_cannot_forge_a_log_line(client, web_tokens, watch_logs):
    h = auth(web_tokens["trade"])
    forged = "ops\n12:00:00 INFO    mandi.risk: FORGED all clear"
    try:
        r = client.post("/api/v1/trading/halt", headers=h, json={"reason": forged})
        assert r.status_code == 200 and r.json()["halted"] is True
        assert "\n" not in r.json()["halt_reason"]
        lines = [x for x in watch_logs.lines if "FORGED" in x]
        assert lines and all("\n" not in x for x in lines)
    finally:
        client.post("/api/v1/trading/resume", headers=h, json={"reason": "test done"})


def test_halt_and_resume_are_rate_limited(live, client, web_tokens):
    h = auth(web_tokens["trade"])
    sec = live.web.security
    saved = getattr(sec, "command_limit", None)
    live.call(lambda: setattr(sec, "command_limit", RateLimiter(2)))
    try:
        codes = [
            client.post(f"/api/v1/trading/{op}", headers=h, json={"reason": "rate"}).status_code
            for op in ("halt", "resume", "halt")
        ]
        assert codes[:2] == [200, 200] and codes[2] == 429
    finally:
        live.call(lambda: setattr(sec, "command_limit", saved))
        client.post("/api/v1/trading/resume", headers=h, json={"reason": "test done"})


def test_every_rest_route_documents_its_response(client):
    spec = client.get("/api/v1/openapi.json").json()
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = {k: v for k, v in op["responses"].items() if k.startswith("2")}
            schemas = [
                c.get("schema") or {} for r in ok.values() for c in r.get("content", {}).values()
            ]
            if not ok or not any(s for s in schemas):
                missing.append(f"{method.upper()} {path}")
    assert missing == []
    assert len(spec["paths"]) >= 25 and "BacktestRunsOut" in spec["components"]["schemas"]


def test_stored_backtests_are_served(live, client, web_tokens):
    from mandi.services.backtest import run
    from mandi.services.backtest.report import save_to_store

    lines = (ROOT / "tests/data/NIFTY50_3min_2025-07-23_to_2026-08-04.csv").read_text()
    csv = live.node.cfg.store.db + ".bt.csv"
    pathlib.Path(csv).write_text("\n".join(lines.splitlines()[:1500]) + "\n")
    res = run(csv, "sma_cross", {"fast": 10, "slow": 30}, quantity=15)
    rid = save_to_store(res, live.node.cfg.store.db)
    h = auth(web_tokens["read"])
    runs = client.get("/api/v1/backtests", headers=h).json()["runs"]
    mine = next(r for r in runs if r["run_id"] == rid)
    assert mine["strategy"] == "sma_cross" and mine["trades"] == len(res.trades)
    assert mine["final_value"] == pytest.approx(res.final_value, abs=0.01)
    one = client.get(f"/api/v1/backtests/{rid}", headers=h).json()
    assert len(one["trade_list"]) == len(res.trades) and one["equity"][0]["time"]
    assert one["trade_list"][0]["pnl"] == pytest.approx(res.trades[0].pnl / 100)
    r = client.get("/api/v1/backtests/nope", headers=h)
    assert r.status_code == 404 and r.json()["field"] == "path.run_id"
    assert httpx.get(f"{live.url}/api/v1/backtests").status_code == 401
