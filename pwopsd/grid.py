"""Grids of training runs: (model family, method, schedule, seed) cells, here or on SLURM.

``run_grid(cells)`` trains every cell in sequence in this process (one vLLM engine per model
family, reused across its cells) by default. ``executor="slurm"`` hands one job per cell to a
SLURM cluster through submitit (an existing engine: we write no scheduler of our own), and
``executor="local"`` uses submitit's local executor (separate processes on this machine; what
the tests use). Finished cells (``DONE.json`` in their run directory) are skipped everywhere.

CLI: ``python -m pwopsd.grid --methods opsd pw_opsd --schedules moderate aggressive
--seeds 1 2 3 [--families qwen3 llama] [--executor slurm --slurm-partition gpu]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwopsd.config import RESULTS_DIR, ConfigError
from pwopsd.train import POSITION_METHODS, RunResult, RunSpec, train

EXECUTORS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class Cell:
    """One grid cell; ``spec`` is the training run it stands for."""

    family: str
    method: str
    schedule: Any
    seed: int
    profile: str = "toy"
    overrides: tuple[tuple[str, Any], ...] = ()
    root: str = ""

    @property
    def spec(self) -> RunSpec:
        return RunSpec(
            method=self.method,
            seed=self.seed,
            family=self.family,
            schedule=self.schedule,
            profile=self.profile,
            overrides=self.overrides,
            root=self.root,
        )

    @property
    def done(self) -> bool:
        return (self.spec.run_dir() / "DONE.json").is_file()


def cells(
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    families: Sequence[str] = ("qwen3",),
    schedules: Sequence[Any] = ("moderate",),
    profile: str = "toy",
    overrides: tuple[tuple[str, Any], ...] = (),
    root: str = "",
) -> list[Cell]:
    """The product families x methods x (schedules for position methods) x seeds, validated."""
    out = []
    for family, method, seed in itertools.product(families, methods, seeds):
        for schedule in schedules if method in POSITION_METHODS else [None]:
            cell = Cell(family, method, schedule, seed, profile, overrides, root)
            cell.spec  # noqa: B018  (validates the cell now, before any work)
            out.append(cell)
    return out


@dataclass
class GridReport:
    """What a grid call did."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    results: dict[str, RunResult] = field(default_factory=dict)


def _label(cell: Cell) -> str:
    return f"{cell.family}/{cell.spec.dir_name}/seed{cell.seed}"


def _run_cell(cell: Cell) -> str:
    """What one submitit job runs: train the cell (or reuse it) in that job's process."""
    result = train(cell.spec, progress=False)
    return str(result.run_dir)


def run_grid(
    grid: Iterable[Cell],
    *,
    executor: str = "inline",
    folder: str | Path | None = None,
    slurm: dict[str, Any] | None = None,
    engines: dict[str, Any] | None = None,
    progress: bool = True,
    wait: bool = True,
) -> GridReport:
    """Train every cell not yet finished.

    ``inline``: in this process, in order, one engine per family (``engines`` may pass them
    in). ``local`` / ``slurm``: one submitit job per unfinished cell, logs in ``folder``
    (default ``results/<profile>/grid_logs``); ``slurm`` takes submitit's ``slurm_*``
    parameters in ``slurm`` (partition, gpus per node, time, ...). ``wait`` blocks until the
    jobs end and raises if one failed.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not known; allowed: {list(EXECUTORS)}")
    grid = list(grid)
    report = GridReport()
    todo = []
    for cell in grid:
        (report.skipped if cell.done else todo).append(cell)
    report.skipped = [_label(c) for c in report.skipped]
    if not todo:
        return report
    if executor == "inline":
        return _inline(todo, report, engines or {}, progress)
    import submitit

    profile = todo[0].profile
    folder = Path(folder) if folder else RESULTS_DIR / profile / "grid_logs"
    if executor == "local":
        ex: Any = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=120)
    else:
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**(slurm or {}))
    jobs = [(cell, ex.submit(_run_cell, cell)) for cell in todo]
    report.submitted = [_label(c) for c, _ in jobs]
    if wait:
        for cell, job in jobs:
            job.result()  # raises with the job's traceback if it failed
            report.trained.append(_label(cell))
    return report


def _inline(
    todo: list[Cell], report: GridReport, engines: dict[str, Any], progress: bool
) -> GridReport:
    from pwopsd.config import get_profile
    from pwopsd.sampling import make_engine

    owned = []
    try:
        for cell in todo:
            cfg = cell.spec.train_config()
            engine = None
            if cfg.rollout_backend == "vllm":
                key = f"{cell.profile}/{cell.family}"
                if key not in engines:
                    prof = get_profile(cell.profile)
                    engines[key] = make_engine(
                        "vllm",
                        prof.models[cell.family],
                        profile=prof,
                        enable_lora=True,
                        max_lora_rank=cfg.lora_r,
                    )
                    owned.append(engines[key])
                engine = engines[key]
            report.results[_label(cell)] = train(cell.spec, engine=engine, progress=progress)
            report.trained.append(_label(cell))
    finally:
        for e in owned:
            e.close()
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.grid", description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--families", nargs="+", default=["qwen3"])
    ap.add_argument("--schedules", nargs="+", default=["moderate"])
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--executor", choices=EXECUTORS, default="inline")
    ap.add_argument("--folder", default=None, help="submitit logs")
    ap.add_argument("--slurm-partition", default=None)
    ap.add_argument("--slurm-gpus", type=int, default=4)
    ap.add_argument("--slurm-hours", type=float, default=12.0)
    args = ap.parse_args(argv)
    try:
        grid = cells(
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
