"""Inbound signal webhooks: a signed TradingView-style alert becomes a signal through the risk
manager; a replayed, re-signed, stale, forged, unauthenticated or read-only request is refused;
a ChartInk alert becomes one signal per stock."""

from __future__ import annotations

import json
import time

from mandi.web.inbound import SIGNATURE_HEADER, sign

from .conftest import WEBHOOK_SECRET, auth

URL = "/api/v1/webhooks/signal"


def post(client, token, body, secret=WEBHOOK_SECRET, t=None, header=None):
    raw = json.dumps(body).encode()
    sig = header if header is not None else sign(secret, raw, t)
    headers = {**auth(token), SIGNATURE_HEADER: sig, "Content-Type": "application/json"}
    return client.post(URL, content=raw, headers=headers), sig, raw


def test_a_signed_alert_becomes_a_signal_once(client, web_tokens):
    body = {"symbol": "INFY", "action": "buy", "strategy": "tv breakout", "id": "tv-1"}
    r, sig, raw = post(client, web_tokens["trade"], body)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["strategy"] == "webhook_tv_breakout"
    s = out["signals"][0]
    assert s["symbol"] == "INFY" and s["action"] == "BUY" and not s["duplicate"]
    assert s["status"] in ("ORDERED", "DENIED", "IGNORED") and s["status"] != "NEW"
    sigs = client.get("/api/v1/signals", headers=auth(web_tokens["read"])).json()
    assert any(x["signal_id"] == s["signal_id"] and x["strategy"] == out["strategy"] for x in sigs)
    # the very same request again: a replay
    again = client.post(
        URL,
        content=raw,
        headers={**auth(web_tokens["trade"]), SIGNATURE_HEADER: sig},
    )
    assert again.status_code == 409 and again.json()["error"] == "replayed"
    # the same alert, signed anew (a retry): idempotent, nothing new
    r2, _, _ = post(client, web_tokens["trade"], body, t=int(time.time()) + 1)
    assert r2.status_code == 202 and r2.json()["signals"][0]["duplicate"] is True
    assert r2.json()["signals"][0]["signal_id"] == s["signal_id"]


def test_forged_stale_unauthenticated_and_read_only_requests_are_refused(client, web_tokens):
    body = {"symbol": "TCS", "action": "sell"}
    r, _, _ = post(client, web_tokens["trade"], body, secret="another-secret")
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    r, _, _ = post(client, web_tokens["trade"], body, t=int(time.time()) - 3600)
    assert r.status_code == 401 and r.json()["error"] == "stale_signature"
    r, _, _ = post(client, web_tokens["trade"], body, header="sha256=abc")
    assert r.status_code == 401
    raw = json.dumps(body).encode()
    r = client.post(URL, content=raw, headers={SIGNATURE_HEADER: sign(WEBHOOK_SECRET, raw)})
    assert r.status_code == 401  # no token
    r, _, _ = post(client, web_tokens["read"], body)
    assert r.status_code == 403
    r, _, _ = post(client, web_tokens["trade"], {"symbol": "NOPE", "action": "buy"})
    assert r.status_code == 404 and r.json()["field"] == "body[0].symbol"
    r, _, _ = post(client, web_tokens["trade"], {"symbol": "TCS", "action": "hold"})
    assert r.status_code == 422 and r.json()["field"] == "body.action"


def test_a_chartink_alert_becomes_one_signal_per_stock(client, web_tokens):
    body = {
        "stocks": "HDFCBANK,ICICIBANK",
        "trigger_prices": "1950.5,1400.25",
        "triggered_at": "10:02 am",
        "scan_name": "Breakouts",
    }
    r, _, _ = post(client, web_tokens["trade"], body)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["strategy"] == "webhook_Breakouts"
    assert [s["symbol"] for s in out["signals"]] == ["HDFCBANK", "ICICIBANK"]
    assert all(s["action"] == "BUY" and s["status"] != "NEW" for s in out["signals"])
