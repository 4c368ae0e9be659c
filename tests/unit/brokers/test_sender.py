"""The order sender (mandi.brokers.sender) against real loopback servers: requests it writes are
valid HTTP/1.1 (parsed by h11 as a server), connections are kept alive and reused, answers are
read whatever their framing, and a failure says whether the order may have left (unknown:
reconcile) or certainly did not (not sent: may go another way)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mandi.brokers.http import form_encode
from mandi.brokers.sender import NotSent, OrderSender, RequestTemplate
from mandi.core.errors import BrokerError, BrokerNetworkError

HEADERS = {"X-Kite-Version": "3", "Authorization": "token k:t", "Content-Type": "x"}
Outcome = tuple[int, bytes, BrokerError | None]
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(
    reader: asyncio.StreamReader, conn: h11.Connection
) -> tuple[h11.Request, bytes] | None:
    """The next request on a connection, parsed by h11 (None: the client closed it)."""
    req, body = None, b""
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data:
                return None
            continue
        if isinstance(ev, h11.Request):
            req = ev
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            assert req is not None
            return req, body
        elif isinstance(ev, h11.ConnectionClosed):
            return None


async def serve(script: Script) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/orders/regular"


async def send(sender: OrderSender, body: bytes, template: RequestTemplate) -> Outcome:
    done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    sender.send(template, body, lambda s, b, e: done.set_result((s, b, e)))
    return await asyncio.wait_for(done, 20)


def test_requests_are_valid_http_and_reuse_kept_alive_connections() -> None:
    seen: list[tuple[h11.Request, bytes]] = []
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        conn = h11.Connection(h11.SERVER)
        while (got := await read_request(reader, conn)) is not None:
            seen.append(got)
            n = len(seen)
            body = b'{"status":"success","data":{"order_id":"%d"}}' % n
            if n % 2:  # a Content-Length answer, then a chunked one: both are read
                head = [("Content-Length", str(len(body)))]
                writer.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
                writer.write(conn.send(h11.Data(data=body)) or b"")
            else:
                head = [("Transfer-Encoding", "chunked")]
                writer.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
                for part in (body[:7], body[7:]):
                    writer.write(conn.send(h11.Data(data=part)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            conn.start_next_cycle()
        writer.close()

    async def main() -> None:
        server, url = await serve(answer)
        sender = OrderSender(url, warm=1, max_connections=1, timeout_s=10)
        sender.start(asyncio.get_running_loop())
        template = RequestTemplate.build("POST", url, HEADERS)
        try:
            for i in range(1, 6):
                body = form_encode({"tradingsymbol": "INFY", "quantity": str(i), "tag": "t x&y"})
                status, answer_, err = await send(sender, body, template)
                assert (status, err) == (200, None)
                assert answer_ == b'{"status":"success","data":{"order_id":"%d"}}' % i
        finally:
            sender.close()
            server.close()
        assert sender.opened == 1 and connections == 1  # one connection, kept alive
        assert sender.written == 5

    asyncio.run(main())
    assert len(seen) == 5
    req, body = seen[2]
    assert (req.method, req.target) == (b"POST", b"/orders/regular")
    headers = dict(req.headers)
    assert headers[b"x-kite-version"] == b"3" and headers[b"authorization"] == b"token k:t"
    assert body == b"tradingsymbol=INFY&quantity=3&tag=t+x%26y"


def test_a_connection_lost_in_flight_is_unknown_and_no_answer_in_time_too() -> None:
    """The request left: its outcome is unknown (BrokerNetworkError), never 'not sent'."""
    requests = 0

    async def drop_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        if await read_request(reader, h11.Connection(h11.SERVER)) is None:
            return
        requests += 1
        if requests == 1:
            writer.transport.abort()  # the order reached the broker; the answer is lost
        else:
            await asyncio.sleep(30)  # no answer at all

    async def main() -> None:
        server, url = await serve(drop_then_hang)
        sender = OrderSender(url, warm=1, timeout_s=0.5)
        sender.start(asyncio.get_running_loop())
        template = RequestTemplate.build("POST", url, HEADERS)
        try:
            _, _, lost = await send(sender, b"a=1", template)
            _, _, late = await send(sender, b"a=2", template)
        finally:
            sender.close()
            server.close()
        for err in (lost, late):
            assert isinstance(err, BrokerNetworkError) and not isinstance(err, NotSent)
        assert "no answer in 0.5 s" in str(late)

    asyncio.run(main())
    assert requests == 2


def test_nothing_listening_means_not_sent() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/orders/regular"

    async def main() -> Outcome:
        sender = OrderSender(url, warm=1, timeout_s=2)
        sender.start(asyncio.get_running_loop())
        try:
            return await send(sender, b"a=1", RequestTemplate.build("POST", url, HEADERS))
        finally:
            sender.close()

    status, _, err = asyncio.run(main())
    assert status == 0 and isinstance(err, NotSent)


def test_a_proxy_or_another_scheme_leaves_orders_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OrderSender.usable("https://api.kite.trade/orders/regular")
    assert not OrderSender.usable("ftp://api.kite.trade/orders")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert not OrderSender.usable("https://api.kite.trade/orders/regular")
    with pytest.raises(ValueError, match="not an http"):
        OrderSender("ws://127.0.0.1/ws")


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=6))
def test_form_encode_is_urlencode(params: dict[str, str]) -> None:
    assert form_encode(params) == urlencode(params).encode()
