"""Security of the web gateway: API tokens, browser sessions, scopes, rate limits, origins, binds.

* **Tokens** are 256-bit random secrets shown once by ``mandi token create``. Only their SHA-256
  is stored (a JSON file outside the repository, mode 0600; see :class:`TokenStore`), and a
  presented token is compared with every stored hash by :func:`hmac.compare_digest`, so the time
  taken tells nothing about how close a guess was. (A slow password hash is not needed: the
  secrets are random, not chosen by people.)
* **Scopes**: ``read`` (every GET and the WebSocket) and ``trade`` (also orders, cancel,
  halt/resume). ``trade`` includes ``read``.
* **Sessions**: the dashboard logs in once with a token (``POST /api/v1/auth/login``) and gets an
  ``HttpOnly; SameSite=Strict`` cookie holding a random session id (also stored hashed); state
  changing requests made with the cookie must also carry the session's CSRF token in the
  ``X-CSRF-Token`` header. API clients send ``Authorization: Bearer <token>`` instead.
* **Rate limits** (sliding windows) on the login route per client address, on order routes per
  token (``web.orders_per_minute``) and on the other state changes, halt and resume, per token
  (``web.commands_per_minute``); request bodies are capped (``web.max_body_bytes``, 413 beyond);
  **CORS** is closed unless ``web.cors_origins`` lists exact origins (never ``*``); the WebSocket
  accepts a browser ``Origin`` only when it is the page's own origin or listed in
  ``web.ws_origins``.
* **Binding**: a non-loopback address is refused unless at least one token exists.
* **The owner and one-time login links** (as Jupyter does): on its first start a node creates
  the local owner's ``trade`` token (its secret kept in a 0600 file beside the tokens file, for
  curl and scripts) and prints a one-time link ``http://127.0.0.1:8080/?token=…`` to the
  terminal. The code in it is not a token: it is stored hashed, works once (a second use is
  refused), expires after ``web.login_link_ttl_s``, and is exchanged for a session cookie by a
  redirect that removes it from the address bar. ``mandi token link`` prints a new one for a
  running node. Neither the code nor the owner's secret is ever logged.
* Secrets never appear in logs, errors or API responses (tokens are shown by their id only).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mandi.core.errors import ConfigError, MandiError

log = logging.getLogger(__name__)

SCOPES = ("read", "trade")
TOKEN_PREFIX = "mandi_"
SESSION_COOKIE = "mandi_session"
MAX_LINKS = 50  # unexpired one-time login links kept
CSRF_HEADER = "X-CSRF-Token"


class AuthError(MandiError):
    """Authentication failed (401) or the credential lacks a scope (403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code = status, code
        super().__init__(message)


def default_tokens_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "mandi", "tokens.json")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def scope_allows(held: str, needed: str) -> bool:
    return needed == "read" or held == "trade"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token without its secret."""

    id: str
    name: str
    scope: str
    created: str
    hash: str
    owner: bool = False  # the local owner's token, created by the first start

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created": self.created,
        }
        if self.owner:
            out["owner"] = True
        return out


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token (by id), its scope and how it authenticated."""

    token_id: str
    name: str
    scope: str
    via: str  # "bearer" | "session" | "message"
    csrf: str = ""

    def can(self, needed: str) -> bool:
        return scope_allows(self.scope, needed)

    def public(self) -> dict[str, str]:
        return {"token_id": self.token_id, "name": self.name, "scope": self.scope, "via": self.via}


