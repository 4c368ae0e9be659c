"""The NATS client protocol, as Groww's feed speaks it over a websocket: a pure, incremental
parser of the byte stream and the few commands a subscriber sends. No I/O.

NATS is a text protocol of ``\\r\\n``-terminated control lines; ``MSG`` (and ``HMSG``, with
headers) are followed by a payload of the announced size and ``\\r\\n``. Over a websocket the
stream is cut into binary messages anywhere — a control line or a payload may span two — so
:class:`NatsStream` keeps what it has not parsed yet.

A protocol error (an unknown operation, a size that is not a number or is over the limit, a
payload not followed by ``\\r\\n``, an endless control line) cannot be skipped past reliably:
the stream drops what it holds and reports the error; parsing starts again with the next
websocket message that begins with an operation. The operations parsed before the error are
still returned — nothing good is lost with the bad.
"""

from __future__ import annotations

import json
from typing import Any

from mandi.core.errors import ParseError

CRLF = b"\r\n"
MAX_LINE = 4096  # a control line longer than this is garbage, not a slow line
MAX_PAYLOAD = 1 << 20  # nats-server's default max_payload

# operations a server sends (MSG/HMSG tuples carry (op, subject, sid, payload))
MSG, PING, PONG, OK, ERR, INFO = "MSG", "PING", "PONG", "+OK", "-ERR", "INFO"
# and those a client sends
CONNECT, SUB, UNSUB, PUB = "CONNECT", "SUB", "UNSUB", "PUB"
_SERVER_OPS = (b"MSG", b"HMSG", b"PING", b"PONG", b"+OK", b"-ERR", b"INFO")
_CLIENT_OPS = (b"CONNECT", b"SUB", b"UNSUB", b"PUB", b"HPUB", b"PING", b"PONG")

Op = tuple[Any, ...]


