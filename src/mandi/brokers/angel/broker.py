"""Angel One behind the :class:`~mandi.execution.ports.Broker` port: the shared machinery of
:class:`~mandi.brokers.live.LiveBroker` spoken in SmartAPI.

mandi's client order id travels in ``ordertag`` (:func:`wire.angel_tag`); SmartStream carries no
order updates, so the order book is polled (``poll_interval_s``) while mandi has open orders;
fills are the trade book's rows of the order (``fillid`` is the fill id). Every request uses the
shared :class:`~mandi.brokers.angel.keeper.SessionKeeper`, which refreshes the JWT before it
expires; a refused refresh or a token error ends the session (fail closed).
"""

from __future__ import annotations

from typing import Any

from mandi.brokers.angel.rest import AngelRest
from mandi.brokers.angel.wire import (
    EXCHANGE_TYPE,
    angel_tag,
    mandi_token,
    order_params,
    order_report,
    order_status,
    rupees,
    trade_fill,
)
from mandi.brokers.live import LiveBroker, OrderJson
from mandi.core.money import to_paise
from mandi.execution.ports import (
    BrokerBalance,
    BrokerPosition,
    OrderRequest,
)
from mandi.model.instruments import AnyInstrument

Json = dict[str, Any]


class AngelBroker(LiveBroker[AngelRest]):
    name = "angel"
    title = "Angel One"
    order_json = OrderJson(
        tag="ordertag", order_id="orderid", filled="filledshares",
        status="orderstatus", message="text",
        to_status=order_status, to_fill=trade_fill, to_report=order_report,
    )  # fmt: skip

    def _authorize(self, rest: AngelRest, access_token: str) -> None:
        rest.jwt = access_token

    def tag(self, client_order_id: str) -> str:
        return angel_tag(client_order_id)

    def _params(self, req: OrderRequest, inst: AnyInstrument, tag: str) -> Json:
        return order_params(req, inst, tag)

    def _send(self, params: Json) -> str:
        return self.rest.place_order(params)

    def _modify(self, order_id: str, quantity: int | None, limit_price: int | None) -> None:
        o = next((x for x in self._book() if str(x.get("orderid")) == order_id), None)
        if o is None:
            from mandi.core.errors import BrokerOrderError

            raise BrokerOrderError(f"Angel One modify order: AB1013: order {order_id} not found")
        body = {
            "variety": str(o.get("variety") or "NORMAL"),
            "orderid": order_id,
            "ordertype": str(o.get("ordertype") or "LIMIT"),
            "producttype": str(o.get("producttype") or "INTRADAY"),
            "duration": str(o.get("duration") or "DAY"),
            "price": rupees(limit_price) if limit_price is not None else str(o.get("price") or 0),
            "quantity": str(quantity if quantity is not None else o.get("quantity")),
            "tradingsymbol": str(o.get("tradingsymbol") or ""),
            "symboltoken": str(o.get("symboltoken") or ""),
            "exchange": str(o.get("exchange") or ""),
        }
        self.rest.modify_order(body)

    def _cancel(self, order_id: str) -> None:
        self.rest.cancel_order(order_id)

    def _book(self) -> list[Json]:
        return self.rest.orders()

    def _trades(self, order_id: str) -> list[Json]:
        return [t for t in self.rest.trades() if str(t.get("orderid")) == order_id]

    def positions(self) -> list[BrokerPosition]:
        out = []
        for p in self.rest.positions():
            qty = int(p.get("netqty") or 0)
            seg = str(p.get("exchange") or "")
            if not qty or seg not in EXCHANGE_TYPE:
                continue
            out.append(
                BrokerPosition(
                    mandi_token(EXCHANGE_TYPE[seg], p["symboltoken"]),
                    str(p.get("tradingsymbol") or ""),
                    qty,
                    float(to_paise(p.get("avgnetprice") or p.get("netprice") or 0)),
                )
            )
        return out

    def balance(self) -> BrokerBalance:
        m = self.rest.rms()
        cash = to_paise(m.get("availablecash") or m.get("net") or 0)
        used = to_paise(m.get("utiliseddebits") or 0)
        return BrokerBalance(cash, used, {"net": m.get("net")})


__all__ = ["AngelBroker"]
