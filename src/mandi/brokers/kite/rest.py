"""Kite Connect v3 REST client (httpx, synchronous: used from worker threads and the CLI).

Every request carries ``X-Kite-Version: 3`` and, once logged in, ``Authorization: token
api_key:access_token``. Answers are ``{"status": "success", "data": ...}`` or an error whose
``error_type`` becomes a mandi exception (:func:`mandi.brokers.kite.wire.error_for`). Requests
are paced per Kite's limits (orders 10/s, historical 3/s, everything else 10/s). Error messages
never contain the token or the secret (URLs are not echoed).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from mandi.brokers.http import Pacer, send
from mandi.brokers.kite.wire import checksum, error_for
from mandi.brokers.sender import RequestTemplate
from mandi.core.errors import BrokerSessionError

VERSION = "3"


class KiteRest:
    """The REST half of Kite Connect. ``access_token`` may be set later (after login)."""

    def __init__(
        self,
        api_key: str,
        access_token: str = "",
        root: str = "https://api.kite.trade",
        timeout: float = 7.0,
        history_rate: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.root = root.rstrip("/")
        self._http = httpx.Client(
            base_url=self.root, timeout=timeout, transport=transport, follow_redirects=False
        )
        self._pace = {"orders": Pacer(10.0), "history": Pacer(history_rate), "other": Pacer(10.0)}
        self.timeout_s = timeout
        self.requests = 0

    @property
    def order_pacer(self) -> Pacer:
        """Kite's order rate limit (10/s), shared with the order sender's fast path."""
        return self._pace["orders"]

    def close(self) -> None:
        self._http.close()

    # --- plumbing ---------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"X-Kite-Version": VERSION, "User-Agent": "mandi"}
        if self.access_token:
            h["Authorization"] = f"token {self.api_key}:{self.access_token}"
        return h

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        pace: str = "other",
        raw: bool = False,
    ) -> Any:
        """One call; returns ``data`` of the answer (the body text with ``raw``)."""
        self._pace[pace].wait()
        self.requests += 1
        r = send(
            self._http, "Kite", what, self.root, method, path,
            params=params, data=data, headers=self._headers(),
        )  # fmt: skip
        if raw and r.status_code == 200:
            return r.text
        return answer(r.status_code, r.content, what)

    def order_template(self, variety: str = "regular") -> RequestTemplate:
        """``POST /orders/{variety}`` as a request template (the order sender's fast path;
        rebuilt by the caller when the access token changes)."""
        headers = {
            **self._headers(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "*/*",
        }
        return RequestTemplate.build("POST", f"{self.root}/orders/{variety}", headers)

    # --- session ----------------------------------------------------------------------------------
    def create_session(self, request_token: str, api_secret: str) -> dict[str, Any]:
        """``POST /session/token``: exchange a request token for the day's access token."""
        d = self.request(
            "POST",
            "/session/token",
            "login",
            data={
                "api_key": self.api_key,
                "request_token": request_token,
                "checksum": checksum(self.api_key, request_token, api_secret),
            },
        )
        if not isinstance(d, dict) or not d.get("access_token"):
            raise BrokerSessionError("Kite login: the answer has no access token")
        self.access_token = str(d["access_token"])
        return d

    def invalidate_session(self) -> None:
        """``DELETE /session/token``: log out (the token stops working at once)."""
        self.request(
            "DELETE",
            "/session/token",
            "logout",
            params={"api_key": self.api_key, "access_token": self.access_token},
        )

    def profile(self) -> dict[str, Any]:
        return dict(self.request("GET", "/user/profile", "profile"))

    def margins(self) -> dict[str, Any]:
        return dict(self.request("GET", "/user/margins", "margins"))

    # --- market data ------------------------------------------------------------------------------
    def instruments(self, exchange: str = "") -> str:
        """The instrument dump (CSV text), all exchanges or one."""
        path = f"/instruments/{exchange}" if exchange else "/instruments"
        return str(self.request("GET", path, "instrument dump", raw=True))

    def historical(
        self, token: int, interval: str, start: str, end: str, oi: bool = True
    ) -> list[list[Any]]:
        d = self.request(
            "GET",
            f"/instruments/historical/{token}/{interval}",
            "historical candles",
            params={"from": start, "to": end, "oi": 1 if oi else 0, "continuous": 0},
            pace="history",
        )
        return list((d or {}).get("candles") or [])

    # --- orders -----------------------------------------------------------------------------------
    def place_order(self, params: dict[str, str], variety: str = "regular") -> str:
        d = self.request("POST", f"/orders/{variety}", "place order", data=params, pace="orders")
        return str(d["order_id"])

    def modify_order(self, order_id: str, params: dict[str, str], variety: str = "regular") -> str:
        d = self.request(
            "PUT", f"/orders/{variety}/{order_id}", "modify order", data=params, pace="orders"
        )
        return str(d["order_id"])

    def cancel_order(self, order_id: str, variety: str = "regular") -> str:
        d = self.request("DELETE", f"/orders/{variety}/{order_id}", "cancel order", pace="orders")
        return str(d["order_id"])

    def orders(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/orders", "orders") or [])

    def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/orders/{order_id}", "order history") or [])

    def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/orders/{order_id}/trades", "order trades") or [])

    def trades(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/trades", "trades") or [])

    def positions(self) -> dict[str, Any]:
        return dict(self.request("GET", "/portfolio/positions", "positions") or {})

    def holdings(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/portfolio/holdings", "holdings") or [])


def answer(status: int, content: bytes, what: str) -> Any:
    """``data`` of a Kite answer (HTTP ``status``, body ``content``), else its error."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        body = None
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        raise error_for(status, body, what)
    return body.get("data")
