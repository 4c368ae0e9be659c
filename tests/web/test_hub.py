"""The WebSocket hub's flow control without a server: one bus subscription per channel whatever
the number of clients, conflation (a slow client skips stale updates), bounded event queues (a
client too far behind is dropped), and fan-out that never waits for a client."""

from __future__ import annotations

import asyncio
import json
import time

from mandi.bus.memory import MessageBus
from mandi.config import load_config
from mandi.core.clock import TestClock
from mandi.model.events import SystemEvent
from mandi.model.instruments import Index, InstrumentMaster
from mandi.model.market import Tick
from mandi.services.context import NodeContext, NodeStats
from mandi.stores.sqlite import BatchWriter
from mandi.web.api import MandiAPI
from mandi.web.hub import Client, Hub

NIFTY = 256265


def make_hub(client_queue=50):
    cfg = load_config(env={}, overrides={"web.client_queue": client_queue})
    clock = TestClock(1_776_052_000_000_000_000)
    node = NodeContext(
        cfg,
        clock,
        MessageBus(clock),
        InstrumentMaster([Index(NIFTY, "NSE", "NIFTY", "NIFTY")]),
        BatchWriter(":memory:"),  # never started: the hub does not write
        NodeStats(),
    )
    api = MandiAPI(node)
    return Hub(api, cfg.web), node


def tick(i):
    return Tick(NIFTY, "NSE", 1_776_052_000_000_000_000 + i * 1_000_000, 0, 2_420_000 + i)


def event(i):
    return SystemEvent(1_776_052_000_000_000_000 + i, "test", f"event {i}")


class Sink:
    """A client socket: ``blocked`` makes every send wait forever (a stalled browser)."""

    def __init__(self, blocked=False):
        self.blocked = blocked
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()

    async def send(self, text):
        if self.blocked:
            await self.gate.wait()
        self.frames.append(text)

    async def close(self, code, reason):
        self.closed = (code, reason)

    def messages(self):
        return [json.loads(line) for f in self.frames for line in f.split("\n")]


def client(sink):
    return Client(send=sink.send, close=sink.close, scope="read")


def test_one_bus_subscription_per_channel_and_conflation_for_a_slow_client():
    async def main():
        hub, node = make_hub()
        fast, slow = Sink(), Sink(blocked=True)
        clients = [client(fast), client(slow)] + [client(Sink()) for _ in range(50)]
        for c in clients:
            hub.add(c)
            ok, errors = hub.subscribe(c, [f"tick:NSE:{NIFTY}"])
            assert ok and not errors
        assert len(node.bus._subs) == 1  # 52 clients, one handler in the kernel
        for i in range(100):  # a burst between two flushes
            node.bus.publish(f"tick:NSE:{NIFTY}", tick(i))
        hub.flush()
        await asyncio.sleep(0.01)
        got = [m for m in fast.messages() if m.get("channel")]
        assert len(got) == 1 and got[0]["data"]["price"] == (2_420_000 + 99) / 100
        for round_ in range(5):  # the slow client is stuck in its first send
            for i in range(10):
                node.bus.publish(f"tick:NSE:{NIFTY}", tick(1000 + round_ * 10 + i))
            hub.flush()
            await asyncio.sleep(0.01)
        slow_client = clients[1]
        assert len(slow_client.pending) == 1  # only the newest tick waits
        assert slow_client.skipped >= 3 and not slow_client.closed
        assert len([m for m in fast.messages() if m.get("channel")]) == 6
        for c in clients:
            hub.remove(c)
        assert node.bus._subs == []

    asyncio.run(main())


def test_a_client_too_far_behind_on_events_is_dropped_and_others_get_everything():
    async def main():
        hub, node = make_hub(client_queue=50)
        fast, slow = Sink(), Sink(blocked=True)
        cf, cs = client(fast), client(slow)
        for c in (cf, cs):
            hub.add(c)
            hub.subscribe(c, ["system:>"])
        for batch in range(4):
            for i in range(30):
                node.bus.publish("system:test", event(batch * 30 + i))
            hub.flush()
            await asyncio.sleep(0.01)
        assert cs.closed and "events behind" in cs.dropped and hub.dropped_clients == 1
        got = [m["data"]["message"] for m in fast.messages() if m.get("channel")]
        assert got == [f"event {i}" for i in range(120)]  # every event, in order
        assert not cf.closed
        slow.gate.set()
        async with asyncio.timeout(30):
            while slow.closed is None:
                await asyncio.sleep(0.01)
        assert slow.closed[0] == 1013

    asyncio.run(main())


def test_a_send_that_never_completes_times_out_and_drops_the_client():
    async def main():
        hub, node = make_hub()
        hub.cfg = load_config(env={}, overrides={"web.send_timeout_s": 30}).web
        stuck = Sink(blocked=True)
        c = client(stuck)
        hub.add(c)
        hub.subscribe(c, [f"tick:NSE:{NIFTY}"])
        node.bus.publish(f"tick:NSE:{NIFTY}", tick(1))
        hub.flush()
        await asyncio.sleep(0.01)  # the writer task starts its send, which never completes
        hub.check_stalled(time.monotonic())  # the clock is the argument: no race with the test
        assert not c.closed  # not yet overdue
        hub.check_stalled(time.monotonic() + 31)
        assert c.closed and "not taken within" in c.dropped
        async with asyncio.timeout(30):
            while not c.task.done():
                await asyncio.sleep(0.01)

    asyncio.run(main())


def test_bad_channels_are_refused_with_a_reason():
    hub, _ = make_hub()
    c = Client(send=None, close=None)  # type: ignore[arg-type]
    ok, errors = hub.subscribe(
        c,
        [
            "tick:NSE:1",
            "tick:>",
            "candle:7s:NSE:256265",
            "chain:ZZZ",
            "signal:>",
            "position_closed",
        ],
    )
    assert ok == ["signal:>", "position_closed"]
    reasons = {e["channel"]: e["message"] for e in errors}
    assert "no instrument" in reasons["tick:NSE:1"] and "unknown channel" in reasons["tick:>"]
    assert "timeframe 7s" in reasons["candle:7s:NSE:256265"]
    assert "no option chains" in reasons["chain:ZZZ"]  # the channel names it; never echoed
