"""The README's examples work: every ``mandi …`` command line in its shell blocks (and in the
systemd units) parses with the CLI as it is, and the tour block marked ``readme-test: run`` runs
as written, in bash, against a ``mandi run`` on the simulator — its option symbol derived from the
sim's current contracts by ``mandi instruments search``, not hard-coded."""

from __future__ import annotations

import configparser
import functools
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
import typer

from mandi.cli import app

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_MARK = "<!-- readme-test: run"
BLOCK = re.compile(r"^```(sh|bash)\s*$(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def shell_blocks() -> list[tuple[bool, str]]:
    """(marked to run, text) of every sh/bash block of the README."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()].rstrip().splitlines()[-1:] or [""]
        out.append((before[0].startswith(RUN_MARK), m.group(2)))
    return out


def command_lines(text: str) -> list[str]:
    """Logical lines (backslash continuations joined) that run ``mandi``."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)  # a comment
        for part in re.split(r"\|\||&&|\|(?!\|)|;", line):
            words = part.strip()
            words = re.sub(r"^(\w+=\S*\s+)+", "", words)  # VAR=value mandi ...
            if re.match(r"^(\.venv/bin/|/opt/mandi/\.venv/bin/)?mandi\s", words + " "):
                out.append(words)
    return out


def argv(line: str) -> list[str]:
    line = re.sub(r"\$\([^)]*\)", "X", line)  # command substitutions
    line = re.sub(r"\$\{?\w+\}?", "X", line)  # variables
    words = shlex.split(line, comments=True)
    return words[1:]


class ParseError(Exception):
    pass


@functools.cache
def _root() -> Any:
    return typer.main.get_command(app)


def parses(args: list[str]) -> None:
    """Resolve the command and parse its options as the CLI does, without running it; raises
    :class:`ParseError` with the CLI's message when it would refuse them."""
    cmd: Any = _root()
    try:
        ctx = cmd.make_context("mandi", list(args))
        while hasattr(cmd, "resolve_command"):
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                break
            name, sub, rest = cmd.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            cmd = sub
            ctx = cmd.make_context(name, rest, parent=ctx)
    except typer.Exit:  # --version and --help end the parsing
        pass
    except Exception as e:  # the CLI's usage errors (typer's click)
        if not hasattr(e, "format_message"):
            raise
        raise ParseError(e.format_message()) from None


def systemd_commands() -> list[str]:
    out = []
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.read(unit)
        out.append(cp["Service"]["ExecStart"])
    return out


def test_every_readme_command_line_parses():
    lines = [ln for _, text in shell_blocks() for ln in command_lines(text)]
    lines += systemd_commands()
    assert len(lines) > 30
    bad = []
    for line in lines:
        try:
            parses(argv(line))
        except ParseError as e:
            bad.append(f"{line}\n    -> {e}")
    assert not bad, "README commands that do not parse:\n" + "\n".join(bad)


def test_the_check_catches_a_wrong_command():
    with pytest.raises(ParseError, match="--quantity"):
        parses(argv("mandi order buy X --quantity 65"))
    with pytest.raises(ParseError, match="instrument"):
        parses(argv("mandi instrument search NIFTY"))
    with pytest.raises(ParseError):
        parses(argv("mandi db backup --keep many"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_tour_runs_against_the_sim(tmp_path):
    blocks = [text for run, text in shell_blocks() if run]
    assert len(blocks) == 1, "the README marks one tour block to run"
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    shim = home / "bin" / "mandi"  # `mandi` on the PATH, as the README tells users to do
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mandi "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MANDI_SIM__DATE": "2026-04-13",  # one fixed market for the node and the commands
    }
    env.pop("MANDI_WEB__TOKENS_FILE", None)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(map(os.path.abspath, env["PYTHONPATH"].split(":")))
    port = free_port()
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--speed",
            "10",
            "--port",
            str(port),
            "--status-interval",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert node.stdout is not None
        for line in node.stdout:
            out.append(line)
            if "trading layer started" in line or "?token=" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(180), "".join(out[-30:])
        script = "set -euo pipefail\n" + blocks[0].replace("localhost:8080", f"127.0.0.1:{port}")
        p = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            node.kill()
    assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    symbol = re.search(r"NIFTY\w+24200CE", p.stdout)
    assert symbol, p.stdout[:2000]
    assert f"order accepted (paper mode): BUY 65 {symbol.group(0)}" in p.stdout
    assert p.stdout.count(symbol.group(0)) >= 3  # search, the order, the positions table
    assert "trading HALTED: coffee break" in p.stdout and "trading resumed" in p.stdout
    assert re.search(r"backups/mandi-\d{8}-\d{6}\.db .* \(integrity ok\)", p.stdout)
    assert '"day_pnl"' in p.stdout and '"signal_id"' in p.stdout
    assert node.returncode == 0
