"""The Kite session of this machine: login, status, logout, and a REST client from config."""

from __future__ import annotations

import time
from pathlib import Path

from mandi.brokers import session as sessions
from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import token_expiry_ns
from mandi.brokers.session import (
    BrokerSession,
    delete_session,
    load_session,
    save_session,
    session_path,
)
from mandi.config import KiteConfig
from mandi.core.errors import BrokerSessionError


def _need(cfg: KiteConfig, *keys: str) -> None:
    sessions.require(cfg, "kite", *keys)


def token_file(cfg: KiteConfig) -> Path:
    return session_path("kite", cfg.token_file)


def login_url(cfg: KiteConfig) -> str:
    _need(cfg, "api_key")
    return f"{cfg.login_url}?api_key={cfg.api_key}&v=3"


def login(cfg: KiteConfig, request_token: str) -> BrokerSession:
    """Complete the login with a request token; store the session (0600)."""
    _need(cfg, "api_key", "api_secret")
    rest = KiteRest(cfg.api_key, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        d = rest.create_session(request_token, cfg.api_secret)
    finally:
        rest.close()
    now = time.time_ns()
    s = BrokerSession(
        "kite",
        cfg.api_key,
        str(d.get("user_id", "")),
        str(d.get("user_name", "")),
        str(d["access_token"]),
        now,
        token_expiry_ns(now),
    )
    save_session(token_file(cfg), s)
    return s


def current(cfg: KiteConfig, now_ns: int | None = None) -> BrokerSession:
    """The stored, unexpired session of this API key (else a clear error)."""
    now = time.time_ns() if now_ns is None else now_ns
    try:
        return sessions.current("kite", "Kite", token_file(cfg), cfg.api_key, now)
    except BrokerSessionError as e:
        if "expired" in str(e):
            raise BrokerSessionError(
                "the Kite access token expired (06:00 IST); log in again: mandi broker login kite"
            ) from None
        raise


def rest_client(cfg: KiteConfig, session: BrokerSession | None = None) -> KiteRest:
    s = session or current(cfg)
    return KiteRest(
        s.api_key,
        s.access_token,
        root=cfg.rest_url,
        timeout=cfg.timeout_s,
        history_rate=cfg.history_per_second,
    )


def logout(cfg: KiteConfig) -> bool:
    """Invalidate the token at Kite (best effort) and delete the file; False if none."""
    path = token_file(cfg)
    s = load_session(path, "kite")
    if s is None:
        return False
    rest = KiteRest(s.api_key, s.access_token, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        rest.invalidate_session()
    except BrokerSessionError:
        pass  # already dead at Kite
    finally:
        rest.close()
        delete_session(path)
    return True
