"""Broker sessions on disk: the daily access token in a 0600 file, shared by every broker
adapter (Kite, Angel One).

The file holds JSON ``{"broker", "api_key", "user_id", "user_name", "access_token",
"login_ns", "expires_ns"}`` and, for brokers that have them, ``refresh_token`` and
``feed_token`` (Angel One). It is written atomically with mode 0600 in a 0700 directory, never
logged (``repr`` of a :class:`BrokerSession` hides the token) and never copied into the
database. ``$XDG_CONFIG_HOME/mandi/<broker>-session.json`` unless configured.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from mandi.core.errors import BrokerSessionError


@dataclass(frozen=True)
class BrokerSession:
    broker: str
    api_key: str
    user_id: str
    user_name: str
    access_token: str = field(repr=False)
    login_ns: int
    expires_ns: int
    refresh_token: str = field(default="", repr=False)
    feed_token: str = field(default="", repr=False)

    def expired(self, now_ns: int) -> bool:
        return now_ns >= self.expires_ns


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mandi"


def cache_dir(broker: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mandi" / broker


def session_path(broker: str, configured: str = "") -> Path:
    return Path(configured) if configured else config_dir() / f"{broker}-session.json"


def save_session(path: Path, s: BrokerSession) -> None:
    """Write atomically, 0600, in a directory only the user can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = msgspec.json.encode(
        {
            "broker": s.broker,
            "api_key": s.api_key,
            "user_id": s.user_id,
            "user_name": s.user_name,
            "access_token": s.access_token,
            "login_ns": s.login_ns,
            "expires_ns": s.expires_ns,
            "refresh_token": s.refresh_token,
            "feed_token": s.feed_token,
        }
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".session-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_session(path: Path, broker: str) -> BrokerSession | None:
    """The stored session, or None when there is none. A file readable by others is refused
    (its token may have leaked: log in again)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BrokerSessionError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"delete it and log in again: mandi broker login {broker}"
        )
    try:
        d = msgspec.json.decode(path.read_bytes())
        if d.get("broker") != broker:
            return None
        return BrokerSession(
            broker,
            str(d["api_key"]),
            str(d.get("user_id", "")),
            str(d.get("user_name", "")),
            str(d["access_token"]),
            int(d["login_ns"]),
            int(d["expires_ns"]),
            str(d.get("refresh_token", "")),
            str(d.get("feed_token", "")),
        )
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise BrokerSessionError(
            f"{path} is not a session file; delete it and log in again: mandi broker login {broker}"
        ) from None


def delete_session(path: Path) -> bool:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return True
    return False


def require(cfg: object, broker: str, *keys: str) -> None:
    """Stop with a clear error naming the first unset credential and its variable."""
    from mandi.core.errors import ConfigError

    for k in keys:
        if not getattr(cfg, k):
            env = f"MANDI_BROKER__{broker.upper()}__{k.upper()}"
            raise ConfigError(f"broker.{broker}.{k}", "", f"not set (put it in ${env})")


def current(broker: str, title: str, path: Path, api_key: str, now_ns: int) -> BrokerSession:
    """The stored, unexpired session of this API key (else a clear error saying what to do)."""
    s = load_session(path, broker)
    login = f"mandi broker login {broker}"
    if s is None:
        raise BrokerSessionError(f"no {title} session on this machine; log in: {login}")
    if api_key and s.api_key != api_key:
        raise BrokerSessionError(
            f"the stored {title} session belongs to another API key; log in: {login}"
        )
    if s.expired(now_ns):
        raise BrokerSessionError(f"the {title} session expired; log in again: {login}")
    return s