class NatsStream:
    """Parses one direction of a NATS connection (``server=True``: what a server sends)."""

    def __init__(self, server: bool = True, max_payload: int = MAX_PAYLOAD) -> None:
        self.server = server
        self.max_payload = max_payload
        self._buf = b""
        self._resync = False  # after an error: wait for a message that starts with an op
        self.errors = 0

    def feed(self, data: bytes) -> tuple[list[Op], str]:
        """The operations completed by ``data`` and the protocol error met ("" if none)."""
        if self._resync:
            if not data.startswith(_SERVER_OPS if self.server else _CLIENT_OPS):
                return [], ""
            self._resync = False
        buf = self._buf + data if self._buf else data
        out: list[Op] = []
        i, n = 0, len(buf)
        error = ""
        while i < n:
            j = buf.find(CRLF, i)
            if j < 0:
                if n - i > MAX_LINE:
                    error = f"a control line of more than {MAX_LINE} bytes"
                break
            line = buf[i:j]
            head = line[:4]
            if head == b"MSG " or head == b"HMSG" or head == b"PUB " or head == b"HPUB":
                r = self._message(line, buf, j + 2, n)
                if isinstance(r, str):
                    error = r
                    break
                if r is None:  # the payload has not all arrived
                    break
                op, i = r
                out.append(op)
                continue
            i = j + 2
            if line == b"PING":
                out.append((PING,))
            elif line == b"PONG":
                out.append((PONG,))
            elif line == b"+OK":
                out.append((OK,))
            elif self.server and line.startswith(b"-ERR"):
                out.append((ERR, line[4:].strip().strip(b"'").decode("utf-8", "replace")))
            elif line.startswith(b"INFO " if self.server else b"CONNECT "):
                try:
                    doc = json.loads(line.partition(b" ")[2])
                except ValueError:
                    error = f"{line.partition(b' ')[0].decode()} is not followed by JSON"
                    break
                if not isinstance(doc, dict):
                    error = "INFO/CONNECT carries no JSON object"
                    break
                out.append((INFO if self.server else CONNECT, doc))
            elif not self.server and line.startswith((b"SUB ", b"UNSUB ")):
                parts = line.split()
                if line.startswith(b"SUB ") and len(parts) in (3, 4):
                    out.append((SUB, parts[1], parts[-1]))
                elif line.startswith(b"UNSUB ") and (
                    len(parts) == 2 or (len(parts) == 3 and parts[2].isdigit())
                ):
                    out.append((UNSUB, parts[1], int(parts[2]) if len(parts) == 3 else 0))
                else:
                    error = f"malformed {parts[0].decode()} line {line[:80]!r}"
                    break
            else:
                error = f"unknown operation {line[:40]!r}"
                break
        if error:
            self.errors += 1
            self._buf = b""
            self._resync = True
            return out, error
        self._buf = buf[i:] if i < n else b""
        return out, ""

    def _message(self, line: bytes, buf: bytes, start: int, n: int) -> tuple[Op, int] | str | None:
        """A MSG/HMSG (server) or PUB/HPUB (client) whose payload starts at ``start``: the op
        and where the next one starts, None when incomplete, or the error."""
        parts = line.split(b" ")
        kind = parts[0]
        server_op = kind in (b"MSG", b"HMSG")
        if server_op != self.server:
            return f"unexpected {kind.decode()} from the {'server' if self.server else 'client'}"
        headers = kind in (b"HMSG", b"HPUB")
        # MSG subject sid [reply] size | HMSG subject sid [reply] hdr total | PUB subject [reply]
        want = (4, 5) if server_op and not headers else (5, 6) if server_op else (3, 4)
        if headers and not server_op:
            want = (4, 5)
        if len(parts) not in want:
            return f"malformed {kind.decode()} line {line[:80]!r}"
        try:
            total = int(parts[-1])
            hdr = int(parts[-2]) if headers else 0
        except ValueError:
            return f"{kind.decode()} size {parts[-1][:20]!r} is not a number"
        if total < 0 or hdr < 0 or hdr > total or total > self.max_payload:
            return f"{kind.decode()} size {total} (headers {hdr}) is out of range"
        end = start + total
        if end + 2 > n:
            return None
        if buf[end : end + 2] != CRLF:
            return f"{kind.decode()} payload of {total} bytes is not followed by CRLF"
        sid = parts[2] if server_op else b""
        return (MSG if server_op else PUB, parts[1], sid, buf[start + hdr : end]), end + 2


# --- what a client sends --------------------------------------------------------------------------
def connect(jwt: str, sig: str, name: str = "mandi", headers: bool = False) -> bytes:
    """CONNECT with a user JWT and the nonce's signature; ``verbose`` off (no +OK per command),
    ``pedantic`` off, protocol 1 (the server may send INFO updates)."""
    opts = {
        "verbose": False,
        "pedantic": False,
        "jwt": jwt,
        "sig": sig,
        "name": name,
        "lang": "python3",
        "version": "mandi",
        "protocol": 1,
        "headers": headers,
        "no_responders": headers,
    }
    return b"CONNECT " + json.dumps(opts, separators=(",", ":")).encode() + CRLF


def sub(subject: str, sid: int) -> bytes:
    return f"SUB {subject} {sid}\r\n".encode()


def unsub(sid: int) -> bytes:
    return f"UNSUB {sid}\r\n".encode()


PING_CMD = b"PING\r\n"
PONG_CMD = b"PONG\r\n"


# --- what a server sends (the fake) ---------------------------------------------------------------
def info(doc: dict[str, Any]) -> bytes:
    return b"INFO " + json.dumps(doc, separators=(",", ":")).encode() + CRLF


def msg(subject: bytes, sid: bytes, payload: bytes) -> bytes:
    return b"MSG %s %s %d\r\n%s\r\n" % (subject, sid, len(payload), payload)


def err(text: str) -> bytes:
    return f"-ERR '{text}'\r\n".encode()


def check_subject(subject: bytes) -> None:
    """A subject a client may subscribe to: printable, no whitespace (NATS's rule)."""
    if not subject or any(c <= 32 or c == 127 for c in subject):
        raise ParseError(f"NATS subject {subject[:40]!r} is empty or has whitespace")
