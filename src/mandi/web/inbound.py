"""Inbound signal webhooks: alerts from TradingView, ChartInk or any script become trading signals
that go through the signal manager, the risk manager and execution like a strategy's.

``POST /api/v1/webhooks/signal`` (see :mod:`mandi.web.routers.webhooks`) needs, together:

* a ``trade`` API token (``Authorization: Bearer``), rate-limited like orders;
* an HMAC-SHA256 signature of the raw body with the shared ``webhooks.secret``, in
  ``X-Mandi-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`` — a body changed
  on the way, or a signature from another key, is refused;
* freshness and no replay: ``t`` within ``webhooks.tolerance_s`` of the server's clock, and a
  signature is accepted once (a captured request replayed within the window is refused; one
  replayed later is stale).

Bodies (JSON):

* TradingView style — ``{"symbol": "NIFTY", "action": "buy", "price": 24210.5, "confidence": 0.7,
  "quantity": 65, "strategy": "tv_breakout", "id": "..."}`` (``ticker`` / ``side`` accepted for
  ``symbol`` / ``action``; only ``symbol`` and ``action`` are required);
* ChartInk style — ``{"stocks": "RELIANCE,TCS", "trigger_prices": "1401.5,3400.2",
  "triggered_at": "2:34 pm", "scan_name": "..."}``: one signal per stock, the side being
  ``webhooks.chartink_action``.

TradingView and ChartInk cannot compute a signature themselves: a relay you run (or a script with
``openssl dgst -hmac``, see the README) signs and forwards their alerts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from mandi.core.errors import MandiError

SIGNATURE_HEADER = "X-Mandi-Signature"
_SIG = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")
_NAME = re.compile(r"[^A-Za-z0-9_]+")


class InboundError(MandiError):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    """The ``X-Mandi-Signature`` value for ``body`` (what a relay sends)."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, now_s: float, tolerance_s: float) -> str:
    """Check the signature and its age; returns the signature (the replay key)."""
    m = _SIG.match((header or "").strip())
    if m is None:
        raise InboundError(
            401, "bad_signature", f"{SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex HMAC>"
        )
    t, given = int(m.group(1)), m.group(2)
    want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, given):
        raise InboundError(401, "bad_signature", "the signature does not match the body")
    if abs(now_s - t) > tolerance_s:
        raise InboundError(
            401,
            "stale_signature",
            f"the signature is older than {tolerance_s:g} s (or clocks differ)",
        )
    return given


class ReplayGuard:
    """Signatures seen within the tolerance window: each is accepted once."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: dict[str, float] = {}
        self.max_entries = max_entries
        self.refused = 0

    def first_use(self, key: str, now_s: float, ttl_s: float) -> bool:
        if len(self._seen) >= self.max_entries:
            self._seen = {k: v for k, v in self._seen.items() if v > now_s}
        expires = self._seen.get(key)
        if expires is not None and expires > now_s:
            self.refused += 1
            return False
        self._seen[key] = now_s + 2 * ttl_s
        return True


@dataclass(frozen=True)
class AlertSignal:
    """One signal asked for by an alert (price in paise, 0 = the instrument's last price)."""

    symbol: str
    action: str
    price: int = 0
    confidence: float = 0.6
    quantity: int = 0
    exchange: str | None = None
    key: str = ""  # makes the signal id: the alert's id, or the signature


def source_name(text: Any) -> str:
    """The strategy id signals carry: ``webhook`` or ``webhook_<alert name>``."""
    clean = _NAME.sub("_", str(text or "")).strip("_")[:40]
    return f"webhook_{clean}" if clean else "webhook"


def parse(data: Any, chartink_action: str, key: str) -> tuple[str, list[AlertSignal]]:
    """The alert body as (strategy id, signals); :class:`InboundError` 422 naming the field."""
    if not isinstance(data, dict):
        raise InboundError(422, "invalid_parameter", "the body must be a JSON object", "body")
    if "stocks" in data:  # ChartInk
        stocks = [s.strip().upper() for s in str(data.get("stocks") or "").split(",") if s.strip()]
        if not stocks or len(stocks) > 50:
            raise InboundError(422, "invalid_parameter", "stocks: 1 to 50 symbols", "body.stocks")
        prices = [p.strip() for p in str(data.get("trigger_prices") or "").split(",")]
        when = str(data.get("triggered_at") or "")[:40]
        out = [
            AlertSignal(
                s,
                chartink_action,
                _paise(prices[i] if i < len(prices) else ""),
                0.6,
                0,
                None,
                f"{key}|{when}|{s}",
            )
            for i, s in enumerate(stocks)
        ]
        return source_name(data.get("scan_name") or data.get("alert_name") or "chartink"), out
    symbol = data.get("symbol", data.get("ticker"))
    if not isinstance(symbol, str) or not 1 <= len(symbol) <= 64:
        raise InboundError(422, "invalid_parameter", "symbol: a trading symbol", "body.symbol")
    action = str(data.get("action", data.get("side", ""))).upper()
    if action not in ("BUY", "SELL"):
        raise InboundError(422, "invalid_parameter", "action: buy or sell", "body.action")
    conf = data.get("confidence", 0.6)
    if not isinstance(conf, int | float) or not 0 <= conf <= 1:
        raise InboundError(422, "invalid_parameter", "confidence: 0 to 1", "body.confidence")
    qty = data.get("quantity", 0)
    if not isinstance(qty, int) or isinstance(qty, bool) or not 0 <= qty <= 10_000_000:
        raise InboundError(422, "invalid_parameter", "quantity: whole shares", "body.quantity")
    exchange = data.get("exchange")
    if exchange is not None and exchange not in ("NSE", "BSE"):
        raise InboundError(422, "invalid_parameter", "exchange: NSE or BSE", "body.exchange")
    alert_id = data.get("id")
    sig = AlertSignal(
        symbol.upper().removeprefix("NSE:").removeprefix("BSE:"),
        action,
        _paise(data.get("price")),
        float(conf),
        qty,
        exchange,
        str(alert_id)[:100] if alert_id is not None else key,
    )
    return source_name(data.get("strategy") or data.get("alert_name")), [sig]


def _paise(v: Any) -> int:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0
    return round(x * 100) if 0 < x < 1e9 else 0


def loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise InboundError(422, "bad_json", "the body is not valid JSON", "body") from None
