"""The WebSocket protocol against the live node: auth, initial state, subscriptions, metrics,
error frames, origin check."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .conftest import NIFTY, auth


def frames(ws, until, timeout=30.0):
    """Messages (NDJSON frames split) until ``until(messages)`` is true."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        got += [json.loads(line) for line in raw.split("\n") if line]
        if until(got):
            return got
    seen = [m.get("type") or m.get("channel") for m in got][-20:]
    raise AssertionError(f"not received in {timeout} s; got {seen}")


def of(msgs, **match):
    return [m for m in msgs if all(m.get(k) == v for k, v in match.items())]


def test_connect_gets_state_then_subscribed_updates_and_metrics(live, web_tokens):
    with connect(live.ws_url, additional_headers=auth(web_tokens["read"])) as ws:
        first = frames(ws, lambda ms: of(ms, type="snapshot"))
        hello = of(first, type="hello")[0]["data"]
        assert hello["scope"] == "read" and "chain:{U}[:{expiry}]" in hello["channels"]
        snap = of(first, type="snapshot")[0]["data"]
        assert snap["status"]["ticks_in"] > 0 and "NIFTY" in snap["overview"]
        assert snap["overview"]["SENSEX"]["exchange"] == "BSE"
        chans = [
            f"tick:NSE:{NIFTY}",
            f"pub:candle:60s:NSE:{NIFTY}",
            f"candle:1s:NSE:{NIFTY}",
            f"pub:ind:*:15s:NSE:{NIFTY}",
            "chain:NIFTY",
            "data_update_BSE",
            "overview:NIFTY",
        ]
        ws.send(json.dumps({"op": "subscribe", "channels": chans}))
        want = set(chans)

        def seen(ms):
            got = {m.get("channel") for m in ms}
            got |= {
                c
                for c in chans
                if c.startswith("pub:ind:")
                and any(str(m.get("channel", "")).startswith("pub:ind:SMA_9:15s") for m in ms)
            }
            return want <= got and of(ms, type="metrics")

        msgs = frames(ws, seen, timeout=40)
        assert of(msgs, type="subscribed")[0]["channels"] == chans
        tick = of(msgs, channel=f"tick:NSE:{NIFTY}")[-1]
        assert set(tick) == {"channel", "data", "ts"} and tick["data"]["token"] == NIFTY
        assert 15_000 < tick["data"]["price"] < 40_000 and isinstance(tick["ts"], int)
        forming = of(msgs, channel=f"pub:candle:60s:NSE:{NIFTY}")[-1]["data"]
        assert forming["closed"] is False and forming["timeframe"] == 60
        confirmed = of(msgs, channel=f"candle:1s:NSE:{NIFTY}")[-1]["data"]
        assert confirmed["closed"] is True
        table = of(msgs, channel="chain:NIFTY")[-1]["data"]
        assert table["underlying"] == "NIFTY" and len(table["rows"]) >= 21
        seed = of(msgs, channel="data_update_BSE")[-1]["data"]
        assert seed["underlying"] == "SENSEX" and seed["info"]["exchange"] == "BSE"
        metrics = of(msgs, type="metrics")[-1]["data"]
        assert metrics["ticks_in"] > 0 and "risk" in metrics and metrics["web"]["clients"] >= 1
        # conflation: at most one tick per flush of the hub for one channel
        ticks = of(msgs, channel=f"tick:NSE:{NIFTY}")
        assert len({m["data"]["time"] for m in ticks}) == len(ticks)
        ws.send(json.dumps({"op": "unsubscribe", "channels": chans}))
        frames(ws, lambda ms: of(ms, type="unsubscribed"))
    assert live.call(lambda: len(live.web.hub._bus)) == 0  # the bus pays nothing any more


