"""The Groww session of this machine: the daily access token in the 0600 token file.

Three ways in, tried in this order (Groww's documented approaches):

1. ``access_token`` — a token generated on Groww's "Trading APIs" page, used as it is;
2. ``totp_secret`` — the TOTP flow: ``/v1/token/api/access`` with ``key_type: totp`` and the
   6-digit code computed here with ``pyotp`` (the base32 secret behind the QR code);
3. ``api_secret`` — the approval flow: ``key_type: approval`` with SHA-256(secret + epoch
   seconds) (Groww wants the key approved once a day on its API keys page).

Flows 2 and 3 authenticate with ``Authorization: Bearer <api_key>``. The token ends at its
``expiry`` (06:00 IST); :func:`fresh` logs in again ``refresh_before_min`` before then when a
TOTP secret or API secret is configured, else it fails closed with a clear "log in again".
"""

from __future__ import annotations

import time
from pathlib import Path

from mandi.brokers import session as sessions
from mandi.brokers.groww.rest import GrowwRest
from mandi.brokers.groww.wire import checksum, next_six_ist, token_expiry_ns
from mandi.brokers.keeper import SessionKeeper
from mandi.brokers.session import BrokerSession, delete_session, load_session, save_session
from mandi.config import GrowwConfig
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import BrokerError, BrokerInputError, BrokerSessionError, ConfigError

LOGIN = "mandi broker login groww"


def token_file(cfg: GrowwConfig) -> Path:
    return sessions.session_path("groww", cfg.token_file)


def totp_now(secret: str, at: float | None = None) -> str:
    """The 6-digit TOTP of ``secret`` (RFC 6238, 30 s steps) — what the authenticator shows."""
    import pyotp

    try:
        return str(pyotp.TOTP(secret.replace(" ", "").upper()).at(at or time.time()))
    except Exception:  # binascii.Error, ValueError: not base32
        raise ConfigError(
            "broker.groww.totp_secret", "<hidden>", "not a base32 TOTP secret"
        ) from None


def mint_body(cfg: GrowwConfig, now_s: int | None = None) -> dict[str, object]:
    """The body of ``/v1/token/api/access``: TOTP when a TOTP secret is set, else approval."""
    if cfg.totp_secret:
        return {"key_type": "totp", "totp": totp_now(cfg.totp_secret)}
    if cfg.api_secret:
        ts = int(time.time()) if now_s is None else now_s
        return {"key_type": "approval", "checksum": checksum(cfg.api_secret, ts), "timestamp": ts}
    raise ConfigError(
        "broker.groww.totp_secret",
        "",
        "not set: set $MANDI_BROKER__GROWW__TOTP_SECRET (TOTP flow), "
        "$MANDI_BROKER__GROWW__API_SECRET (approval flow) or $MANDI_BROKER__GROWW__ACCESS_TOKEN",
    )


def _mint(cfg: GrowwConfig) -> tuple[str, int]:
    """A new access token and its expiry (ns)."""
    sessions.require(cfg, "groww", "api_key")
    rest = GrowwRest(cfg.api_key, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        d = rest.mint(mint_body(cfg))
    except BrokerInputError as e:  # a refused TOTP, checksum or key
        raise BrokerSessionError(f"Groww refused the login ({e})") from None
    finally:
        rest.close()
    return str(d["token"]), token_expiry_ns(d, time.time_ns())


def login(cfg: GrowwConfig) -> BrokerSession:
    """Get an access token (see the module docstring), check it with the profile, and store the
    session (0600)."""
    now = time.time_ns()
    if cfg.access_token:
        token, expires = cfg.access_token, next_six_ist(now)
    else:
        token, expires = _mint(cfg)
    rest = GrowwRest(token, root=cfg.rest_url, timeout=cfg.timeout_s)
    try:
        profile = rest.profile()
    finally:
        rest.close()
    s = BrokerSession(
        "groww",
        cfg.api_key,
        str(profile.get("ucc") or profile.get("vendor_user_id") or ""),
        str(profile.get("vendor_user_id") or ""),
        token,
        now,
        expires,
    )
    save_session(token_file(cfg), s)
    return s


def current(cfg: GrowwConfig, now_ns: int | None = None) -> BrokerSession:
    now = time.time_ns() if now_ns is None else now_ns
    return sessions.current("groww", "Groww", token_file(cfg), cfg.api_key, now)


def fresh(cfg: GrowwConfig, now_ns: int | None = None) -> BrokerSession:
    """The stored session, renewed first when it ends within ``refresh_before_min``; one that
    cannot be renewed fails closed (:class:`BrokerSessionError`: log in again)."""
    now = time.time_ns() if now_ns is None else now_ns
    s = current(cfg, now)
    if s.expires_ns - now > cfg.refresh_before_min * 60 * NS_PER_SECOND:
        return s
    return renew(cfg, s)


def renew(cfg: GrowwConfig, s: BrokerSession) -> BrokerSession:
    """Log in again with the configured TOTP secret or API secret (Groww has no refresh token)."""
    if not (cfg.totp_secret or cfg.api_secret) or not cfg.api_key:
        raise BrokerSessionError(
            f"the Groww session ends at 06:00 IST and no TOTP secret or API secret is set to "
            f"renew it; log in again: {LOGIN}"
        )
    try:
        token, expires = _mint(cfg)
    except BrokerError as e:
        raise BrokerSessionError(
            f"the Groww session could not be renewed ({e}); log in again: {LOGIN}"
        ) from None
    new = BrokerSession("groww", s.api_key, s.user_id, s.user_name, token, time.time_ns(), expires)
    save_session(token_file(cfg), new)
    return new


def rest_client(cfg: GrowwConfig, session: BrokerSession | None = None) -> GrowwRest:
    s = session or fresh(cfg)
    return GrowwRest(
        s.access_token, root=cfg.rest_url, timeout=cfg.timeout_s,
        history_rate=cfg.history_per_second,
    )  # fmt: skip


def logout(cfg: GrowwConfig) -> bool:
    """Forget the session (Groww has no logout call: tokens are revoked on its web page);
    False if there was none."""
    path = token_file(cfg)
    if load_session(path, "groww") is None:
        return False
    return delete_session(path)


def keeper(cfg: GrowwConfig, session: BrokerSession, offset_ns: int = 0) -> SessionKeeper:
    """The session of a running node, shared by the feed and the broker: logged in again before
    06:00 IST when a TOTP secret or API secret allows, else failing closed then."""
    k = SessionKeeper(cfg, session, renew, offset_ns)
    k.title = "Groww"
    return k
