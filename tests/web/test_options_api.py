"""The options API against a real ``mandi run`` node: templates, a basket's payoff and Greeks
(checked against the kernel's own computation), whole-basket rejections, the open book's payoff,
and the volatility and OI views."""

from __future__ import annotations

import math
import time

import pytest

from mandi.options.payoff import PayoffLeg, payoff

from .conftest import auth


def wait_for(fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def rd(web_tokens):
    return auth(web_tokens["read"])


def test_templates_and_a_built_iron_condor(client, rd):
    names = {t["name"] for t in client.get("/api/v1/templates", headers=rd).json()}
    assert {"straddle", "strangle", "iron_condor", "iron_fly", "butterfly", "calendar"} <= names
    assert {"bull_call_spread", "bear_call_spread", "bull_put_spread", "bear_put_spread"} <= names
    r = client.get("/api/v1/basket/NIFTY/iron_condor", params={"offset": 2}, headers=rd)
    assert r.status_code == 200, r.text
    b = r.json()
    sides = [(leg["option_type"], leg["side"]) for leg in b["legs"]]
    assert sides == [("PE", "BUY"), ("PE", "SELL"), ("CE", "SELL"), ("CE", "BUY")]
    strikes = [leg["strike"] for leg in b["legs"]]
    assert strikes == sorted(strikes) and all(leg["lots"] == 1 for leg in b["legs"])
    r = client.get("/api/v1/basket/NIFTY/condor", headers=rd)
    assert r.status_code == 422 and r.json()["field"] == "path.template"


def test_payoff_of_a_basket_matches_the_kernel(client, rd):
    b = client.get("/api/v1/basket/NIFTY/iron_condor", params={"offset": 2}, headers=rd).json()
    legs = [{"symbol": x["symbol"], "side": x["side"], "lots": 1} for x in b["legs"]]
    r = client.post("/api/v1/payoff", json={"legs": legs, "points": 101}, headers=rd)
    assert r.status_code == 200, r.text
    p = r.json()
    assert len(p["curve"]["spots"]) == len(p["curve"]["today"]) == 101
    # a short iron condor: a credit, bounded both ways, two breakevens around the spot
    assert p["net_premium"] > 0 and p["max_profit"] == pytest.approx(p["net_premium"], abs=0.02)
    assert p["max_loss"] is not None and p["max_loss"] < 0
    lo, hi = p["breakevens"]
    assert lo < p["spot"] < hi and 0 < p["pop"] < 1
    m = p["margin"]
    assert m["hedge_benefit"] > 0 and m["total"] < m["standalone"]
    # the same numbers from the kernel, on the prices and IVs the API used
    years = p["expiry_days"] / 365
    mine = [
        PayoffLeg(
            x["option_type"],
            x["quantity"] * (1 if x["side"] == "BUY" else -1),
            x["price"],
            x["strike"],
            years,
            x["iv"],
        )
        for x in p["legs"]
    ]
    want = payoff(mine, p["spot"], r=p["rate"])
    assert p["breakevens"] == pytest.approx(list(want.breakevens), abs=0.01)
    assert p["greeks"]["delta"] == pytest.approx(want.greeks.delta, rel=1e-3, abs=2e-4)
    assert p["greeks"]["theta"] == pytest.approx(want.greeks.theta, rel=1e-3, abs=0.01)
    # a what-if: more volatility makes the short condor worth less today at the spot
    r2 = client.post("/api/v1/payoff", json={"legs": legs, "iv_shift": 10}, headers=rd).json()
    assert r2["greeks"]["vega"] < 0
    mid = lambda q: q["curve"]["today"][len(q["curve"]["today"]) // 2]  # noqa: E731
    assert mid(r2) < mid(client.post("/api/v1/payoff", json={"legs": legs}, headers=rd).json())


def test_a_bad_basket_is_refused_whole_with_a_reason_per_leg(client, rd):
    b = client.get("/api/v1/basket/NIFTY/straddle", headers=rd).json()
    good = b["legs"][0]
    body = {
        "template": "straddle",
        "legs": [
            {"symbol": good["symbol"], "side": "SELL", "quantity": good["quantity"]},
            {"symbol": "NIFTY99XYZ", "side": "SELL", "lots": 1},
            {"symbol": b["legs"][1]["symbol"], "side": "SELL", "quantity": good["quantity"] + 1},
        ],
    }
    r = client.post("/api/v1/payoff", json=body, headers=rd)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"] == "basket_rejected" and err["field"] == "body.legs"
    reasons = {(i["leg"], i["reason"]) for i in err["issues"]}
    assert (1, "unknown contract") in reasons
    assert any(leg == 2 and "lot size" in why for leg, why in reasons)
    assert any(leg == -1 and "straddle has 2 legs" in why for leg, why in reasons)
    assert not any(leg == 0 for leg, _ in reasons)
    assert "NIFTY99XYZ" not in r.text  # errors never echo the input


def test_payoff_is_read_only_but_needs_a_token(client, web_tokens):
    r = client.post("/api/v1/payoff", json={"legs": [{"symbol": "X", "side": "BUY"}]})
    assert r.status_code == 401
    r = client.post("/api/v1/payoff", json={"legs": []}, headers=auth(web_tokens["read"]))
    assert r.status_code == 422


def test_payoff_of_the_open_book(client, web_tokens, rd):
    t = auth(web_tokens["trade"])
    b = client.get("/api/v1/basket/NIFTY/straddle", params={"side": "BUY"}, headers=rd).json()
    call = b["legs"][0]
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": call["symbol"], "lots": 1, "request_id": "book-payoff-1"},
    )
    assert r.status_code == 201, r.text

    def book():
        # the book may already hold the strategies' positions: wait for this fill's leg
        r = client.post("/api/v1/positions/payoff/NIFTY", headers=rd)
        if r.status_code != 200:
            return None
        p = r.json()
        return p if any(x["symbol"] == call["symbol"] for x in p["legs"]) else None

    p = wait_for(book)
    assert p["source"] == "positions"
    mine = [x for x in p["legs"] if x["symbol"] == call["symbol"]]
    assert mine and mine[0]["side"] == "BUY"
    client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "SELL", "symbol": call["symbol"], "lots": 1, "request_id": "book-payoff-2"},
    )


