"""Run the benchmarks: ``python -m benchmarks [NAME…]`` (names like ``daemon``, ``store``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks
from benchmarks import Row


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    missed = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        print(f"# {name}", flush=True)
        rows: list[Row] = module.run()
        for row in rows:
            print(row if isinstance(row, str) else row.line(), flush=True)
            missed += isinstance(row, Row) and row.ok is False
        print(f"# {name}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"# {missed} target(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
