"""``python -m pwopsd.grid``: train a grid of runs here or through submitit (see
:mod:`pwopsd.grid`)."""

from __future__ import annotations

import argparse
import sys

from pwopsd.config import ConfigError
from pwopsd.grid import EXECUTORS, grid_specs, run_grid
from pwopsd.vocab import MAIN_FAMILY


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.grid", description="A grid of runs.")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--families", nargs="+", default=[MAIN_FAMILY])
    ap.add_argument("--schedules", nargs="+", default=["moderate"])
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--executor", choices=EXECUTORS, default="inline")
    ap.add_argument("--folder", default=None, help="submitit logs")
    ap.add_argument("--slurm-partition", default=None)
    ap.add_argument("--slurm-gpus", type=int, default=4)
    ap.add_argument("--slurm-hours", type=float, default=12.0)
    args = ap.parse_args(argv)
    try:
        grid = grid_specs(
            args.methods,
            args.seeds,
            families=args.families,
            schedules=args.schedules,
            profile=args.profile,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    slurm = {
        "slurm_partition": args.slurm_partition,
        "gpus_per_node": args.slurm_gpus,
        "tasks_per_node": 1,
        "cpus_per_task": 16,
        "timeout_min": int(args.slurm_hours * 60),
    }
    report = run_grid(grid, executor=args.executor, folder=args.folder, slurm=slurm)
    print(f"trained {len(report.trained)}, skipped {len(report.skipped)} (finished)")
    for label in report.trained:
        print(f"  trained {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
