"""Logging setup for the shell: human-readable lines by default, JSON lines with ``--log-json``."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# C0 and C1 control characters (newline, carriage return, escape ...), DEL, and the Unicode line
# and paragraph separators: none may reach a log line from outside, where a newline in a halt
# reason would start a forged line and an escape sequence would rewrite the terminal
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with every control character replaced by a visible escape (``\\n``, ``\\x1b``),
    so it stays on one line of a log or a terminal."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c)
    return named or (f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}")


class OneLineFormatter(logging.Formatter):
    """The human-readable format, one line per record: control characters in the message (which
    may carry text from outside: a halt reason, a symbol, a broker's error) are escaped; only a
    traceback, which is ours, spans lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": printable(record.getMessage()),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else OneLineFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
