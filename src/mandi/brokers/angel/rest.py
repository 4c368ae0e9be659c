"""Angel One SmartAPI REST client (httpx, synchronous: used from worker threads and the CLI).

Every request carries SmartAPI's documented headers (``Content-Type``/``Accept``
``application/json``, ``X-UserType: USER``, ``X-SourceID: WEB``, ``X-ClientLocalIP``,
``X-ClientPublicIP``, ``X-MACAddress``, ``X-PrivateKey`` = the API key) and, once logged in,
``Authorization: Bearer <jwt>``. Answers are ``{"status": true, "data": ...}`` or an error whose
``errorcode`` becomes a mandi exception (:func:`mandi.brokers.angel.wire.error_for`). Requests
are paced per SmartAPI's limits (orders 20/s, candles 3/s, everything else 10/s).
"""

from __future__ import annotations

from typing import Any

import httpx

from mandi.brokers.angel.wire import error_for
from mandi.brokers.http import Pacer, send

_PATH = "/rest/secure/angelbroking"
ROUTES = {
    "login": "/rest/auth/angelbroking/user/v1/loginByPassword",
    "refresh": "/rest/auth/angelbroking/jwt/v1/generateTokens",
    "logout": f"{_PATH}/user/v1/logout",
    "profile": f"{_PATH}/user/v1/getProfile",
    "rms": f"{_PATH}/user/v1/getRMS",
    "place": f"{_PATH}/order/v1/placeOrder",
    "modify": f"{_PATH}/order/v1/modifyOrder",
    "cancel": f"{_PATH}/order/v1/cancelOrder",
    "orders": f"{_PATH}/order/v1/getOrderBook",
    "trades": f"{_PATH}/order/v1/getTradeBook",
    "positions": f"{_PATH}/order/v1/getPosition",
    "candles": f"{_PATH}/historical/v1/getCandleData",
}


class AngelRest:
    """The REST half of SmartAPI. ``jwt`` may be set later (after login)."""

    def __init__(
        self,
        api_key: str,
        jwt: str = "",
        root: str = "https://apiconnect.angelone.in",
        timeout: float = 7.0,
        history_rate: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.jwt = jwt
        self.root = root.rstrip("/")
        self._http = httpx.Client(
            base_url=self.root, timeout=timeout, transport=transport, follow_redirects=False
        )
        self._pace = {"orders": Pacer(20.0), "history": Pacer(history_rate), "other": Pacer(10.0)}
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-UserType": "USER",
            "X-SourceID": "WEB",
            "X-ClientLocalIP": "127.0.0.1",
            "X-ClientPublicIP": "127.0.0.1",
            "X-MACAddress": "00:00:00:00:00:00",
            "X-PrivateKey": self.api_key,
            "User-Agent": "mandi",
        }
        if self.jwt:
            h["Authorization"] = f"Bearer {self.jwt}"
        return h

    def request(
        self, method: str, route: str, what: str, body: Any = None, pace: str = "other"
    ) -> Any:
        """One call; returns ``data`` of the answer."""
        self._pace[pace].wait()
        self.requests += 1
        r = send(
            self._http, "Angel One", what, self.root, method, ROUTES[route],
            json=body, headers=self._headers(),
        )  # fmt: skip
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code != 200 or not isinstance(doc, dict) or doc.get("status") is not True:
            raise error_for(r.status_code, doc, what)
        return doc.get("data")

    # --- session ----------------------------------------------------------------------------------
    def login(self, client_code: str, pin: str, totp: str) -> dict[str, Any]:
        d = self.request(
            "POST", "login", "login", {"clientcode": client_code, "password": pin, "totp": totp}
        )
        self.jwt = str(d["jwtToken"]).removeprefix("Bearer ")
        return dict(d)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """``generateTokens``: a new JWT and feed token from the refresh token."""
        d = self.request("POST", "refresh", "token refresh", {"refreshToken": refresh_token})
        self.jwt = str(d["jwtToken"]).removeprefix("Bearer ")
        return dict(d)

    def logout(self, client_code: str) -> None:
        self.request("POST", "logout", "logout", {"clientcode": client_code})

    def profile(self) -> dict[str, Any]:
        return dict(self.request("GET", "profile", "profile"))

    def rms(self) -> dict[str, Any]:
        return dict(self.request("GET", "rms", "RMS limits") or {})

    # --- orders -----------------------------------------------------------------------------------
    def place_order(self, params: dict[str, str]) -> str:
        d = self.request("POST", "place", "place order", params, pace="orders")
        return str(d["orderid"])

    def modify_order(self, params: dict[str, str]) -> str:
        d = self.request("POST", "modify", "modify order", params, pace="orders")
        return str(d["orderid"])

    def cancel_order(self, order_id: str, variety: str = "NORMAL") -> str:
        body = {"variety": variety, "orderid": order_id}
        d = self.request("POST", "cancel", "cancel order", body, pace="orders")
        return str(d["orderid"])

    def orders(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "orders", "order book") or [])

    def trades(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "trades", "trade book") or [])

    def positions(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "positions", "positions") or [])

    def candles(self, exchange: str, token: str, interval: str, start: str, end: str) -> list[Any]:
        body = {
            "exchange": exchange,
            "symboltoken": token,
            "interval": interval,
            "fromdate": start,
            "todate": end,
        }
        return list(self.request("POST", "candles", "historical candles", body, "history") or [])