class TokenStore:
    """API tokens in a JSON file (``{"tokens": [{id, name, scope, created, sha256}]}``).

    The file is re-read when it changes on disk, so ``mandi token revoke`` takes effect in a
    running server within a second.
    """

    def __init__(self, path: str = "") -> None:
        self.path = os.path.abspath(os.path.expanduser(path or default_tokens_file()))
        self._tokens: list[TokenInfo] = []
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # --- file -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize read-modify-write of the file with other processes (``mandi token`` and
        a running node both write it) and threads."""
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with self._lock:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError("web.tokens_file", self.path, f"cannot read tokens ({e})") from None
        return data if isinstance(data, dict) else {}

    def _read(self) -> list[TokenInfo]:
        return self._parse(self._load())

    def _parse(self, data: dict[str, Any]) -> list[TokenInfo]:
        out = []
        for t in data.get("tokens", []):
            try:
                if t["scope"] not in SCOPES:
                    raise KeyError("scope")
                out.append(
                    TokenInfo(
                        str(t["id"]),
                        str(t.get("name", "")),
                        t["scope"],
                        str(t.get("created", "")),
                        str(t["sha256"]),
                        bool(t.get("owner", False)),
                    )
                )
            except (KeyError, TypeError):
                log.warning("tokens file %s: skipping a malformed entry", self.path)
        return out

    def _write(self, tokens: list[TokenInfo], links: list[dict[str, Any]] | None = None) -> None:
        d = os.path.dirname(self.path)
        os.makedirs(d, mode=0o700, exist_ok=True)
        if links is None:
            links = self._load().get("links", [])
        entries = []
        for t in tokens:
            e: dict[str, Any] = {
                "id": t.id,
                "name": t.name,
                "scope": t.scope,
                "created": t.created,
                "sha256": t.hash,
            }
            if t.owner:
                e["owner"] = True
            entries.append(e)
        tmp = f"{self.path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"tokens": entries, "links": links}, f, indent=2)
        os.replace(tmp, self.path)
        self._stamp = None

    def tokens(self) -> list[TokenInfo]:
        """The stored tokens (re-read at most once a second when the file changed)."""
        now = time.monotonic()
        with self._lock:
            if self._stamp is not None and now - self._checked < 1.0:
                return self._tokens
            self._checked = now
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime, st.st_size)
            except FileNotFoundError:
                stamp = (0.0, -1)
            if stamp != self._stamp:
                self._tokens = self._read() if stamp[1] >= 0 else []
                self._stamp = stamp
            return self._tokens

    # --- management (the CLI) ---------------------------------------------------------------------
    def create(self, scope: str, name: str = "", owner: bool = False) -> tuple[TokenInfo, str]:
        """Create a token; returns its info and the secret (shown once, never stored)."""
        if scope not in SCOPES:
            raise ConfigError("scope", scope, f"use one of {', '.join(SCOPES)}")
        tid = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(
            tid,
            name,
            scope,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            hash_secret(secret),
            owner,
        )
        with self._locked():
            tokens = self._read()
            tokens.append(info)
            self._write(tokens)
        return info, secret

    def revoke(self, token_id: str) -> bool:
        """Revoke a token (the owner's: its secret file goes too)."""
        with self._locked():
            tokens = self._read()
            kept = [t for t in tokens if t.id != token_id]
            if len(kept) == len(tokens):
                return False
            self._write(kept)
        if any(t.owner for t in tokens if t.id == token_id):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.owner_secret_path)
        return True

    # --- the owner and one-time login links ------------------------------------------------------
    @property
    def owner_secret_path(self) -> str:
        """Where the owner token's secret is kept (0600): ``owner-token`` beside
        ``tokens.json`` (``<name>-owner-token`` beside another tokens file)."""
        stem = os.path.splitext(os.path.basename(self.path))[0]
        name = "owner-token" if stem == "tokens" else f"{stem}-owner-token"
        return os.path.join(os.path.dirname(self.path), name)

    def owner(self) -> TokenInfo | None:
        return next((t for t in self.tokens() if t.owner), None)

    def ensure_owner(self) -> tuple[TokenInfo, bool]:
        """The local owner's ``trade`` token, created (with its 0600 secret file) when there
        is none; returns it and whether it was created now."""
        with self._locked():
            found = next((t for t in self._read() if t.owner), None)
        if found is not None:
            return found, False
        info, secret = self.create("trade", "owner", owner=True)
        path = self.owner_secret_path
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
        os.replace(tmp, path)
        return info, True

    def add_link(self, token_id: str, ttl_s: float) -> str:
        """A one-time login code for ``token_id``, valid ``ttl_s`` seconds; only its hash is
        stored (with the tokens), so any node reading this file can redeem it once."""
        code = secrets.token_urlsafe(32)
        now = time.time()
        with self._locked():
            data = self._load()
            links = [
                x
                for x in data.get("links", [])
                if isinstance(x, dict) and x.get("expires", 0) > now
            ][-(MAX_LINKS - 1) :]
            links.append(
                {"sha256": hash_secret(code), "token_id": token_id, "expires": now + ttl_s}
            )
            self._write(self._parse(data), links)
        return code

    def take_link(self, code: str) -> TokenInfo | None:
        """Redeem a one-time code: the token it logs in as, or None (unknown, used or expired;
        a code found is removed whatever its state, so it never works twice)."""
        presented = hash_secret(code)
        now = time.time()
        with self._locked():
            data = self._load()
            links = [x for x in data.get("links", []) if isinstance(x, dict)]
            match = None
            for x in links:  # every stored hash is compared
                if hmac.compare_digest(presented, str(x.get("sha256", ""))):
                    match = x
            if match is None:
                return None
            kept = [x for x in links if x is not match and x.get("expires", 0) > now]
            tokens = self._parse(data)
            self._write(tokens, kept)
        if match.get("expires", 0) <= now:
            return None
        return next((t for t in tokens if t.id == match.get("token_id")), None)

    # --- checking ---------------------------------------------------------------------------------
    def verify(self, secret: str) -> TokenInfo | None:
        """The token whose hash matches ``secret``; constant time in the secret's content."""
        presented = hash_secret(secret)
        found = None
        for t in self.tokens():  # no early exit: every stored hash is compared
            if hmac.compare_digest(presented, t.hash):
                found = t
        return found


