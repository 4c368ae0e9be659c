"""Real headless Chromium (Debian's ``chromium`` driven by Playwright's Python API; Playwright's own
browser download is never used) against a real ``mandi run`` node on a loopback port."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from mandi.web.embed import start_node
from mandi.web.security import TokenStore

CHROMIUM = os.environ.get("MANDI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="session")
def tokens(tmp_path_factory):
    store = TokenStore(str(tmp_path_factory.mktemp("tokens") / "tokens.json"))
    out = {"path": store.path}
    for scope in ("read", "trade"):
        out[scope] = store.create(scope, f"browser-{scope}")[1]
    return out


@pytest.fixture(scope="package")  # stopped when the package's tests are done
def live(tmp_path_factory, tokens):
    db = tmp_path_factory.mktemp("node") / "mandi.db"
    node = start_node(
        {
            "store.db": str(db),
            "sim.date": "2026-04-13",
            "sim.seed": 7,
            "run.speed": 8.0,
            "run.port": 0,
            "run.status_interval": 0,
            # the default strategies enter two positions at the open: room for the tests' own
            "risk.max_concurrent_positions": 8,
            "web.tokens_file": tokens["path"],
            "pipeline.timeframes": (15, 60, 120, 180, 300),
            "indicators.timeframes": (15, 60),
            "web.metrics_interval_s": 1.0,
        }
    )
    yield node
    node.stop()


@pytest.fixture(scope="package")  # Playwright's sync API runs an event loop in this thread:
def browser():  # it must be gone before later packages' tests call asyncio.run()
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make system-deps`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    p = ctx.new_page()
    p.errors = []  # console errors and uncaught exceptions: a test fails on any
    p.on(
        "console",
        lambda m: p.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
    )
    p.on("pageerror", lambda e: p.errors.append(f"pageerror: {e}"))
    yield p
    ctx.close()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
