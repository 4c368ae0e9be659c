"""The shell's numba cache housekeeping (mandi.services.jitcache): cached machine code is dropped
when any source of the package changed — numba itself only notices edits of a kernel's own file."""

from __future__ import annotations

import pathlib

from mandi.services.jitcache import STAMP, drop_stale_numba_cache, package_dir


def _package(root: pathlib.Path) -> list[pathlib.Path]:
    (root / "sub" / "__pycache__").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.py").write_text("y = 2\n")
    cached = [
        root / "__pycache__" / "a.f-1.py311.nbi",
        root / "__pycache__" / "a.f-1.py311.1.nbc",
        root / "sub" / "__pycache__" / "b.g-1.py311.nbi",
    ]
    for c in cached:
        c.write_bytes(b"machine code")
    return cached


def test_caches_are_dropped_when_any_source_changes(tmp_path):
    cached = _package(tmp_path)
    bytecode = tmp_path / "__pycache__" / "a.cpython-311.pyc"
    bytecode.write_bytes(b"python bytecode")
    assert drop_stale_numba_cache(tmp_path)  # no stamp yet: unknown state, dropped
    assert not any(c.exists() for c in cached) and bytecode.exists()
    assert (tmp_path / "__pycache__" / STAMP).is_file()
    for c in cached:  # numba compiles again
        c.write_bytes(b"machine code")
    assert not drop_stale_numba_cache(tmp_path)  # nothing changed: kept
    assert all(c.exists() for c in cached)
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")  # the callee's file, not the caller's
    assert drop_stale_numba_cache(tmp_path)
    assert not any(c.exists() for c in cached)


def test_the_options_package_directory_is_found():
    directory = package_dir("mandi.options")
    assert directory is not None and (directory / "_special.py").is_file()
    assert package_dir("mandi.no_such_package") is None