def test_malformed_messages_get_error_frames_and_the_connection_stays(live, web_tokens):
    with connect(live.ws_url, additional_headers=auth(web_tokens["read"])) as ws:
        frames(ws, lambda ms: of(ms, type="snapshot"))
        bad = [
            "{not json",
            "[1, 2]",
            '{"op": 5}',
            '{"op": "dance"}',
            '{"op": "subscribe", "channels": "tick:NSE:abc"}',
            '{"op": "subscribe", "channels": []}',
            '{"op": "subscribe", "channels": ["candle:7s:NSE:256265", "tick:BSE:256265"]}',
            '{"op": "subscribe", "channels": ["tick:>"]}',
            "x" * 20_000,
        ]
        for b in bad:
            ws.send(b)
        ws.send(b"\x00binary")
        ws.send('{"op": "ping"}')
        msgs = frames(ws, lambda ms: of(ms, type="pong"))
        errors = of(msgs, type="error")
        codes = [e["error"] for e in errors]
        assert codes.count("bad_json") == 1 and codes.count("unknown_op") == 1
        assert codes.count("bad_channel") >= 4 and codes.count("bad_message") >= 4
        assert all(e["message"] for e in errors)
        named = {e.get("channel") for e in errors if e["error"] == "bad_channel"}
        assert {"candle:7s:NSE:256265", "tick:BSE:256265", "tick:>"} <= named


def test_websocket_needs_a_token_and_can_authenticate_by_message(live, web_tokens):
    with connect(live.ws_url) as ws:
        first = frames(ws, lambda ms: of(ms, type="error"))
        assert of(first, type="error")[0]["error"] == "not_authenticated"
        ws.send(json.dumps({"op": "subscribe", "channels": ["chain:NIFTY"]}))
        assert (
            of(frames(ws, lambda ms: of(ms, type="error")), type="error")[0]["error"]
            == "not_authenticated"
        )
        ws.send(json.dumps({"op": "auth", "token": "wrong"}))
        assert (
            of(frames(ws, lambda ms: of(ms, type="error")), type="error")[0]["error"]
            == "invalid_token"
        )
        ws.send(json.dumps({"op": "auth", "token": web_tokens["trade"]}))
        got = frames(ws, lambda ms: of(ms, type="snapshot"))
        assert of(got, type="hello")[0]["data"]["scope"] == "trade"
    with pytest.raises(InvalidStatus):  # a bad header: the handshake is refused
        connect(live.ws_url, additional_headers=auth("mandi_x_wrong"))


def test_websocket_refuses_a_foreign_origin(live, web_tokens):
    with pytest.raises(InvalidStatus) as e:
        connect(
            live.ws_url, origin="https://evil.example", additional_headers=auth(web_tokens["read"])
        )
    assert e.value.response.status_code == 403
    same = live.url  # the page's own origin is fine
    with connect(live.ws_url, origin=same, additional_headers=auth(web_tokens["read"])) as ws:
        frames(ws, lambda ms: of(ms, type="snapshot"))


def test_position_events_reach_subscribers(live, client, web_tokens):
    from .test_api import option_symbol, wait_for

    t = auth(web_tokens["trade"])
    opt = option_symbol(client, web_tokens["trade"], "CE", 2)

    def ours(msgs, channel):
        # the node's own strategies trade too: their positions open and close on these channels
        return [
            m for m in of(msgs, channel=channel) if m["data"]["position"]["symbol"] == opt["symbol"]
        ]

    with connect(live.ws_url, additional_headers=auth(web_tokens["read"])) as ws:
        frames(ws, lambda ms: of(ms, type="snapshot"))
        ws.send(
            json.dumps(
                {"op": "subscribe", "channels": ["position:>", "position_closed", "order:>"]}
            )
        )
        frames(ws, lambda ms: of(ms, type="subscribed"))
        r = client.post(
            "/api/v1/orders", headers=t, json={"side": "BUY", "symbol": opt["symbol"], "lots": 1}
        )
        assert r.status_code == 201, r.text
        got = frames(ws, lambda ms: ours(ms, "position:opened"), timeout=60)
        opened = ours(got, "position:opened")[0]["data"]["position"]
        assert opened["status"] == "OPEN"
        assert any(str(m.get("channel", "")).startswith("order:") for m in got)

        def closed():
            ps = client.get("/api/v1/positions", headers=t).json()
            return not any(p["symbol"] == opt["symbol"] for p in ps)

        r = client.post(
            "/api/v1/orders", headers=t, json={"side": "SELL", "symbol": opt["symbol"], "lots": 1}
        )
        assert r.status_code == 201, r.text
        got = frames(ws, lambda ms: ours(ms, "position_closed"), timeout=60)
        toast = ours(got, "position_closed")[0]["data"]
        assert toast["reason"]
        assert toast["position"]["status"] == "CLOSED"
        wait_for(closed)
