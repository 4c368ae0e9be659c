"""Kite behind the :class:`~mandi.execution.ports.Broker` port: the shared machinery of
:class:`~mandi.brokers.live.LiveBroker` (worker, tags, reconciliation, fills, a dead session)
spoken in Kite Connect v3.

mandi's client order id travels in Kite's ``tag`` (:func:`wire.kite_tag`); postbacks arrive on
the ticker; fills are Kite's trades (``/orders/{id}/trades``). Kite's ``InputException`` /
``OrderException`` reject, a ``TokenException`` ends the session.
"""

from __future__ import annotations

from typing import Any

from mandi.brokers.http import form_encode
from mandi.brokers.kite.rest import KiteRest, answer
from mandi.brokers.kite.wire import (
    kite_exchange,
    kite_tag,
    order_params,
    order_report,
    order_status,
    rupees,
    trade_fill,
)
from mandi.brokers.live import LiveBroker, OrderJson
from mandi.brokers.sender import RequestTemplate
from mandi.core.money import to_paise
from mandi.execution.ports import (
    BrokerBalance,
    BrokerFill,
    BrokerPosition,
    OrderRequest,
)
from mandi.model.instruments import AnyInstrument

Json = dict[str, Any]


class KiteBroker(LiveBroker[KiteRest]):
    name = "kite"
    title = "Kite"
    order_json = OrderJson(
        tag="tag", order_id="order_id", filled="filled_quantity",
        status="status", message="status_message",
        to_status=order_status, to_fill=trade_fill, to_report=order_report,
    )  # fmt: skip

    def _setup(self) -> None:
        self._template: RequestTemplate | None = None  # the fast path's, for this access token
        self._template_token = ""

    def _authorize(self, rest: KiteRest, access_token: str) -> None:
        rest.access_token = access_token

    def tag(self, client_order_id: str) -> str:
        return kite_tag(client_order_id)

    def _params(self, req: OrderRequest, inst: AnyInstrument, tag: str) -> Json:
        return order_params(req, kite_exchange(inst), tag)

    def _send(self, params: Json) -> str:
        return self.rest.place_order(params)

    # the fast path: POST /orders/regular written by the order sender on the node's loop
    def _order_url(self) -> str:
        return f"{self.rest.root}/orders/regular"

    def _order_request(self, params: Json) -> tuple[RequestTemplate, bytes]:
        token = self.rest.access_token
        if self._template is None or self._template_token != token:
            self._template, self._template_token = self.rest.order_template(), token
        return self._template, form_encode(params)

    def _order_answer(self, status: int, body: bytes) -> str:
        return str(answer(status, body, "place order")["order_id"])

    def _order_pace(self) -> float:
        return self.rest.order_pacer.reserve()

    def _timeout_s(self) -> float:
        return self.rest.timeout_s

    def _trades_by_order(self) -> dict[str, list[Json]] | None:
        out: dict[str, list[Json]] = {}
        for t in self.rest.trades():
            out.setdefault(str(t.get("order_id") or ""), []).append(t)
        return out

    def _modify(self, order_id: str, quantity: int | None, limit_price: int | None) -> None:
        p: dict[str, str] = {}
        if quantity is not None:
            p["quantity"] = str(quantity)
        if limit_price is not None:
            p["price"] = rupees(limit_price)
        self.rest.modify_order(order_id, p)

    def _cancel(self, order_id: str) -> None:
        self.rest.cancel_order(order_id)

    def _book(self) -> list[Json]:
        return self.rest.orders()

    def _trades(self, order_id: str) -> list[Json]:
        return self.rest.order_trades(order_id)

    def positions(self) -> list[BrokerPosition]:
        net = self.rest.positions().get("net") or []
        return [
            BrokerPosition(
                int(p["instrument_token"]),
                str(p["tradingsymbol"]),
                int(p["quantity"]),
                float(to_paise(p.get("average_price") or 0)),
            )
            for p in net
            if int(p.get("quantity") or 0)
        ]

    def balance(self) -> BrokerBalance:
        m = self.rest.margins()
        eq = m.get("equity") or {}
        cash = to_paise((eq.get("available") or {}).get("live_balance") or eq.get("net") or 0)
        used = to_paise((eq.get("utilised") or {}).get("debits") or 0)
        return BrokerBalance(cash, used, {"net": eq.get("net")})


__all__ = ["BrokerFill", "KiteBroker"]
