"""The README's examples work: every ``mandi …`` command line in its shell blocks (and in the
systemd units) parses with the CLI as it is — a wrong option or command fails here. The tour block
itself runs against a fresh ``mandi run`` in tests/browser/test_first_run.py."""

from __future__ import annotations

import pytest

from readme_examples import ParseError, argv, command_lines, parses, shell_blocks, systemd_commands


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
