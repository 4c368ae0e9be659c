"""Housekeeping of numba's on-disk cache of the kernel's compiled code — an explicit shell step.

numba invalidates a cached function only when *its own* source file changes, not when a jitted
function it calls from another module does (the callee is compiled into the caller's cache; see
numba's "Cache limitations", numba/numba#1833). ``mandi.options`` kernels call each other across
files, so after an edit of one file (a ``git pull``, a branch switch) a stale cache would run old
code — or abort the process when a symbol it was linked against is gone.

:func:`drop_stale_numba_cache` keeps a digest of all the package's sources next to its cache and
deletes the cached machine code when the digest changes. The kernel does no file I/O, so this is
not done on import: the shell runs it before any kernel code is called — the ``mandi`` command
(:func:`mandi.cli.main`), the test session (``tests/conftest.py``) and the benchmark harness.
An installed (non-editable) mandi replaces every file on upgrade, which numba's own check covers.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

#: the packages whose numba kernels call each other across files
CACHED_PACKAGES = ("mandi.options",)
STAMP = "numba-sources.sha1"


def package_dir(package: str) -> Path | None:
    """The source directory of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def drop_stale_numba_cache(directory: Path) -> bool:
    """Delete the numba cache files (``*.nbi``, ``*.nbc``) under ``directory`` when any of its
    Python sources changed since the last call; True if it deleted them.

    Failures are ignored (the cache is an optimisation; a read-only install uses numba's
    user-wide cache directory)."""
    try:
        sources = sorted(directory.rglob("*.py"))
        digest = hashlib.sha1(b"".join(p.read_bytes() for p in sources)).hexdigest()
        stamp = directory / "__pycache__" / STAMP
        if stamp.is_file() and stamp.read_text() == digest:
            return False
        caches = [p for p in {s.parent / "__pycache__" for s in sources} if p.is_dir()]
        for cache in caches:
            for stale in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
                stale.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)
        return True
    except OSError:  # pragma: no cover - read-only installs
        return False


def prepare_numba_cache() -> None:
    """Drop the stale caches of every package in :data:`CACHED_PACKAGES` (call it before any
    kernel code runs)."""
    for package in CACHED_PACKAGES:
        directory = package_dir(package)
        if directory is not None:
            drop_stale_numba_cache(directory)
