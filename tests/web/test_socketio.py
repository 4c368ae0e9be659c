"""Socket.IO for seed 001's dashboards, with python-socketio's own client: the seed's
``data_update_NSE`` arrives (the NIFTY chain with its info bar), more channels can be subscribed,
and a client without a valid token is refused at connect."""

from __future__ import annotations

import threading

import pytest
import socketio


def test_a_socketio_client_gets_data_update_nse_and_can_subscribe(live, web_tokens):
    got: dict[str, object] = {}
    seen = threading.Event()
    sio = socketio.Client(reconnection=False)

    @sio.on("data_update_NSE")
    def on_nse(data):
        got["nse"] = data
        seen.set()

    @sio.on("snapshot")
    def on_snapshot(data):
        got["snapshot"] = data

    sio.connect(live.url, auth={"token": web_tokens["read"]}, wait_timeout=30)
    try:
        assert seen.wait(60), "no data_update_NSE within 60 s"
        data = got["nse"]
        assert data["underlying"] == "NIFTY" and data["exchange"] == "NSE"
        assert len(data["rows"]) >= 21 and data["info"]["price"] > 0
        assert any((r.get("ce") or {}).get("ltp") for r in data["rows"])
        assert "status" in got["snapshot"]
        ack = sio.call("subscribe", ["overview:NIFTY", "no:such"], timeout=30)
        assert ack["subscribed"] == ["overview:NIFTY"] and ack["errors"][0]["channel"] == "no:such"
        over = threading.Event()
        sio.on("overview:NIFTY", lambda d: over.set())
        assert over.wait(30)
    finally:
        sio.disconnect()


@pytest.mark.parametrize("auth", [None, {"token": "mandi_00000000_wrong"}])
def test_socketio_refuses_a_client_without_a_valid_token(live, auth):
    sio = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(live.url, auth=auth, wait_timeout=15)
    assert not sio.connected