@dataclass
class _Session:
    principal: Principal
    expires: float


class SessionStore:
    """Browser sessions: random ids (kept hashed in memory) → principal, with a TTL."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._sessions: dict[str, _Session] = {}

    def create(self, token: TokenInfo) -> tuple[str, Principal]:
        sid = secrets.token_urlsafe(32)
        p = Principal(token.id, token.name, token.scope, "session", secrets.token_urlsafe(24))
        self._sessions[hash_secret(sid)] = _Session(p, time.monotonic() + self.ttl_s)
        if len(self._sessions) > 10_000:
            self.prune()
        return sid, p

    def get(self, sid: str) -> Principal | None:
        s = self._sessions.get(hash_secret(sid))
        if s is None:
            return None
        if s.expires < time.monotonic():
            self._sessions.pop(hash_secret(sid), None)
            return None
        return s.principal

    def drop(self, sid: str) -> None:
        self._sessions.pop(hash_secret(sid), None)

    def drop_token(self, token_id: str) -> None:
        for k in [k for k, s in self._sessions.items() if s.principal.token_id == token_id]:
            del self._sessions[k]

    def prune(self) -> None:
        now = time.monotonic()
        for k in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[k]


@dataclass
class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key (sliding window)."""

    limit: int
    window_s: float = 60.0
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def hit(self, key: str, now: float | None = None) -> float:
        """Record an attempt; 0 when allowed, else the seconds until one is allowed again
        (``now``: a monotonic time, the clock's by default)."""
        now = time.monotonic() if now is None else now
        q = self._hits.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return max(0.001, q[0] + self.window_s - now)
        q.append(now)
        if len(self._hits) > 10_000:
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]:
                del self._hits[k]
        return 0.0