def test_volatility_views(client, rd):
    s = client.get("/api/v1/volatility/NIFTY/smile", headers=rd).json()
    ivs = [x["ce_iv"] for x in s["points"] if x["ce_iv"]]
    assert s["live"] and len(ivs) > 10 and all(0.01 < v < 2 for v in ivs)
    term = client.get("/api/v1/volatility/NIFTY/term", headers=rd).json()["points"]
    assert len(term) >= 2 and [x["expiry"] for x in term] == sorted(x["expiry"] for x in term)
    assert all(x["atm_iv"] and x["days"] >= 0 for x in term)

    def stored():  # the chain layer persists a snapshot every 30 s of exchange time
        r = client.get("/api/v1/volatility/NIFTY/straddle", headers=rd).json()
        return r if sum(x["straddle"] is not None for x in r["points"]) >= 2 else None

    st = wait_for(stored)
    for x in st["points"]:
        if x["call"] is not None and x["put"] is not None:
            assert x["straddle"] == pytest.approx(x["call"] + x["put"], abs=0.011)
        assert abs(x["strike"] - x["spot"]) <= 50
    rank = client.get("/api/v1/volatility/NIFTY/rank", headers=rd).json()
    assert rank["basis"] == "snapshots" and rank["observations"] >= 2
    assert 0 <= rank["percentile"] <= 100 and rank["iv"] > 0
    if rank["rank"] is not None:
        assert 0 <= rank["rank"] <= 100


def test_oi_views(client, rd):
    oi = client.get("/api/v1/oi/NIFTY", headers=rd).json()
    assert oi["live"] and sum((x["ce_oi"] or 0) for x in oi["rows"]) > 0
    assert {"ce_oi_change", "pe_oi_change"} <= set(oi["rows"][0])

    def history():
        r = client.get("/api/v1/oi/NIFTY/history", headers=rd).json()
        return r if len(r["points"]) >= 2 else None

    h = wait_for(history)
    assert h["strike"] > 0 and all("ce_oi" in x and "pe_oi" in x for x in h["points"])
    pcr = client.get("/api/v1/oi/NIFTY/pcr", headers=rd).json()["points"]
    assert len(pcr) >= 2 and all(x["pcr"] > 0 and x["max_pain"] > 0 for x in pcr)
    assert all(math.isfinite(x["spot"]) for x in pcr)


