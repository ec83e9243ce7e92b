"""Grids of training runs (model family x method x schedule x seed), here or on SLURM.

``run_grid(specs)`` trains every run in sequence in this process (one vLLM engine per model
family, reused across its runs) by default. ``executor="slurm"`` hands one job per run to a
SLURM cluster through submitit (an existing engine: we write no scheduler of our own), and
``executor="local"`` uses submitit's local executor (separate processes on this machine; what
the tests use). Finished runs (``DONE.json`` in their run directory) are skipped everywhere.

A grid is a list of :class:`pwopsd.train.RunSpec` (:func:`grid_specs` builds the usual product).
CLI (``pwopsd/grid/__main__.py``): ``python -m pwopsd.grid --methods opsd pw_opsd --schedules moderate aggressive
--seeds 1 2 3 [--families qwen3 llama] [--executor slurm --slurm-partition gpu]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from pwopsd.config import RESULTS_DIR, ConfigError, get_profile
from pwopsd.engine import make_engine
from pwopsd.train import RunResult, RunSpec, train
from pwopsd.vocab import MAIN_FAMILY, POSITION_METHODS

EXECUTORS = ("inline", "local", "slurm")


def grid_specs(
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    families: Sequence[str] = (MAIN_FAMILY,),
    schedules: Sequence[Any] = ("moderate",),
    profile: str = "toy",
    overrides: tuple[tuple[str, Any], ...] = (),
    root: str = "",
) -> list[RunSpec]:
    """The product families x methods x (schedules for position methods) x seeds, each a
    validated :class:`RunSpec` (a bad one fails here, before any work)."""
    return [
        RunSpec(method, seed, family, schedule, profile, overrides, root)
        for family, method, seed in itertools.product(families, methods, seeds)
        for schedule in (schedules if method in POSITION_METHODS else [None])
    ]


@dataclass
class GridReport:
    """What a grid call did."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    results: dict[str, RunResult] = field(default_factory=dict)


def _label(spec: RunSpec) -> str:
    return f"{spec.family}/{spec.dir_name}/seed{spec.seed}"


def _run_one(spec: RunSpec) -> str:
    """What one submitit job runs: train the run (or reuse it) in that job's process."""
    return str(train(spec, progress=False).run_dir)


def run_grid(
    grid: Iterable[RunSpec],
    *,
    executor: str = "inline",
    folder: str | Path | None = None,
    slurm: dict[str, Any] | None = None,
    engines: dict[str, Any] | None = None,
    progress: bool = True,
    wait: bool = True,
) -> GridReport:
    """Train every run of ``grid`` not yet finished.

    ``inline``: in this process, in order, one engine per family (``engines`` may pass them
    in). ``local`` / ``slurm``: one submitit job per unfinished run, logs in ``folder``
    (default ``results/<profile>/grid_logs``); ``slurm`` takes submitit's ``slurm_*``
    parameters in ``slurm`` (partition, gpus per node, time, ...). ``wait`` blocks until the
    jobs end and raises if one failed.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not known; allowed: {list(EXECUTORS)}")
    grid = list(grid)
    report = GridReport()
    todo = []
    for spec in grid:
        (report.skipped if spec.is_done() else todo).append(spec)
    report.skipped = [_label(s) for s in report.skipped]
    if not todo:
        return report
    if executor == "inline":
        return _inline(todo, report, engines or {}, progress)

    profile = todo[0].profile
    folder = Path(folder) if folder else RESULTS_DIR / profile / "grid_logs"
    if executor == "local":
        ex: Any = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=120)
    else:
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**(slurm or {}))
    jobs = [(spec, ex.submit(_run_one, spec)) for spec in todo]
    report.submitted = [_label(s) for s, _ in jobs]
    if wait:
        for spec, job in jobs:
            job.result()  # raises with the job's traceback if it failed
            report.trained.append(_label(spec))
    return report


def _inline(
    todo: list[RunSpec], report: GridReport, engines: dict[str, Any], progress: bool
) -> GridReport:
    """Train ``todo`` in this process, one engine per (profile, family) reused across runs."""
    owned = []
    try:
        for spec in todo:
            cfg = spec.train_config()
            engine = None
            if cfg.rollout_backend == "vllm":
                key = f"{spec.profile}/{spec.family}"
                if key not in engines:
                    profile = get_profile(spec.profile)
                    engines[key] = make_engine(
                        "vllm",
                        profile.models[spec.family],
                        profile=profile,
                        enable_lora=True,
                        max_lora_rank=cfg.lora_r,
                    )
                    owned.append(engines[key])
                engine = engines[key]
            report.results[_label(spec)] = train(spec, engine=engine, progress=progress)
            report.trained.append(_label(spec))
    finally:
        for e in owned:
            e.close()
    return report
