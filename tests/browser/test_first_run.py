"""The first run, as a new user meets it, on one fresh ``mandi run`` (a home directory with no
token yet, the default speed):

* it prints a one-time login link; the link opens the dashboard logged in (and leaves the
  address bar); within the first minute of the market a paper order fills and its position shows
  with a moving MTM; the same link is then refused;
* the README's tour, run as written in bash with ``mandi`` on the PATH, works against it — the
  option it trades derived from the sim's current contracts by ``mandi instruments search``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import expect

from ports import free_port
from readme_examples import tour_script

LINK = re.compile(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{20,}")
FIRST_MINUTE_MS = 60_000


@dataclass
class FreshRun:
    proc: subprocess.Popen[str]
    port: int
    cwd: str
    env: dict[str, str]
    link: str = ""
    printed_at: float = 0.0
    out: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """`mandi run` in an empty directory, for a user with no token (HOME is new)."""
    tmp = tmp_path_factory.mktemp("first-run")
    home = tmp / "home"
    (home / "bin").mkdir(parents=True)
    shim = home / "bin" / "mandi"  # `mandi` on the PATH, as the README tells users to do
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mandi "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MANDI_SIM__DATE": "2026-04-13",  # a fixed day: the same market on every run
    }
    env.pop("MANDI_WEB__TOKENS_FILE", None)
    if env.get("PYTHONPATH"):  # the run starts in another directory
        env["PYTHONPATH"] = os.pathsep.join(map(os.path.abspath, env["PYTHONPATH"].split(":")))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mandi", "run", "--port", str(port), "--status-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
        env=env,
    )
    run = FreshRun(proc, port, str(tmp), env)
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.out.append(line)
            m = LINK.search(line)
            if m and not run.link:
                run.link, run.printed_at = m.group(0), time.monotonic()
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(180), "no login link printed:\n" + "".join(run.out[-40:])
        yield run
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(10)
    text = "".join(run.out)
    assert proc.returncode == 0, text[-3000:]
    assert len(LINK.findall(text)) == 1  # printed once, never logged


def test_a_fresh_run_opens_from_its_link_and_trades_in_the_first_minute(fresh, browser, artifacts):
    owner = os.path.join(fresh.env["XDG_CONFIG_HOME"], "mandi", "owner-token")
    assert oct(os.stat(owner).st_mode & 0o777) == "0o600"
    assert any("created the owner's trade token" in line for line in fresh.out)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(fresh.link)
    expect(page.locator("#login")).to_be_hidden()
    assert page.url == f"http://127.0.0.1:{fresh.port}/"  # the code left the address bar
    expect(page.locator("#who")).to_have_text("trade")
    expect(page.locator("#conn")).to_have_text("live", timeout=FIRST_MINUTE_MS)
    # the default strategies, warm from the preceding sessions, trade at the open
    filled = page.locator("#orders tbody tr[data-id]", has_text="FILLED")
    expect(filled.first).to_be_visible(timeout=FIRST_MINUTE_MS)
    expect(page.locator("#positions tbody tr[data-id]").first).to_be_visible(
        timeout=FIRST_MINUTE_MS
    )
    took = time.monotonic() - fresh.printed_at
    assert took < 60, f"the first paper position took {took:.0f} s after the link"
    # ...and it lives: its MTM moves with the market, P&L and the signal are shown
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
    other.goto(fresh.link)
    expect(other.locator("#login")).to_be_visible()
    expect(other.locator("#login-msg")).to_contain_text("used already or has expired")
    assert other.url == f"http://127.0.0.1:{fresh.port}/"
    ctx.close()


def test_the_readme_tour_runs_as_written(fresh):
    p = subprocess.run(
        ["bash", "-c", tour_script(fresh.port)],
        cwd=fresh.cwd,
        env=fresh.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    symbol = re.search(r"NIFTY\w+24200CE", p.stdout)
    assert symbol, p.stdout[:2000]
    assert f"order accepted (paper mode): BUY 65 {symbol.group(0)}" in p.stdout
    assert p.stdout.count(symbol.group(0)) >= 3  # search, the order, the positions table
    assert "trading HALTED: coffee break" in p.stdout and "trading resumed" in p.stdout
    assert re.search(r"backups/mandi-\d{8}-\d{6}\.db .* \(integrity ok\)", p.stdout)
    assert '"day_pnl"' in p.stdout and '"signal_id"' in p.stdout
