"""Groww's live feed: NATS over a websocket, protobuf payloads — the shared
:class:`~mandi.brokers.ticker.WsTicker` (shards, health, reconnects, a dead session) speaking
Groww's protocol.

Per connection: a fresh ed25519 user key (an NATS "nkey", with the ``nkeys`` package) and a
feed token bound to it (``/v1/api/apex/v1/socket/token/create/``, fetched off the event loop);
then the server's ``INFO`` (with a nonce), the client's ``CONNECT`` carrying the token and the
nonce signed with the key, ``PING`` → ``PONG``. A refused token (``-ERR 'Authorization
Violation'``, or a 401 on the feed-token call) ends the session: fail closed. Each instrument is
one subject per kind of data (:func:`~mandi.brokers.groww.wire.topics`: the price, and the book
in ``full`` mode; an index's value), subscribed with its own NATS ``sid``; order updates come on
the subscription's two order subjects (``on_order``). The server's ``PING`` is answered with
``PONG``; the client pings every ``heartbeat_s``. Groww allows 1,000 instruments a connection.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from mandi.brokers.groww import nats
from mandi.brokers.groww.frames import FrameDecoder
from mandi.brokers.groww.wire import FeedKey, order_topics, topics
from mandi.brokers.ticker import WsTicker
from mandi.core.errors import BrokerSessionError, ParseError
from mandi.execution.live import FeedHealth
from mandi.model.market import Tick

log = logging.getLogger(__name__)

#: public key (text) → {"token", "subscriptionId"}: a feed token bound to that key
FeedToken = Callable[[str], dict[str, Any]]


def new_nkey() -> Any:
    """A fresh NATS user key pair (ed25519)."""
    import nkeys

    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


class GrowwTicker(WsTicker):
    name = "groww"
    title = "Groww"
    ping_text = nats.PING_CMD

    def __init__(
        self,
        ws_url: str,
        feed_token: FeedToken,
        key_of: Callable[[int], FeedKey | None],
        *,
        max_connections: int = 1,
        tokens_per_connection: int = 1000,
        health: FeedHealth | None = None,
        backoff_max_s: float = 30.0,
        heartbeat_s: float = 10.0,
        follow_orders: bool = True,
        greet_timeout_s: float = 10.0,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(
            ws_url,
            max_connections=max_connections,
            tokens_per_connection=tokens_per_connection,
            health=health,
            backoff_max_s=backoff_max_s,
            now_ns=now_ns,
        )
        self.feed_token = feed_token
        self.key_of = key_of  # mandi token → where its data comes from
        self.ping_interval_s = heartbeat_s
        self.follow_orders = follow_orders
        self.greet_timeout_s = greet_timeout_s
        self.decoder = FrameDecoder()
        self.decoded = 0
        self._creds: dict[int, tuple[Any, str, str]] = {}  # shard → (nkey, token, subscription)
        self._streams: dict[int, nats.NatsStream] = {}
        self._subs: dict[int, dict[str, int]] = {}  # shard → subject → sid (this connection)
        # shard → sid → subject of every subscription this connection made (kept after UNSUB:
        # messages in flight are not corruption); a MSG that fits none of them is
        self._sids: dict[int, dict[bytes, bytes]] = {}
        self._next_sid = 0
        self.server_errors = 0  # the server's -ERR messages

    @property
    def frames(self) -> int:
        return self.decoded

    # --- connecting -------------------------------------------------------------------------------
    async def _open(self, shard: int) -> tuple[str, dict[str, str]]:
        kp = new_nkey()
        d = await asyncio.to_thread(self.feed_token, kp.public_key.decode())
        self._creds[shard] = (kp, str(d["token"]), str(d.get("subscriptionId") or ""))
        return self.ws_url, {}

    async def _greet(self, ws: Any, shard: int) -> None:
        """INFO → CONNECT (token + signed nonce) → PING → PONG; then the order subjects."""
        stream = self._streams[shard] = nats.NatsStream(server=True)
        self._subs[shard] = {}
        self._sids[shard] = {}
        kp, token, subscription = self._creds[shard]
        async with asyncio.timeout(self.greet_timeout_s):
            info = await self._expect(ws, stream, nats.INFO)
            nonce = str(info[1].get("nonce") or "")
            sig = base64.b64encode(kp.sign(nonce.encode())).decode()
            await ws.send(nats.connect(token, sig) + nats.PING_CMD)
            await self._expect(ws, stream, nats.PONG)
        if self.follow_orders and shard == 0 and subscription:
            subs = []
            for subject in order_topics(subscription):
                self.decoder.route(subject, 0, "", "order")
                subs.append(self._sub(shard, subject))
            await ws.send(b"".join(subs))

    async def _expect(self, ws: Any, stream: nats.NatsStream, want: str) -> tuple[Any, ...]:
        while True:
            raw = await ws.recv()
            ops, error = stream.feed(raw if isinstance(raw, bytes) else raw.encode())
            if error:
                raise ParseError(f"Groww feed greeting: {error}")
            for op in ops:
                if op[0] == want:
                    return op
                if op[0] == nats.ERR:
                    if "authorization" in op[1].lower() or "authentication" in op[1].lower():
                        raise BrokerSessionError(f"Groww refused the feed token ({op[1]})")
                    raise ParseError(f"Groww feed greeting: server error {op[1]!r}")
                if op[0] == nats.PING:
                    await ws.send(nats.PONG_CMD)

    # --- subscriptions ----------------------------------------------------------------------------
    def _sub(self, shard: int, subject: str) -> bytes:
        subs = self._subs.setdefault(shard, {})
        if subject in subs:
            return b""
        self._next_sid += 1
        subs[subject] = self._next_sid
        self._sids.setdefault(shard, {})[str(self._next_sid).encode()] = subject.encode()
        return nats.sub(subject, self._next_sid)

    def _subscribe_messages(self, tokens: list[int], mode: str) -> list[bytes]:
        out = []
        for t in tokens:
            key = self.key_of(t)
            if key is None:
                log.warning("Groww ticker: token %d is not in Groww's instruments", t)
                continue
            for subject, what in topics(key, mode):
                self.decoder.route(subject, t, key.exchange, what)
                out.append(self._sub(self.shard_of.get(t, 0), subject))
        msg = b"".join(out)
        return [msg] if msg else []

    def _unsubscribe_messages(self, tokens: list[int], modes: dict[int, str]) -> list[bytes]:
        out = []
        for t in tokens:
            key = self.key_of(t)
            if key is None:
                continue
            for subject, _ in topics(key, "full"):
                self.decoder.unroute(subject)
                for subs in self._subs.values():
                    sid = subs.pop(subject, None)
                    if sid is not None:
                        out.append(nats.unsub(sid))
        msg = b"".join(out)
        return [msg] if msg else []

    # --- messages ---------------------------------------------------------------------------------
    def _handle(self, raw: bytes | str, shard: int = 0) -> None:
        super()._handle(raw if isinstance(raw, bytes) else raw.encode(), shard)

    def _decode_from(self, shard: int, raw: bytes, now: int) -> list[Tick]:
        stream = self._streams.get(shard)
        if stream is None:
            raise ParseError("Groww feed: data before the greeting")
        ops, error = stream.feed(raw)
        ticks: list[Tick] = []
        bad = [f"NATS protocol: {error}"] if error else []
        decode = self.decoder.decode
        sids = self._sids.get(shard, {})
        for op in ops:
            kind = op[0]
            if kind == nats.MSG:
                self.decoded += 1
                if sids.get(op[2]) != op[1]:
                    bad.append(f"NATS: MSG {op[1][:60]!r} for subscription {op[2][:20]!r}, "
                               "which this connection does not hold")  # fmt: skip
                    continue
                try:
                    r = decode(op[1], op[3], now)
                except ParseError as e:
                    bad.append(str(e))
                    continue
                if r is None:
                    continue
                if isinstance(r, Tick):
                    ticks.append(r)
                else:
                    self.on_order(r)
            elif kind == nats.PING:
                self._send(shard, nats.PONG_CMD)
            elif kind == nats.ERR:
                self.server_errors += 1
                if self.server_errors <= 3 or self.server_errors % 100 == 0:
                    log.warning("Groww feed server says: %s (%d so far)", op[1][:200],
                                self.server_errors)  # fmt: skip
        if bad:
            if ticks:  # deliver what was good in the message; count what was not
                for reason in bad:
                    self._bad_frame(reason)
            else:
                for reason in bad[1:]:
                    self._bad_frame(reason)
                raise ParseError(bad[0])
        return ticks


__all__ = ["GrowwTicker", "new_nkey"]
