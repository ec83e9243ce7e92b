"""Dispatch ``python -m pwopsd.bench <name> [flags]`` to ``pwopsd.bench.<name>.main``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "loss": "pwopsd.bench.loss",
    "grading": "pwopsd.bench.grading",
    "rollout": "pwopsd.bench.rollout",
    "engine": "pwopsd.bench.engine",
}
"""Benchmark name -> its module (each has ``main(argv)``)."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m pwopsd.bench {{{','.join(BENCHMARKS)}}} [flags]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
