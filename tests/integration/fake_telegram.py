"""A local fake of the Telegram Bot API on loopback, speaking its real HTTP protocol.

``POST|GET /bot<token>/<method>`` with parameters in the query string, a JSON body or a form body
(python-telegram-bot sends forms whose values are JSON-encoded), answered with Telegram's envelope
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description", "parameters"}``.
Methods: ``getMe``, ``sendMessage``, ``getUpdates`` (long polling: held open up to ``timeout``
seconds until an update arrives; ``offset`` confirms the updates before it, as Telegram does),
``deleteWebhook`` and ``getWebhookInfo``. A wrong token gets 401 ``Unauthorized``; a
``sendMessage`` without text or to an unknown chat 400 ``Bad Request``.

Test side: :meth:`FakeTelegram.user_says` queues a message from a user in a chat (an update),
:attr:`FakeTelegram.sent` holds what the bot sent, :meth:`FakeTelegram.wait_sent` waits for one,
:meth:`FakeTelegram.fail_next` makes the next calls answer 429 with ``retry_after``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT = {
    "id": 7000001,
    "is_bot": True,
    "first_name": "mandi test bot",
    "username": "mandi_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class FakeTelegram:
    def __init__(self, token: str = "7000001:AAFakeTokenForTestsOnly_0123456789ab") -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.chats: dict[int, str] = {}  # chats that exist: id -> type
        self.cond = threading.Condition()
        self._update_id = 100
        self._message_id = 1
        self._confirmed = 0  # updates below this id were confirmed by an offset
        self._fail: list[tuple[int, float]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # the path holds the token
                pass

            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeTelegram:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- the test's side ----------------------------------------------------------------------
    def user_says(self, chat_id: int, text: str, user_id: int | None = None) -> dict[str, Any]:
        """A user writes ``text`` in chat ``chat_id``: an update for getUpdates."""
        with self.cond:
            self.chats.setdefault(chat_id, "private" if chat_id > 0 else "group")
            self._update_id += 1
            msg = {
                "message_id": self._next_message(),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": self.chats[chat_id], "first_name": "tester"},
                "from": {"id": user_id or abs(chat_id), "is_bot": False, "first_name": "tester"},
                "text": text,
            }
            if text.startswith("/"):
                msg["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
                ]
            update = {"update_id": self._update_id, "message": msg}
            self.updates.append(update)
            self.cond.notify_all()
            return update

    def open_chat(self, chat_id: int) -> None:
        """A chat in which the bot may write (a user started it)."""
        with self.cond:
            self.chats.setdefault(chat_id, "private" if chat_id > 0 else "group")

    def wait_sent(self, pred: Any, timeout: float = 60.0) -> dict[str, Any]:
        """The first message the bot sent that satisfies ``pred(msg)``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.sent:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = [(m["chat"]["id"], m["text"][:80]) for m in self.sent[-10:]]
                    raise AssertionError(f"no such message within {timeout} s; last: {shown}")
                self.cond.wait(min(left, 0.5))

    def fail_next(self, n: int = 1, code: int = 429, retry_after: float = 1.0) -> None:
        with self.cond:
            self._fail += [(code, retry_after)] * n

    # --- the server's side --------------------------------------------------------------------
    def _next_message(self) -> int:
        self._message_id += 1
        return self._message_id

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if body and ctype == "application/json":
                params.update(json.loads(body))
            elif body and ctype == "application/x-www-form-urlencoded":
                for k, v in parse_qs(body.decode()).items():
                    params[k] = _maybe_json(v[-1])
        except ValueError:
            return self._reply(h, 400, _error(400, "Bad Request: can't parse request body"))
        segs = parts.path.strip("/").split("/")
        if len(segs) != 2 or not segs[0].startswith("bot"):
            return self._reply(h, 404, _error(404, "Not Found"))
        if segs[0][3:] != self.token:
            return self._reply(h, 401, _error(401, "Unauthorized"))
        method = segs[1]
        self.calls[method] += 1
        with self.cond:
            fail = self._fail.pop(0) if self._fail and method != "getUpdates" else None
        if fail is not None:
            code, wait = fail
            return self._reply(
                h,
                code,
                _error(code, f"Too Many Requests: retry after {wait:g}", {"retry_after": wait}),
            )
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._reply(h, 404, _error(404, "Not Found: method not found"))
        status, out = handler(params)
        self._reply(h, status, out)

    def _reply(self, h: BaseHTTPRequestHandler, status: int, out: dict[str, Any]) -> None:
        data = json.dumps(out).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _m_getMe(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": BOT}

    def _m_deleteWebhook(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": True, "description": "Webhook is already deleted"}

    def _m_getWebhookInfo(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {
            "ok": True,
            "result": {"url": "", "has_custom_certificate": False, "pending_update_count": 0},
        }

    def _m_sendMessage(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            return 400, _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return 400, _error(400, "Bad Request: message is too long")
        try:
            chat_id = int(p.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 400, _error(400, "Bad Request: chat not found")
        with self.cond:
            kind = self.chats.get(chat_id)
            if kind is None:
                return 400, _error(400, "Bad Request: chat not found")
            msg = {
                "message_id": self._next_message(),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": kind},
                "from": {k: BOT[k] for k in ("id", "is_bot", "first_name", "username")},
                "text": text,
            }
            self.sent.append(msg)
            self.cond.notify_all()
        return 200, {"ok": True, "result": msg}

    def _m_getUpdates(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = int(p.get("offset") or 0)
        limit = max(1, min(100, int(p.get("limit") or 100)))
        timeout = max(0.0, min(50.0, float(p.get("timeout") or 0)))
        deadline = time.monotonic() + timeout
        with self.cond:
            if offset > 0:
                self._confirmed = max(self._confirmed, offset)
            while True:
                ready = [u for u in self.updates if u["update_id"] >= self._confirmed]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return 200, {"ok": True, "result": ready[:limit]}
                self.cond.wait(min(left, 0.5))


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        out["parameters"] = parameters
    return out


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
