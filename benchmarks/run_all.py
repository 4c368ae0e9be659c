"""Run every ``benchmarks/bench_*.py`` (or those named on the command line) in turn."""

from __future__ import annotations

import pathlib
import runpy
import sys

here = pathlib.Path(__file__).parent
sys.path.insert(0, str(here))
names = sys.argv[1:]
for path in sorted(here.glob("bench_*.py")):
    if names and not any(n in path.stem for n in names):
        continue
    print(f"\n=== {path.stem} ===", flush=True)
    runpy.run_path(str(path), run_name="__main__")
