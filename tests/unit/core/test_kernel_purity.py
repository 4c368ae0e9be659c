"""The kernel does no I/O, never reads the wall clock and never reaches into the shell (DESIGN §1);
its packages form layers that only import downwards. Checked on the source, so an import inside
a function or under ``TYPE_CHECKING`` counts as much as one at the top of a module."""

import ast
import pathlib
import re

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
    "system",
    "backtest",
    "bus/memory.py",
    "bus/codec.py",
]
# The shell: packages and modules that do I/O (or load configuration from files and the
# environment). The kernel may not import them, not even lazily.
SHELL = (
    "mandi.feeds",
    "mandi.stores",
    "mandi.services",
    "mandi.web",
    "mandi.cli",
    "mandi.brokers",
    "mandi.bus.redis",
    "mandi.ml",
    "mandi.config",
    "mandi.logs",
    "mandi.__main__",
)
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
    # files and the environment
    "os",
    "pathlib",
    "tempfile",
    "glob",
    "fileinput",
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
# calls that read, write or list files, whatever object they are called on
FILE_METHODS = {
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "unlink",
    "mkdir",
    "rmdir",
    "rglob",
    "glob",
    "touch",
    "iterdir",
    "is_file",
    "is_dir",
    "tofile",
    "fromfile",
    "savefig",
    "to_csv",
    "to_parquet",
}
NUMPY_FILE_CALLS = {"save", "savez", "savez_compressed", "load", "loadtxt", "savetxt", "genfromtxt"}
PROCESS_ATTRIBUTES = {("sys", "argv"), ("sys", "stdin"), ("sys", "stdout"), ("sys", "exit")}
# The exceptions, each with its reason:
ALLOWED = {
    # the LiveClock the shell injects is the one place that reads the wall clock
    ("core/clock.py", "calls time.time_ns()"),
    # the holiday calendar is package data shipped beside the code (importlib.resources),
    # read-only, like the code itself
    ("core/calendar.py", "calls .read_text()"),
}
SHELL_NAME = re.compile(r"mandi\.[a-z_.]+")

# Layers, bottom to top: a kernel package may import its own package and those of lower layers,
# never one of its own layer or above (so a signal's route only ever goes one way).
LAYERS = (
    ("core",),
    ("model",),
    ("bus",),
    ("pipeline", "options"),
    ("indicators", "portfolio"),
    ("features",),  # ML features reuse the indicators (RSI, SMA) and the chain analytics
    ("strategy", "risk"),
    ("signals",),
    ("execution",),
    ("system",),
    ("backtest",),
)
LAYER_OF = {pkg: i for i, tier in enumerate(LAYERS) for pkg in tier}


def kernel_files():
    for entry in KERNEL:
        p = SRC / entry
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from sorted(p.rglob("*.py"))


def _module_name(rel: str) -> str:
    parts = pathlib.PurePosixPath(rel).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("mandi", *parts))


