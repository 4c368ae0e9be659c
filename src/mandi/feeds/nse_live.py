"""``mandi run --feed nse``: NSE's (and BSE's) public option chains polled as a live source.

Every ``nse.interval_s`` (never faster than the polite floor ``nse.min_interval_s``) the feed
asks, for each of ``nse.underlyings``, NSE's option-chain API — ``option-chain-v3`` per expiry
(the nearest ``nse.expiries`` from ``option-chain-contract-info``) or the legacy
``option-chain-indices`` — and for each of ``nse.bse_underlyings`` BSE's ``DerivOptionChain_IV``.
NSE answers its API only to a client that looks like a browser which has opened the
option-chain page first: the feed sends a browser's headers, loads ``/option-chain`` to get the
session cookies, and loads it again when the API answers 401/403.

Each answer is parsed by the importer's parsers (:func:`mandi.feeds.nse.parse_option_chains`)
into :class:`~mandi.model.market.ChainSnapshot`\\ s that go to ``on_snapshot`` — the chain layer
feeds them into the same chain matrix, OI windows and analytics as a broker feed's chains and
stores every one in ``option_chain_snapshots`` as ``mandi chain import`` does. The underlying's
price also goes out as a tick of its index (candles, the dashboard).

Health (:class:`NseHealth`, shown in the status and the dashboard, and a risk input like a
broker feed's): ``ok``; ``backing off`` after a failure (the next poll waits ``interval × 2^n``,
jittered, up to ``nse.backoff_max_s``); ``blocked`` after ``nse.blocked_after`` failures in a
row or when NSE answers HTML instead of JSON (its bot wall); ``format changed`` when the JSON no
longer parses as an option chain — each with the reason in one line.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

from mandi.core.errors import MandiError, ParseError
from mandi.execution.live import FEED_RULE, FeedHealth
from mandi.model.instruments import AnyInstrument, Index
from mandi.model.market import ChainSnapshot, Tick

if TYPE_CHECKING:
    from mandi.config import AppConfig, NseConfig

log = logging.getLogger(__name__)

#: index tokens (the simulator's and Kite's, so stored series line up across feeds)
INDEX_TOKENS = {"NIFTY": 256265, "BANKNIFTY": 260105, "FINNIFTY": 257801, "MIDCPNIFTY": 288009,
                "NIFTYNXT50": 270857, "SENSEX": 265, "BANKEX": 274441}  # fmt: skip
BSE_SCRIP = {"SENSEX": 1, "BANKEX": 12}


class SourceBlocked(MandiError):
    """NSE/BSE refused us (401/403/429) or answered its bot wall (HTML instead of JSON)."""


class FormatChanged(MandiError):
    """The answer is JSON but no longer an option chain mandi can read."""


class NseHealth(FeedHealth):
    """A polled source's health: the verdict a broker feed gives, plus the source's state."""

    def __init__(self, blocked_after: int) -> None:
        super().__init__(silent_after_s=3600.0)
        self.expected = 1
        self.blocked_after = blocked_after
        self.state = "starting"
        self.reason = ""
        self.failures = 0  # in a row
        self.polls = 0
        self.snapshots = 0

    def ok(self, now: int, snapshots: int) -> None:
        if self.up == 0:
            self.on_connected(now)
        self.on_message(now, snapshots)
        self.state, self.reason, self.failures = "ok", "", 0
        self.snapshots += snapshots

    def failed(self, now: int, e: Exception) -> None:
        self.failures += 1
        if isinstance(e, FormatChanged):
            self.state = "format changed"
        elif isinstance(e, SourceBlocked) or self.failures >= self.blocked_after:
            self.state = "blocked"
        else:
            self.state = "backing off"
        self.reason = str(e)
        if self.up:
            self.on_disconnected(now)

    def problem(self, now: int, market_open: bool) -> tuple[str, str]:
        if self.state in ("blocked", "format changed", "backing off"):
            return FEED_RULE, f"NSE option chains: {self.state} ({self.reason})"
        return "", ""

    def snapshot(self, now: int) -> dict[str, Any]:
        return {
            **super().snapshot(now),
            "state": self.state,
            "reason": self.reason,
            "failures_in_a_row": self.failures,
            "polls": self.polls,
            "snapshots": self.snapshots,
        }


class NseClient:
    """HTTP to NSE and BSE with the headers and cookies their sites want (synchronous)."""

    def __init__(self, cfg: NseConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg = cfg
        headers = {
            "User-Agent": cfg.user_agent,
            "Accept": "application/json, text/plain, */*",
            "Accept-Language": "en-US,en;q=0.9",
            "Accept-Encoding": "gzip, deflate",
        }
        self.http = httpx.Client(
            headers=headers, timeout=cfg.timeout_s, transport=transport, follow_redirects=True
        )
        self._cookies = False
        self.requests = 0

    def close(self) -> None:
        self.http.close()

    def _get(self, url: str, referer: str, **params: Any) -> httpx.Response:
        self.requests += 1
        try:
            return self.http.get(url, params=params or None, headers={"Referer": referer})
        except httpx.HTTPError as e:
            raise MandiError(f"cannot reach {url.split('?')[0]} ({type(e).__name__})") from None

    def _json(self, r: httpx.Response, what: str) -> bytes:
        if r.status_code in (401, 403, 429):
            raise SourceBlocked(f"{what}: HTTP {r.status_code}")
        if r.status_code != 200:
            raise MandiError(f"{what}: HTTP {r.status_code}")
        body = r.content
        if body.lstrip()[:1] in (b"<", b"") or "html" in r.headers.get("content-type", ""):
            raise SourceBlocked(f"{what}: HTML instead of JSON (the site's bot wall?)")
        return body

    def _nse(self, path: str, what: str, **params: Any) -> bytes:
        page = f"{self.cfg.url}/option-chain"
        if not self._cookies:
            self._get(page, self.cfg.url)
            self._cookies = True
        r = self._get(f"{self.cfg.url}{path}", page, **params)
        if r.status_code in (401, 403):  # the cookies expired: the page again, once
            self._get(page, self.cfg.url)
            r = self._get(f"{self.cfg.url}{path}", page, **params)
        return self._json(r, what)

    def nse_chains(self, symbol: str) -> list[tuple[str, bytes]]:
        """(name, JSON body) of the underlying's chains: one per expiry (v3) or one in all."""
        if self.cfg.api == "legacy":
            return [
                (f"{symbol}.json", self._nse("/api/option-chain-indices", symbol, symbol=symbol))
            ]
        info = self._nse("/api/option-chain-contract-info", f"{symbol} expiries", symbol=symbol)
        import json

        try:
            expiries = list(json.loads(info)["expiryDates"])[: self.cfg.expiries]
        except (ValueError, KeyError, TypeError):
            raise FormatChanged(f"{symbol} expiries: no expiryDates in the answer") from None
        return [
            (
                f"{symbol}-{e}.json",
                self._nse(
                    "/api/option-chain-v3", f"{symbol} {e}", type="Indices", symbol=symbol, expiry=e
                ),
            )
            for e in expiries
        ]

    def bse_chains(self, symbol: str) -> list[tuple[str, bytes]]:
        import json

        scrip = BSE_SCRIP.get(symbol, 1)
        base, ref = f"{self.cfg.bse_url}/BseIndiaAPI/api", "https://www.bseindia.com/"
        info = self._json(
            self._get(f"{base}/ddlExpiry_IV/w", ref, ProductType="IO", scrip_cd=scrip),
            f"{symbol} expiries",
        )
        try:
            expiries = [str(x["ExpiryDate"]) for x in json.loads(info)["Table1"]][
                : self.cfg.expiries
            ]
        except (ValueError, KeyError, TypeError):
            raise FormatChanged(f"{symbol} expiries: no Table1.ExpiryDate in the answer") from None
        return [
            (
                f"{symbol}-{e}.json",
                self._json(
                    self._get(
                        f"{base}/DerivOptionChain_IV/w", ref, Expiry=e, scrip_cd=scrip, strprice=0
                    ),
                    f"{symbol} {e}",
                ),
            )
            for e in expiries
        ]


