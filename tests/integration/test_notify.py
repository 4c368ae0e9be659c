"""Alerts and remote control against a local fake of the Telegram Bot API (proved with
python-telegram-bot as a second client) and a local webhook receiver: a running node sends its
fills, the halt alert and answers; ``/halt`` from a chat that is not configured is refused."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_telegram import FakeTelegram

from mandi.web.embed import start_node

OWNER, STRANGER = 4242, 999_001


@pytest.fixture
def fake():
    f = FakeTelegram().start()
    yield f
    f.stop()


def test_the_fake_speaks_the_bot_api_to_python_telegram_bot(fake):
    """python-telegram-bot's own client parses every answer of the fake."""
    import telegram

    async def go() -> None:
        bot = telegram.Bot(fake.token, base_url=f"{fake.url}/bot")
        async with bot:  # initialize: getMe
            me = await bot.get_me()
            assert me.is_bot and me.username == "mandi_test_bot"
            fake.user_says(OWNER, "/status")
            updates = await bot.get_updates(timeout=5)
            assert [u.message.text for u in updates] == ["/status"]
            assert updates[0].message.chat.id == OWNER
            assert updates[0].message.entities[0].type == "bot_command"
            sent = await bot.send_message(chat_id=OWNER, text="pong")
            assert sent.text == "pong" and sent.chat.id == OWNER and sent.from_user.is_bot
            # confirming by offset: the update is not delivered again; long polling waits
            later = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
            assert later == ()
            with pytest.raises(telegram.error.BadRequest, match=r"(?i)chat not found"):
                await bot.send_message(chat_id=123, text="nobody")
        wrong = telegram.Bot("1:wrong", base_url=f"{fake.url}/bot")
        with pytest.raises(telegram.error.InvalidToken):
            await wrong.get_me()

    asyncio.run(go())
    assert fake.calls["getMe"] >= 2 and fake.calls["getUpdates"] == 2


class Receiver:
    """A webhook endpoint on loopback that keeps every JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.cond = threading.Condition()
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                with rec.cond:
                    rec.bodies.append(json.loads(self.rfile.read(n)))
                    rec.cond.notify_all()
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/abc"

    def wait(self, pred, timeout=60.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(pred(b) for b in self.bodies), timeout)
        assert ok, f"no such webhook body; got {[b['text'][:60] for b in self.bodies]}"


def test_a_node_alerts_on_telegram_and_a_webhook_and_obeys_only_its_chats(fake, tmp_path):
    hook = Receiver()
    fake.open_chat(OWNER)
    fake.fail_next(1, 429, 0.5)  # Telegram asks to slow down once: the alert still arrives
    node = start_node(
        {
            "store.db": str(tmp_path / "mandi.db"),
            "sim.date": "2026-04-13",
            "run.speed": 20.0,
            "run.dashboard": False,  # no web layer: the notify layer has its own API core
            "run.status_interval": 0,
            "notify.telegram.bot_token": fake.token,
            "notify.telegram.chat_ids": (OWNER,),
            "notify.telegram.api_url": fake.url,
            "notify.telegram.poll_timeout_s": 2,
            "notify.batch_s": 0.2,
            "notify.webhook.url": hook.url,
        }
    )
    try:
        # the default strategies fill at the open: every fill is an alert, on both notifiers
        fake.wait_sent(lambda m: m["chat"]["id"] == OWNER and "FILL BUY" in m["text"])
        hook.wait(lambda b: "FILL BUY" in b["text"] and b["alerts"][0]["kind"] == "fill")
        # a stranger's /halt is refused, and nothing is halted
        fake.user_says(STRANGER, "/halt")
        no = fake.wait_sent(lambda m: m["chat"]["id"] == STRANGER)
        assert "may not command" in no["text"] and str(STRANGER) in no["text"]
        layer = node.layer("notify")
        assert node.call(lambda: layer.api.risk()["halted"]) is False
        # the owner's /halt halts: an answer, then the halt alert
        fake.user_says(OWNER, "/halt market looks wrong")
        fake.wait_sent(lambda m: m["chat"]["id"] == OWNER and "Trading HALTED" in m["text"])
        alert = fake.wait_sent(lambda m: m["chat"]["id"] == OWNER and "🛑 HALTED" in m["text"])
        assert "market looks wrong" in alert["text"]
        hook.wait(lambda b: any(a["kind"] == "halted" for a in b["alerts"]))
        assert node.call(lambda: layer.api.risk()["halted"]) is True
        fake.user_says(OWNER, "/status")
        fake.wait_sent(lambda m: m["text"].startswith("mandi paper") and "HALTED" in m["text"])
        fake.user_says(OWNER, "/pnl")
        fake.wait_sent(lambda m: m["text"].startswith("day P&L"))
        fake.user_says(OWNER, "/resume")
        fake.wait_sent(lambda m: "resumed" in m["text"] and m["chat"]["id"] == OWNER)
        assert node.call(lambda: layer.api.risk()["halted"]) is False
        assert layer.poller.commands.auth.refused == 1
        assert fake.token not in json.dumps(hook.bodies)
    finally:
        node.stop()
        hook.server.shutdown()