def imported_modules(tree: ast.AST, rel: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import anywhere in the file — top level, inside
    functions, under ``TYPE_CHECKING`` — with relative imports resolved, ``from a import b``
    counted as ``a.b`` as well as ``a``, and string constants passed to
    ``importlib.import_module`` / ``__import__``."""
    here = _module_name(rel)
    package = here if rel.endswith("__init__.py") else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args:
            f, arg = node.func, node.args[0]
            name = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                found.append((node.lineno, str(arg.value)))
    return found


def _line(violation: str) -> int:
    return int(violation.split(":")[1].split()[0])


def _is_shell(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SHELL)


def violations(path: pathlib.Path, rel: str) -> list[str]:
    """Shell and I/O imports, wall-clock reads, file and environment access in one file."""
    tree = ast.parse(path.read_text(), rel)
    bad = []
    for line, module in imported_modules(tree, rel):
        if module.split(".")[0] in FORBIDDEN_MODULES:
            bad.append(f"{rel}:{line} imports {module.split('.')[0]}")
        elif _is_shell(module):
            shell = next(s for s in SHELL if module == s or module.startswith(s + "."))
            bad.append(f"{rel}:{line} imports the shell module {shell}")
    for node in ast.walk(tree):
        # a module path kept as a string (a table of lazy imports) is an import too
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SHELL_NAME.fullmatch(node.value)
            and _is_shell(node.value)
        ):
            bad.append(f"{rel}:{node.lineno} names the shell module {node.value}")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in PROCESS_ATTRIBUTES
        ):
            bad.append(f"{rel}:{node.lineno} uses {node.value.id}.{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "open":
            bad.append(f"{rel}:{node.lineno} opens a file")
        if not isinstance(f, ast.Attribute):
            continue
        if isinstance(f.value, ast.Name):
            key = (f.value.id, f.attr)
            if key in WALL_CLOCK and (rel, f"calls {f.value.id}.{f.attr}()") not in ALLOWED:
                bad.append(f"{rel}:{node.lineno} calls {f.value.id}.{f.attr}()")
            if f.value.id in ("np", "numpy") and f.attr in NUMPY_FILE_CALLS:
                bad.append(f"{rel}:{node.lineno} calls {f.value.id}.{f.attr}() (files)")
            if f.value.id == "io" and f.attr == "open":
                bad.append(f"{rel}:{node.lineno} opens a file")
        if f.attr in FILE_METHODS and (rel, f"calls .{f.attr}()") not in ALLOWED:
            bad.append(f"{rel}:{node.lineno} calls .{f.attr}() (files)")
    # `from a import b` is seen as a and as a.b: report each line once, in line order
    return sorted(dict.fromkeys(bad), key=_line)


def layer_violations(path: pathlib.Path, rel: str) -> list[str]:
    """Imports of a kernel package of the same layer or a higher one."""
    own = rel.split("/")[0].removesuffix(".py")
    mine = LAYER_OF[own]
    bad = []
    for line, module in imported_modules(ast.parse(path.read_text(), rel), rel):
        parts = module.split(".")
        if parts[0] != "mandi" or len(parts) < 2 or parts[1] == own:
            continue
        theirs = LAYER_OF.get(parts[1])
        if theirs is not None and theirs >= mine:
            bad.append(
                f"{rel}:{line} ({own}, layer {mine}) imports mandi.{parts[1]} (layer {theirs})"
            )
    return sorted(dict.fromkeys(bad), key=_line)


def test_the_kernel_is_pure():
    bad = [v for p in kernel_files() for v in violations(p, str(p.relative_to(SRC)))]
    assert not bad, "\n".join(bad)


def test_kernel_layers_only_import_downwards():
    """strategy, signals, risk and portfolio never import execution or the system kernel;
    execution never imports the system kernel or the backtester; and so on down."""
    bad = [v for p in kernel_files() for v in layer_violations(p, str(p.relative_to(SRC)))]
    assert not bad, "\n".join(bad)


def test_every_kernel_package_has_a_layer():
    packages = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in kernel_files()}
    assert packages <= set(LAYER_OF), packages - set(LAYER_OF)


def test_the_checker_catches_planted_violations(tmp_path):
    planted = tmp_path / "bad.py"
    planted.write_text(
        "import asyncio\n"
        "from sqlite3 import connect\n"
        "import time\n"
        "x = time.time()\n"
        "open('f')\n"
        "def later():\n"
        "    from mandi.services.backtest import api\n"  # lazily, inside a function
        "    from ..brokers import paper\n"  # relative
        "    from mandi.bus import redis\n"
        "    import os\n"
        "    return os.environ\n"
        "LAZY = {'run': 'mandi.services.backtest.api'}\n"
        "def housekeeping(p):\n"
        "    p.read_bytes(); p.unlink(); p.write_text('x')\n"
        "import importlib\n"
        "importlib.import_module('mandi.stores.sqlite')\n"
    )
    found = violations(planted, "backtest/bad.py")
    expected = [
        "imports asyncio",
        "imports sqlite3",
        "calls time.time()",
        "opens a file",
        "7 imports the shell module mandi.services",
        "8 imports the shell module mandi.brokers",
        "9 imports the shell module mandi.bus.redis",
        "10 imports os",
        "names the shell module mandi.services.backtest.api",
        "calls .read_bytes()",
        "calls .unlink()",
        "calls .write_text()",
        "16 imports the shell module mandi.stores",
    ]
    for e in expected:
        assert any(e in v for v in found), (e, found)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    planted = tmp_path / "up.py"
    planted.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from mandi.execution.ports import TradingStore\n"
        "def f():\n"
        "    from mandi.system.kernel import TradingKernel\n"
        "from mandi.model.trading import Latch\n"
    )
    found = layer_violations(planted, "risk/up.py")
    assert len(found) == 2, found
    assert "imports mandi.execution" in found[0] and "imports mandi.system" in found[1]