def parse_answer(name: str, body: bytes, underlying: str) -> list[ChainSnapshot]:
    """One API answer → snapshots (the importer's parser); a chain it cannot read is a
    :class:`FormatChanged`. The answer is decoded once, by the parser: only one it cannot use
    is read again, to tell a listed expiry with no contracts quoted yet (→ ``[]``) from a bad
    answer."""
    from mandi.feeds.nse import parse_option_chains

    try:
        imp = parse_option_chains(body, name=name, underlying=underlying)
    except ParseError as e:
        if _empty_chain(body, underlying):
            return []
        raise FormatChanged(f"{underlying}: {e}") from None
    if not imp.snapshots:
        if _empty_chain(body, underlying):
            return []
        raise FormatChanged(f"{underlying}: the answer holds no option chain")
    return list(imp.snapshots)


def _empty_chain(body: bytes, underlying: str) -> bool:
    """Whether the answer is an empty chain (``"data": []`` and a timestamp); one that is not
    JSON at all is a :class:`FormatChanged`."""
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        raise FormatChanged(f"{underlying}: the answer is not JSON") from None
    return isinstance(doc, dict) and doc.get("data") == [] and "timestamp" in doc


class NseFeed:
    """The node's feed (see the module docstring)."""

    name = "nse"
    live = True
    wall_clock = False  # time is NSE's snapshot time

    def __init__(
        self,
        cfg: NseConfig,
        client: NseClient | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cfg = cfg
        self.client = client or NseClient(cfg)
        self.now_ns = now_ns
        self.health = NseHealth(cfg.blocked_after)
        self.exchange_time_ns = 0
        self.on_snapshot: Callable[[ChainSnapshot], None] = lambda s: None
        self.rejected: dict[str, int] = {}
        self._sources = [(u, "NSE") for u in cfg.underlyings] + [
            (u, "BSE") for u in cfg.bse_underlyings
        ]
        self._instruments: list[AnyInstrument] = [
            Index(INDEX_TOKENS.get(u, 0x2000000 + i), ex, u, u, "INDICES", 1, 5)
            for i, (u, ex) in enumerate(self._sources)
        ]
        self._token = {i.symbol: i.token for i in self._instruments}
        self._last_ts: dict[str, int] = {}
        self.next_delay_s = cfg.interval_s

    def instruments(self) -> list[AnyInstrument]:
        return self._instruments

    def poll_once(self) -> tuple[list[ChainSnapshot], list[Tick]]:
        """One round over every underlying (blocking: run it in a thread). Failures are recorded
        in the health; what did arrive is returned."""
        snaps: list[ChainSnapshot] = []
        failures = 0
        self.health.polls += 1
        for u, ex in self._sources:
            try:
                got = self.client.nse_chains(u) if ex == "NSE" else self.client.bse_chains(u)
                for name, body in got:
                    snaps += parse_answer(name, body, u)
            except MandiError as e:
                failures += 1
                self.rejected[type(e).__name__] = self.rejected.get(type(e).__name__, 0) + 1
                self.health.failed(self.now_ns(), e)
                log.warning("NSE feed: %s (%s)", e, self.health.state)
        now = self.now_ns()
        ticks = []
        for s in snaps:
            if self._last_ts.get(s.underlying) != s.ts_event and s.underlying in self._token:
                self._last_ts[s.underlying] = s.ts_event
                ex = "BSE" if s.exchange == "BSE" else "NSE"
                ticks.append(
                    Tick(self._token[s.underlying], ex, s.ts_event, now, s.underlying_price)
                )
        if not failures:
            self.health.ok(now, len(snaps))
        self.next_delay_s = self._delay()
        return snaps, ticks

    def _delay(self) -> float:
        base = max(self.cfg.interval_s, self.cfg.min_interval_s)
        if not self.health.failures:
            return base
        back = min(base * 2.0 ** min(self.health.failures, 16), self.cfg.backoff_max_s)
        return float(max(back * (0.75 + random.random() / 2), self.cfg.min_interval_s))

    async def batches(self) -> AsyncIterator[list[Tick]]:
        try:
            while True:
                snaps, ticks = await asyncio.to_thread(self.poll_once)
                for s in snaps:
                    self.exchange_time_ns = max(self.exchange_time_ns, s.ts_event)
                    self.on_snapshot(s)
                if ticks:
                    yield ticks
                await asyncio.sleep(self.next_delay_s)
        finally:
            self.client.close()

    def status(self) -> dict[str, Any]:
        return {
            **self.health.snapshot(self.now_ns()),
            "subscribed": len(self._sources),
            "queue_dropped": 0,
            "frames": self.client.requests,
            "session_expires_ns": 0,
            "next_poll_s": round(self.next_delay_s, 1),
        }


async def open_nse_feed(cfg: AppConfig, node: Any) -> NseFeed:
    return NseFeed(cfg.nse, now_ns=node.clock.now_ns)