class Security:
    """The gateway's authentication state: tokens, sessions, rate limits and origin rules."""

    def __init__(
        self,
        tokens: TokenStore,
        session_ttl_s: float = 43200.0,
        login_per_minute: int = 10,
        orders_per_minute: int = 60,
        ws_origins: tuple[str, ...] = (),
        cors_origins: tuple[str, ...] = (),
        commands_per_minute: int = 10,
        max_body_bytes: int = 65_536,
    ) -> None:
        if any("*" in o for o in cors_origins):  # the config refuses it too
            raise ConfigError("web.cors_origins", "*", "a wildcard origin is never allowed")
        self.tokens = tokens
        self.sessions = SessionStore(session_ttl_s)
        self.login_limit = RateLimiter(login_per_minute)
        self.order_limit = RateLimiter(orders_per_minute)
        self.command_limit = RateLimiter(commands_per_minute)
        self.max_body_bytes = max_body_bytes
        self.ws_origins = tuple(o.rstrip("/").lower() for o in ws_origins)
        self.cors_origins = tuple(o.rstrip("/") for o in cors_origins)
        self.failures = 0

    @classmethod
    def from_config(cls, tokens: TokenStore, w: Any) -> Security:
        """The security state of a gateway from its ``[web]`` section."""
        return cls(
            tokens,
            w.session_ttl_s,
            w.login_per_minute,
            w.orders_per_minute,
            w.ws_origins,
            w.cors_origins,
            w.commands_per_minute,
            w.max_body_bytes,
        )

    def authenticate(self, authorization: str | None, cookie: str | None) -> Principal:
        """The caller from an ``Authorization: Bearer`` header or the session cookie; raises
        :class:`AuthError` (401) when neither is valid."""
        if authorization:
            kind, _, secret = authorization.partition(" ")
            if kind.lower() != "bearer" or not secret.strip():
                self.failures += 1
                raise AuthError(401, "bad_authorization", "Authorization must be 'Bearer <token>'")
            info = self.tokens.verify(secret.strip())
            if info is None:
                self.failures += 1
                raise AuthError(
                    401, "invalid_token", "the token is not valid (revoked or mistyped?)"
                )
            return Principal(info.id, info.name, info.scope, "bearer")
        if cookie:
            p = self.sessions.get(cookie)
            if p is not None:
                if not any(t.id == p.token_id for t in self.tokens.tokens()):
                    self.sessions.drop_token(p.token_id)  # the token was revoked
                else:
                    return p
        raise AuthError(
            401,
            "not_authenticated",
            "a token is required: send 'Authorization: Bearer <token>' or log in",
        )

    def login(self, secret: str) -> tuple[str, Principal]:
        info = self.tokens.verify(secret)
        if info is None:
            self.failures += 1
            raise AuthError(401, "invalid_token", "the token is not valid (revoked or mistyped?)")
        return self.sessions.create(info)

    @staticmethod
    def require(p: Principal, scope: str) -> None:
        if not p.can(scope):
            raise AuthError(
                403, "insufficient_scope", f"this needs a '{scope}' token; yours is '{p.scope}'"
            )

    @staticmethod
    def check_csrf(p: Principal, header: str | None) -> None:
        """Cookie-authenticated state changes must echo the session's CSRF token."""
        if p.via == "session" and not (header and hmac.compare_digest(header, p.csrf)):
            raise AuthError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")

    def origin_allowed(self, origin: str | None, host: str | None, scheme: str = "http") -> bool:
        """A WebSocket (or cookie POST) Origin: absent (not a browser), the page's own origin,
        or one listed in ``web.ws_origins``."""
        if origin is None:
            return True
        o = origin.rstrip("/").lower()
        if o in self.ws_origins:
            return True
        if not host:
            return False
        parts = urlsplit(o)
        return parts.scheme in ("http", "https") and parts.netloc == host.lower()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: TokenStore) -> None:
    """Refuse a non-loopback bind while no token exists (nobody could log in, and anybody on
    the network would meet an open door the day auth were loosened)."""
    if is_loopback(host):
        return
    if not tokens.tokens():
        raise ConfigError(
            "run.host",
            host,
            "a non-loopback address needs authentication: "
            "create a token first (mandi token create --scope read)",
        )


def redact(data: Any) -> Any:
    """Drop anything that looks like a secret from a structure about to be logged or returned."""
    if isinstance(data, dict):
        return {
            k: (
                "<redacted>"
                if any(s in str(k).lower() for s in ("token", "secret", "password", "cookie"))
                and isinstance(v, str)
                else redact(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


class _RedactQuery(logging.Filter):
    """Blanks the value of ``token=`` in uvicorn's access-log lines (a one-time login link)."""

    _RX = re.compile(r"(?i)([?&](?:token|code)=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._RX.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def redact_access_log() -> None:
    """Install the access-log filter once (``web.access_log = true`` logs every request)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactQuery) for f in logger.filters):
        logger.addFilter(_RedactQuery())
