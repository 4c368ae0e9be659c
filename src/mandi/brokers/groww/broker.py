"""Groww behind the :class:`~mandi.execution.ports.Broker` port: the shared machinery of
:class:`~mandi.brokers.live.LiveBroker` spoken in Groww's API.

mandi's client order id travels in ``order_reference_id`` (:func:`wire.groww_tag`). Order
updates pushed on the feed name only Groww's order id: they trigger a fresh look at that order
(:meth:`GrowwBroker.handle_postback`); the order book is also polled while mandi has open
orders. Fills are the order's trades (``groww_trade_id`` is the fill id). Cancel, modify and
the trade list need the order's segment, read from the book. Every request uses the shared
session keeper; a session error ends the session (fail closed).
"""

from __future__ import annotations

from typing import Any

from mandi.brokers.groww.rest import GrowwRest
from mandi.brokers.groww.wire import (
    SEGMENT_CODE,
    groww_tag,
    mandi_token,
    order_params,
    order_report,
    order_status,
    trade_fill,
)
from mandi.brokers.live import LiveBroker, OrderJson
from mandi.core.errors import BrokerOrderError, ParseError
from mandi.core.money import to_paise
from mandi.execution.ports import (
    BrokerBalance,
    BrokerPosition,
    OrderRequest,
)
from mandi.model.instruments import AnyInstrument

Json = dict[str, Any]


class GrowwBroker(LiveBroker[GrowwRest]):
    name = "groww"
    title = "Groww"
    order_json = OrderJson(
        tag="order_reference_id", order_id="groww_order_id", filled="filled_quantity",
        status="order_status", message="remark",
        to_status=order_status, to_fill=trade_fill, to_report=order_report,
    )  # fmt: skip

    def _setup(self) -> None:
        self._segment_of: dict[str, str] = {}  # Groww order id → CASH | FNO

    def _authorize(self, rest: GrowwRest, access_token: str) -> None:
        rest.token = access_token

    def tag(self, client_order_id: str) -> str:
        return groww_tag(client_order_id)

    def _params(self, req: OrderRequest, inst: AnyInstrument, tag: str) -> Json:
        return order_params(req, inst, tag)

    def _send(self, params: Json) -> str:
        d = self.rest.place_order(params)
        oid = str(d.get("groww_order_id") or "")
        if not oid:
            raise BrokerOrderError(f"Groww place order: no order id in the answer {d!r}")
        self._segment_of[oid] = str(params["segment"])
        return oid

    def _order(self, order_id: str) -> Json:
        o = next((x for x in self._book() if self._oid_of(x) == order_id), None)
        if o is None:
            raise BrokerOrderError(f"Groww: GA004: order {order_id} not found")
        return o

    def _segment(self, order_id: str) -> str:
        seg = self._segment_of.get(order_id)
        return seg if seg is not None else str(self._order(order_id).get("segment") or "")

    def _modify(self, order_id: str, quantity: int | None, limit_price: int | None) -> None:
        o = self._order(order_id)
        price = limit_price / 100 if limit_price is not None else o.get("price")
        self.rest.modify_order(
            {
                "quantity": quantity if quantity is not None else int(o.get("quantity") or 0),
                "price": price,
                "trigger_price": None,
                "groww_order_id": order_id,
                "order_type": str(o.get("order_type") or "LIMIT"),
                "segment": str(o.get("segment") or ""),
            }
        )

    def _cancel(self, order_id: str) -> None:
        self.rest.cancel_order(order_id, self._segment(order_id))

    def _book(self) -> list[Json]:
        book = self.rest.orders()
        for o in book:
            self._segment_of[self._oid_of(o)] = str(o.get("segment") or "")
        return book

    def _trades(self, order_id: str) -> list[Json]:
        return self.rest.trades(order_id, self._segment(order_id))

    def handle_postback(self, order: Json) -> None:
        """An order update from the feed (``growwOrderId`` only): look at that order afresh."""
        oid = str(order.get("growwOrderId") or "")
        with self._lock:
            cid = next((c for c, t in self._tracked.items() if t.order_id == oid), None)
        if cid is not None:
            self._jobs.put(("sync", cid))

    def positions(self) -> list[BrokerPosition]:
        out = []
        for p in self.rest.positions():
            qty = int(p.get("quantity") or 0)
            ex, seg = str(p.get("exchange") or ""), str(p.get("segment") or "")
            if not qty or (ex, seg) not in SEGMENT_CODE:
                continue
            sym = str(p.get("trading_symbol") or "")
            inst = self._by_symbol(ex, seg, sym)
            if inst is None:
                continue
            price = p.get("net_price") or p.get("credit_price" if qty > 0 else "debit_price") or 0
            out.append(BrokerPosition(inst.token, sym, qty, float(to_paise(price))))
        return out

    def _by_symbol(self, exchange: str, segment: str, symbol: str) -> AnyInstrument | None:
        code = SEGMENT_CODE[(exchange, segment)]
        for i in self.master:
            if i.symbol == symbol and i.token & 0x7F == code:
                return i
        try:  # a symbol that is its own exchange token (an index)
            return self.master.get(mandi_token(exchange, segment, symbol))
        except ParseError:
            return None

    def balance(self) -> BrokerBalance:
        m = self.rest.margins()
        cash = to_paise(m.get("clear_cash") or 0)
        used = to_paise(m.get("net_margin_used") or 0)
        return BrokerBalance(cash, used, {"collateral_available": m.get("collateral_available")})


__all__ = ["GrowwBroker"]
