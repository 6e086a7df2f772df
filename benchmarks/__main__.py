"""Run every benchmark, or the ones named: ``python -m benchmarks [NAME...]`` (``BENCHMARKS``)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("controller", "edge", "stack", "audio", "websocket")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
            return 2
    failed = 0
    for name in names:
        print(f"== benchmark: {name}")
        failed += importlib.import_module(f"benchmarks.{name}").main()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
