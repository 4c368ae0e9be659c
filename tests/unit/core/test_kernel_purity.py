"""The kernel does no I/O and never reads the wall clock (DESIGN §1), checked on the source."""

import ast
import pathlib

import mandi

SRC = pathlib.Path(mandi.__file__).parent
KERNEL = [
    "core",
    "model",
    "pipeline",
    "indicators",
    "options",
    "features",
    "strategy",
    "signals",
    "risk",
    "execution",
    "portfolio",
    "backtest",
    "bus/memory.py",
    "bus/codec.py",
]
FORBIDDEN_MODULES = {
    "asyncio",
    "sqlite3",
    "socket",
    "redis",
    "httpx",
    "requests",
    "websockets",
    "fastapi",
    "uvicorn",
    "clickhouse_connect",
    "chdb",
    "threading",
    "subprocess",
    "multiprocessing",
    "urllib",
    "http",
    "shutil",
}
WALL_CLOCK = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "sleep"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
}
# The one place allowed to read the wall clock: the LiveClock the shell injects.
ALLOWED = {("core/clock.py", "time", "time_ns")}


def kernel_files():
    for entry in KERNEL:
        p = SRC / entry
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from sorted(p.rglob("*.py"))


def violations(path: pathlib.Path, rel: str) -> list[str]:
    """I/O imports, wall-clock reads and file opens in one source file."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), rel)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        bad += [f"{rel}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                key = (f.value.id, f.attr)
                if key in WALL_CLOCK and (rel, *key) not in ALLOWED:
                    bad.append(f"{rel}:{node.lineno} calls {f.value.id}.{f.attr}()")
            if isinstance(f, ast.Name) and f.id == "open":
                bad.append(f"{rel}:{node.lineno} opens a file")
    return bad


def test_the_kernel_is_pure():
    bad = [v for p in kernel_files() for v in violations(p, str(p.relative_to(SRC)))]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_planted_violations(tmp_path):
    planted = tmp_path / "bad.py"
    planted.write_text(
        "import asyncio\nfrom sqlite3 import connect\nimport time\nx = time.time()\nopen('f')\n"
    )
    found = violations(planted, "bad.py")
    assert len(found) == 4, found
