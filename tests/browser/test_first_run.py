"""The first run, as a new user meets it: ``mandi run`` on a machine with no token prints a
one-time login link; the link opens the dashboard logged in (and leaves the address bar); within
the first minute of the market, at the default speed, a paper order fills and its position shows
with a moving MTM — then the same link is refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from playwright.sync_api import expect

LINK = re.compile(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{20,}")
FIRST_MINUTE_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_fresh_run_opens_from_its_link_and_trades_in_the_first_minute(
    browser, tmp_path, artifacts
):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}  # nobody has a token yet
    env.pop("MANDI_WEB__TOKENS_FILE", None)
    if env.get("PYTHONPATH"):  # the run starts in another directory
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep)
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--db",
            str(tmp_path / "mandi.db"),
            "--port",
            str(port),
            "--date",
            "2026-04-13",  # a fixed day: the same market every run (the default speed, 1×)
            "--status-interval",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    out: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if LINK.search(line):
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(180), "no login link printed:\n" + "".join(out[-40:])
        link = next(m.group(0) for line in out if (m := LINK.search(line)))
        owner = tmp_path / "config" / "mandi" / "owner-token"
        assert oct(owner.stat().st_mode & 0o777) == "0o600"
        started = time.monotonic()
        ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(link)
        expect(page.locator("#login")).to_be_hidden()
        assert page.url == f"http://127.0.0.1:{port}/"  # the code left the address bar
        expect(page.locator("#who")).to_have_text("trade")
        expect(page.locator("#conn")).to_have_text("live", timeout=FIRST_MINUTE_MS)
        # the default strategies, warm from the preceding sessions, trade at the open
        filled = page.locator("#orders tbody tr[data-id]", has_text="FILLED")
        expect(filled.first).to_be_visible(timeout=FIRST_MINUTE_MS)
        position = page.locator("#positions tbody tr[data-id]")
        expect(position.first).to_be_visible(timeout=FIRST_MINUTE_MS)
        took = time.monotonic() - started
        assert took < 60, f"the first paper order took {took:.0f} s"
        # ...and it lives: its MTM moves with the market, P&L is shown
        mtm0 = page.locator("#positions tbody tr[data-id] td").nth(4).inner_text()
        page.wait_for_function(
            "m => document.querySelector('#positions tbody tr[data-id] td:nth-child(5)')"
            ".innerText !== m",
            arg=mtm0,
            timeout=FIRST_MINUTE_MS,
        )
        expect(page.locator("#pnl")).to_contain_text("MTM")
        expect(page.locator("#alpha-body")).not_to_have_text("No signal yet.")
        page.screenshot(path=str(artifacts / "first-run.png"), full_page=True)
        assert errors == []
        # the same link in another browser: refused, with a way forward
        other = browser.new_context().new_page()
        other.goto(link)
        expect(other.locator("#login")).to_be_visible()
        expect(other.locator("#login-msg")).to_contain_text("used already or has expired")
        assert other.url == f"http://127.0.0.1:{port}/"
        ctx.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(10)
    text = "".join(out)
    assert proc.returncode == 0, text[-3000:]
    assert len(LINK.findall(text)) == 1  # printed once, never logged
    assert "created the owner's trade token" in text