def test_stop_orders_through_the_api(client, web_tokens, rd):
    t = auth(web_tokens["trade"])
    b = client.get("/api/v1/basket/NIFTY/straddle", headers=rd).json()
    sym = b["legs"][0]["symbol"]
    leg = {"symbol": sym, "side": "BUY", "lots": 1}
    ltp = client.post("/api/v1/payoff", json={"legs": [leg]}, headers=rd).json()["legs"][0]["price"]
    below = round(round(ltp * 0.5 * 20) / 20, 2)  # a BUY stop below the market fires at once
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": sym, "lots": 1, "trigger_price": below},
    )
    assert r.status_code == 409, r.text
    assert r.json()["rule"] == "stop_trigger" and "fire at once" in r.json()["reason"]
    above = round(round(ltp * 3 * 20) / 20 + 0.05, 2)
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={
            "side": "BUY",
            "symbol": sym,
            "lots": 1,
            "trigger_price": above,
            "request_id": "slm1",
        },
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["order_type"] == "SL-M" and out["trigger_price"] == pytest.approx(above)
    (oid,) = out["order_ids"]
    rows = client.get("/api/v1/orders", params={"status": "OPEN"}, headers=rd).json()
    mine = next(o for o in rows if o["order_id"] == oid)
    assert mine["order_type"] == "SL-M" and mine["trigger_price"] == pytest.approx(above * 100)
    assert client.delete(f"/api/v1/orders/{oid}", headers=t).status_code == 200
    r = client.post(
        "/api/v1/orders",
        headers=t,
        json={"side": "BUY", "symbol": sym, "lots": 1, "order_type": "SL-M"},
    )
    assert r.status_code == 422 and r.json()["field"] == "body.trigger_price"


def test_a_basket_is_placed_as_one_structure(client, web_tokens, rd):
    t = auth(web_tokens["trade"])
    b = client.get("/api/v1/basket/NIFTY/iron_condor", params={"offset": 2}, headers=rd).json()
    legs = [{"symbol": x["symbol"], "side": x["side"], "lots": 1} for x in b["legs"]]
    r = client.post("/api/v1/baskets", json={"legs": legs}, headers=rd)
    assert r.status_code == 403  # placing needs a trade token
    body = {"legs": legs, "template": "iron_condor", "request_id": "api-basket-1"}
    r = client.post("/api/v1/baskets", json=body, headers=t)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "ACCEPTED" and out["risk"]["hedge_benefit"] > 0

    def filled():
        s = client.get(f"/api/v1/baskets/{out['basket_id']}", headers=rd).json()
        return s if s["status"] in ("FILLED", "PARTIAL", "UNWOUND") else None

    s = wait_for(filled)
    assert s["status"] == "FILLED", s
    assert [leg["filled"] for leg in s["legs"]] == [leg["quantity"] for leg in s["legs"]]
    # a basket whose leg quantity is not a lot multiple is refused whole, a reason per leg
    bad = [dict(legs[0], lots=None, quantity=1), *legs[1:]]
    r = client.post("/api/v1/baskets", json={"legs": bad, "request_id": "api-basket-2"}, headers=t)
    assert r.status_code == 422 and r.json()["issues"][0]["leg"] == 0
    assert client.get("/api/v1/baskets/nope", headers=rd).status_code == 404


def test_mandi_basket_place_goes_through_the_running_node(live, client, rd):
    from typer.testing import CliRunner

    from mandi.cli import app

    db = live.node.cfg.store.db
    runner = CliRunner()
    args = ["NIFTY", "straddle", "--side", "BUY", "--db", db]
    r = runner.invoke(app, ["basket", "show", *args, "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["basket", "place", *args, "--wait", "30"])
    assert r.exit_code == 0, r.output
    assert "basket accepted: BUY" in r.output and r.output.count("BUY") == 2
    r = runner.invoke(
        app, ["basket", "place", "NIFTY", "--leg", "BUY:NIFTYNOPE:1", "--db", db, "--wait", "30"]
    )
    assert r.exit_code == 2 and "unknown contract" in r.output
