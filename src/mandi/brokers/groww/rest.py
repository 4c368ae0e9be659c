"""Groww's REST client (httpx, synchronous: used from worker threads and the CLI).

Every request carries the documented headers (``Authorization: Bearer <token>``, ``Accept:
application/json``, ``X-API-VERSION: 1.0``, an ``x-request-id``); answers are ``{"status":
"SUCCESS", "payload": ...}`` or a failure whose ``error.code`` becomes a mandi exception
(:func:`mandi.brokers.groww.wire.error_for`). The token endpoints (access token, socket token)
answer without the envelope. Requests are paced per Groww's limits (orders 10/s, the rest 20/s,
candles ``history_rate``).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from mandi.brokers.groww.wire import error_for
from mandi.brokers.http import Pacer, send

ROUTES = {
    "access": "/v1/token/api/access",
    "socket_token": "/v1/api/apex/v1/socket/token/create/",
    "profile": "/v1/user/detail",
    "place": "/v1/order/create",
    "modify": "/v1/order/modify",
    "cancel": "/v1/order/cancel",
    "orders": "/v1/order/list",
    "trades": "/v1/order/trades/{order_id}",
    "positions": "/v1/positions/user",
    "margins": "/v1/margins/detail/user",
    "candles": "/v1/historical/candles",
}
PAGE_SIZE = {"orders": 100, "trades": 50}  # Groww's largest pages


class GrowwRest:
    """The REST half of Groww's API. ``token`` is the access token (or, for the mint, the API
    key)."""

    def __init__(
        self,
        token: str,
        root: str = "https://api.groww.in",
        timeout: float = 7.0,
        history_rate: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token
        self.root = root.rstrip("/")
        self._http = httpx.Client(
            base_url=self.root, timeout=timeout, transport=transport, follow_redirects=False
        )
        self._pace = {"orders": Pacer(10.0), "history": Pacer(history_rate), "other": Pacer(20.0)}
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-API-VERSION": "1.0",
            "x-request-id": str(uuid.uuid4()),
            "User-Agent": "mandi",
        }

    def request(
        self,
        method: str,
        route: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        pace: str = "other",
        **path: str,
    ) -> Any:
        """One call; returns the answer's ``payload`` (or the whole answer when it has none)."""
        self._pace[pace].wait()
        self.requests += 1
        r = send(
            self._http, "Groww", what, self.root, method, ROUTES[route].format(**path),
            params={k: v for k, v in (params or {}).items() if v is not None} or None,
            json=body, headers=self._headers(),
        )  # fmt: skip
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code != 200 or not isinstance(doc, dict) or doc.get("status") == "FAILURE":
            raise error_for(r.status_code, doc, what)
        return doc.get("payload", doc)

    # --- session ----------------------------------------------------------------------------------
    def mint(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/v1/token/api/access`` (``self.token`` is the API key): the access token."""
        d = self.request("POST", "access", "login", body=body)
        if not isinstance(d, dict) or not d.get("token"):
            from mandi.core.errors import BrokerSessionError

            raise BrokerSessionError("Groww login: the answer holds no token")
        return d

    def profile(self) -> dict[str, Any]:
        return dict(self.request("GET", "profile", "profile"))

    def socket_token(self, public_key: str) -> dict[str, Any]:
        """A feed token bound to an nkey: ``{"token", "subscriptionId"}``."""
        d = dict(self.request("POST", "socket_token", "feed token", body={"socketKey": public_key}))
        if not d.get("token"):
            from mandi.core.errors import BrokerSessionError

            raise BrokerSessionError("Groww feed token: the answer holds no token")
        return d

    # --- orders -----------------------------------------------------------------------------------
    def place_order(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "place", "place order", body=params, pace="orders"))

    def modify_order(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "modify", "modify order", body=body, pace="orders"))

    def cancel_order(self, order_id: str, segment: str) -> dict[str, Any]:
        body = {"segment": segment, "groww_order_id": order_id}
        return dict(self.request("POST", "cancel", "cancel order", body=body, pace="orders"))

    def _pages(
        self, route: str, key: str, what: str, params: dict[str, Any], **path: str
    ) -> list[Any]:
        size = PAGE_SIZE[route]
        out: list[Any] = []
        for page in range(500):  # Groww allows pages 0..500
            d = self.request("GET", route, what, params={**params, "page": page, "page_size": size},
                             **path)  # fmt: skip
            rows = list((d or {}).get(key) or [])
            out += rows
            if len(rows) < size:
                break
        return out

    def orders(self, segment: str | None = None) -> list[dict[str, Any]]:
        return self._pages("orders", "order_list", "order book", {"segment": segment})

    def trades(self, order_id: str, segment: str) -> list[dict[str, Any]]:
        return self._pages("trades", "trade_list", "trades", {"segment": segment},
                           order_id=order_id)  # fmt: skip

    def positions(self, segment: str | None = None) -> list[dict[str, Any]]:
        d = self.request("GET", "positions", "positions", params={"segment": segment})
        return list((d or {}).get("positions") or [])

    def margins(self) -> dict[str, Any]:
        return dict(self.request("GET", "margins", "margins") or {})

    def candles(
        self, exchange: str, segment: str, groww_symbol: str, start: str, end: str, interval: str
    ) -> list[Any]:
        params = {
            "exchange": exchange,
            "segment": segment,
            "groww_symbol": groww_symbol,
            "start_time": start,
            "end_time": end,
            "candle_interval": interval,
        }
        d = self.request("GET", "candles", "historical candles", params=params, pace="history")
        return list((d or {}).get("candles") or [])
