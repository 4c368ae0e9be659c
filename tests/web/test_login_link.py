"""One click into the dashboard: the owner's token made on the first start, and one-time login
links — exchanged once for a session cookie and removed from the URL, refused the second time,
expired after their time, rate-limited, never logged."""

from __future__ import annotations

import logging
import os
import stat
import time

import httpx

from mandi.web.security import SESSION_COOKIE, TokenStore, redact_access_log


def test_the_owner_token_is_created_once_with_its_secret_in_a_0600_file(tmp_path):
    store = TokenStore(str(tmp_path / "cfg" / "tokens.json"))
    owner, created = store.ensure_owner()
    assert created and owner.scope == "trade" and owner.owner
    secret_file = tmp_path / "cfg" / "owner-token"
    assert str(secret_file) == store.owner_secret_path
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert store.verify(secret) == owner
    assert secret not in (tmp_path / "cfg" / "tokens.json").read_text()  # hashed at rest
    again, created = TokenStore(store.path).ensure_owner()
    assert again == owner and not created
    assert store.revoke(owner.id) and not secret_file.exists()  # revoking it removes the secret
    fresh, created = store.ensure_owner()  # the next start makes a new one
    assert created and fresh.id != owner.id


def test_a_link_code_works_once_and_expires(tmp_path):
    store = TokenStore(str(tmp_path / "tokens.json"))
    owner, _ = store.ensure_owner()
    code = store.add_link(owner.id, 60)
    assert code not in (tmp_path / "tokens.json").read_text()
    other = TokenStore(store.path)  # the running node and `mandi token link` share the file
    assert other.take_link(code) == owner
    assert other.take_link(code) is None and store.take_link(code) is None  # once only
    short = store.add_link(owner.id, 0.05)
    time.sleep(0.1)
    assert store.take_link(short) is None  # expired
    assert store.take_link("not-a-code") is None


def test_the_link_logs_in_redirects_out_of_the_url_and_is_refused_the_second_time(
    live, web_tokens, watch_logs
):
    store = TokenStore(web_tokens["path"])
    code = store.add_link(web_tokens["trade_id"], 60)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test's client logs its URLs
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.get(f"/?token={code}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"
        cookie = r.cookies.get(SESSION_COOKIE)
        assert cookie and "httponly" in r.headers["set-cookie"].lower()
        me = c.get("/api/v1/auth/session").json()
        assert me["authenticated"] and me["token_id"] == web_tokens["trade_id"]
        assert me["scope"] == "trade" and me["via"] == "session"
    with httpx.Client(base_url=live.url, timeout=30) as c:  # another browser, the same link
        r = c.get(f"/?token={code}")
        assert r.status_code == 303 and r.headers["location"] == "/#login-link-invalid"
        assert SESSION_COOKIE not in r.cookies
        assert not c.get("/api/v1/auth/session").json()["authenticated"]
    assert not any(code in line for line in watch_logs.lines)


def test_the_access_log_never_shows_a_link_code():
    redact_access_log()
    logger = logging.getLogger("uvicorn.access")
    record = logger.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/?token=SeCrEtCoDe&x=1", "1.1", 303),
        None,
    )
    for f in logger.filters:
        f.filter(record)
    line = record.getMessage()
    assert "SeCrEtCoDe" not in line and "token=<redacted>&x=1" in line
