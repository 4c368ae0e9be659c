"""The README's shell examples, for the tests that check them (tests/integration/test_readme.py
parses every command line; tests/browser/test_first_run.py runs the tour block against a fresh
``mandi run``)."""

from __future__ import annotations

import configparser
import functools
import pathlib
import re
import shlex
from typing import Any

import typer

from mandi.cli import app

ROOT = pathlib.Path(__file__).resolve().parents[1]
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
    line = re.sub(r"\s\d?(>>?|<)&?\s*\S+", " ", line)  # redirections
    line = re.sub(r"\s&\s*$", "", line)  # in the background
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


def tour_script(port: int) -> str:
    """The README block marked ``readme-test: run``, as a bash script against ``port``."""
    blocks = [text for run, text in shell_blocks() if run]
    assert len(blocks) == 1, "the README marks one tour block to run"
    return "set -euo pipefail\n" + blocks[0].replace("localhost:8080", f"127.0.0.1:{port}")
