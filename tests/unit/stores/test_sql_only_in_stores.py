"""SQL lives only in ``mandi.stores``: no other module of mandi holds an SQL statement or runs
one on a connection (issue 12: the web layer, the CLI and the services call stores functions)."""

from __future__ import annotations

import ast
import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parents[3] / "src" / "mandi"
SQL = re.compile(
    r"^\s*(SELECT\s+\S|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"PRAGMA\s|BEGIN(\s+IMMEDIATE)?\s*$|COMMIT\s*$|ROLLBACK\s*$|CREATE\s+(TABLE|INDEX)\s)",
    re.IGNORECASE,
)
RUNS_SQL = {"execute", "executemany", "executescript"}


def offences(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            out.append(f"{node.lineno}: {node.value[:50]!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RUNS_SQL
            and node.args
            and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
        ):
            out.append(f"{node.lineno}: .{node.func.attr}(...)")
    return out


def test_no_sql_outside_stores():
    found = {
        str(p.relative_to(SRC)): hits
        for p in sorted(SRC.rglob("*.py"))
        if "stores" not in p.relative_to(SRC).parts and (hits := offences(p))
    }
    assert found == {}


def test_the_check_sees_sql():
    assert SQL.match("SELECT * FROM orders") and SQL.match("BEGIN IMMEDIATE")
    assert not SQL.match("SELECT") and not SQL.match("NIFTY MID SELECT")
    stores = offences(SRC / "stores" / "queries.py")
    assert len(stores) >= 10
