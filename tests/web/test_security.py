"""Tokens at rest, the token CLI, bind safety, and ``mandi run`` serving the dashboard."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest

from mandi.core.errors import ConfigError
from mandi.web.security import RateLimiter, Security, TokenStore, check_bind, is_loopback
from ports import free_port


def test_tokens_are_hashed_at_rest_and_verified(tmp_path):
    path = tmp_path / "conf" / "tokens.json"
    store = TokenStore(str(path))
    info, secret = store.create("trade", "laptop")
    assert secret.startswith("mandi_") and len(secret) > 40
    text = path.read_text()
    assert secret not in text and secret.split("_")[-1] not in text
    assert json.loads(text)["tokens"][0]["sha256"] == info.hash
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert store.verify(secret) == info
    assert store.verify(secret[:-1]) is None and store.verify("") is None
    other = TokenStore(str(path))  # a running server sees new and revoked tokens
    assert other.verify(secret) is not None
    assert store.revoke(info.id) and not store.revoke(info.id)
    other._checked = 0.0
    assert other.verify(secret) is None
    with pytest.raises(ConfigError):
        store.create("admin")


def test_sessions_end_when_their_token_is_revoked(tmp_path):
    store = TokenStore(str(tmp_path / "t.json"))
    info, secret = store.create("read")
    sec = Security(store)
    sid, _ = sec.login(secret)
    assert sec.authenticate(None, sid).token_id == info.id
    store.revoke(info.id)
    store._checked = 0.0
    with pytest.raises(Exception, match="token is required"):
        sec.authenticate(None, sid)


def test_rate_limiter_is_a_sliding_window():
    rl = RateLimiter(3, 0.2)
    assert [rl.hit("a", now=t) for t in (10.0, 10.05, 10.1)] == [0.0, 0.0, 0.0]
    assert rl.hit("a", now=10.15) == pytest.approx(0.05) and rl.hit("b", now=10.15) == 0.0
    assert rl.hit("a", now=10.21) == 0.0  # the first hit left the window
    assert rl.hit("a", now=10.22) > 0  # ... and only that one
    assert rl.hit("c") == 0.0  # the clock's own time by default


def test_a_non_loopback_bind_needs_a_token(tmp_path):
    store = TokenStore(str(tmp_path / "t.json"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
        check_bind(host, store)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match=r"run\.host"):
            check_bind(host, store)
    store.create("read")
    check_bind("0.0.0.0", store)


def mandi(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_token_cli_prints_the_secret_once(tmp_path):
    f = str(tmp_path / "tokens.json")
    p = mandi("token", "create", "--scope", "trade", "--name", "ci", "--file", f)
    assert p.returncode == 0, p.stderr
    secret = p.stdout.strip()
    assert re.fullmatch(r"mandi_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", secret)
    assert "shown only now" in p.stderr and secret not in p.stderr
    listed = mandi("token", "list", "--file", f, "--json")
    rows = json.loads(listed.stdout)
    assert rows[0]["scope"] == "trade" and rows[0]["name"] == "ci" and secret not in listed.stdout
    assert TokenStore(f).verify(secret) is not None
    assert mandi("token", "revoke", rows[0]["id"], "--file", f).returncode == 0
    assert mandi("token", "revoke", rows[0]["id"], "--file", f).returncode == 2
    assert mandi("token", "create", "--scope", "root", "--file", f).returncode == 2


def test_mandi_run_serves_the_dashboard_and_refuses_an_open_bind(tmp_path):
    tokens = str(tmp_path / "tokens.json")
    env = {"MANDI_WEB__TOKENS_FILE": tokens}
    p = mandi(
        "run",
        "--db",
        str(tmp_path / "a.db"),
        "--duration",
        "5",
        env={**env, "MANDI_RUN__HOST": "0.0.0.0"},
    )
    assert p.returncode == 2
    assert "run.host = '0.0.0.0'" in p.stderr and "mandi token create" in p.stderr
    _, secret = TokenStore(tokens).create("read")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--db",
            str(tmp_path / "b.db"),
            "--port",
            str(port),
            "--speed",
            "5",
            "--duration",
            "90",
            "--status-interval",
            "0",
            "--date",
            "2026-04-13",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<title>mandi" in page.text
        status = httpx.get(
            url + "/api/v1/status", timeout=10, headers={"Authorization": f"Bearer {secret}"}
        )
        assert status.status_code == 200 and status.json()["feed"] == "sim"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f"dashboard and API on http://127.0.0.1:{port}" in err
    assert secret not in err
    with socket.socket() as held:  # a port in use stops start-up with one clear line
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = mandi(
            "run",
            "--db",
            str(tmp_path / "c.db"),
            "--port",
            str(held.getsockname()[1]),
            "--duration",
            "1",
            env=env,
        )
    assert busy.returncode == 2 and "the port is in use" in busy.stderr
