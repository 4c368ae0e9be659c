"""The Angel One session of this machine: login (client code + PIN + TOTP), the JWT, refresh
and feed tokens in the 0600 token file, refresh before expiry, logout.

The TOTP is computed here with ``pyotp`` from ``broker.angel.totp_secret`` (the base32 secret
shown when TOTP was enabled; keep it in ``$MANDI_BROKER__ANGEL__TOTP_SECRET``). The session
lasts until the JWT's ``exp``; :func:`fresh` refreshes it through ``generateTokens``
``refresh_before_min`` before then, and when it cannot (the refresh token is refused, or the
session already ended) it fails closed with a clear "log in again".
"""

from __future__ import annotations

import time
from pathlib import Path

from mandi.brokers import session as sessions
from mandi.brokers.angel.rest import AngelRest
from mandi.brokers.angel.wire import session_expiry_ns
from mandi.brokers.session import BrokerSession, delete_session, load_session, save_session
from mandi.config import AngelConfig
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import BrokerError, BrokerSessionError


def token_file(cfg: AngelConfig) -> Path:
    return sessions.session_path("angel", cfg.token_file)


def totp_now(secret: str, at: float | None = None) -> str:
    """The 6-digit TOTP of ``secret`` (RFC 6238, 30 s steps) — what the authenticator shows."""
    import pyotp

    try:
        return str(pyotp.TOTP(secret.replace(" ", "").upper()).at(at or time.time()))
    except Exception:  # binascii.Error, ValueError: not base32
        from mandi.core.errors import ConfigError

        raise ConfigError(
            "broker.angel.totp_secret", "<hidden>", "not a base32 TOTP secret"
        ) from None


def _session(cfg: AngelConfig, d: dict[str, object], profile: dict[str, object]) -> BrokerSession:
    now = time.time_ns()
    jwt = str(d["jwtToken"]).removeprefix("Bearer ")
    return BrokerSession(
        "angel",
        cfg.api_key,
        str(profile.get("clientcode") or cfg.client_code),
        str(profile.get("name") or ""),
        jwt,
        now,
        session_expiry_ns(jwt, now),
        str(d.get("refreshToken") or ""),
        str(d.get("feedToken") or ""),
    )


def login(cfg: AngelConfig) -> BrokerSession:
    """Log in with the client code, PIN and a fresh TOTP; store the session (0600)."""
    sessions.require(cfg, "angel", "api_key", "client_code", "pin", "totp_secret")
    rest = AngelRest(cfg.api_key, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        d = rest.login(cfg.client_code, cfg.pin, totp_now(cfg.totp_secret))
        profile = rest.profile()
    finally:
        rest.close()
    s = _session(cfg, d, profile)
    save_session(token_file(cfg), s)
    return s


def current(cfg: AngelConfig, now_ns: int | None = None) -> BrokerSession:
    now = time.time_ns() if now_ns is None else now_ns
    return sessions.current("angel", "Angel One", token_file(cfg), cfg.api_key, now)


def fresh(cfg: AngelConfig, now_ns: int | None = None) -> BrokerSession:
    """The stored session, refreshed first when it ends within ``refresh_before_min``. A
    refused refresh fails closed (:class:`BrokerSessionError`: log in again)."""
    now = time.time_ns() if now_ns is None else now_ns
    s = current(cfg, now)
    if s.expires_ns - now > cfg.refresh_before_min * 60 * NS_PER_SECOND:
        return s
    return refresh(cfg, s)


def refresh(cfg: AngelConfig, s: BrokerSession) -> BrokerSession:
    if not s.refresh_token:
        raise BrokerSessionError(
            "the Angel One session has no refresh token; log in again: mandi broker login angel"
        )
    rest = AngelRest(s.api_key, s.access_token, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        d = rest.refresh(s.refresh_token)
    except BrokerError as e:
        raise BrokerSessionError(
            f"the Angel One session could not be refreshed ({e}); log in again: "
            "mandi broker login angel"
        ) from None
    finally:
        rest.close()
    jwt = str(d["jwtToken"]).removeprefix("Bearer ")
    new = BrokerSession(
        "angel",
        s.api_key,
        s.user_id,
        s.user_name,
        jwt,
        s.login_ns,
        session_expiry_ns(jwt, time.time_ns()),
        str(d.get("refreshToken") or s.refresh_token),
        str(d.get("feedToken") or s.feed_token),
    )
    save_session(token_file(cfg), new)
    return new


def rest_client(cfg: AngelConfig, session: BrokerSession | None = None) -> AngelRest:
    s = session or fresh(cfg)
    return AngelRest(
        s.api_key,
        s.access_token,
        root=cfg.rest_url,
        timeout=cfg.timeout_s,
        history_rate=cfg.history_per_second,
    )


def logout(cfg: AngelConfig) -> bool:
    """End the session at Angel One (best effort) and delete the file; False if none."""
    path = token_file(cfg)
    s = load_session(path, "angel")
    if s is None:
        return False
    rest = AngelRest(s.api_key, s.access_token, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        rest.logout(s.user_id)
    except BrokerSessionError:
        pass  # already dead at Angel One
    finally:
        rest.close()
        delete_session(path)
    return True
