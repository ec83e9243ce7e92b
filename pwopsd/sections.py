"""What each paper-section notebook runs: thin glue from a validated config to results files.

The notebooks call one function here and then display; the book pages read the files these
functions write (``results/<profile>/<section>/<section>.json``), never the notebooks' outputs.
Sections whose pipeline (training) has not landed yet write a ``pending`` status file
instead, so the book renders a skeleton that says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pwopsd.config import DiagnosticConfig, MainTableConfig, NotebookConfig, ScheduleSweepConfig
from pwopsd.provenance import write_results

PENDING_REASONS: dict[str, str] = {
    "schedule_sweep": "the training loop (pwopsd.train) has not landed yet",
    "cross_model": "the training loop (pwopsd.train) has not landed yet",
    "reduction_factorial": "the training loop (pwopsd.train) has not landed yet",
}
"""Section -> why it only writes a skeleton today."""

TRAINED_METHODS_PENDING = "training (pwopsd.train) has not landed yet"


def results_path(cfg: NotebookConfig) -> Path:
    """Where a section's results file goes: <results_dir>/<section>.json."""
    return cfg.results_dir / f"{cfg.notebook}.json"


def run_section(cfg: NotebookConfig) -> dict[str, Any]:
    """Run a section whose pipeline is pending: write its status file and say why."""
    reason = PENDING_REASONS.get(cfg.notebook)
    if reason is None:
        raise ValueError(f"section {cfg.notebook!r} has its own runner")
    result = {
        "section": cfg.notebook,
        "status": "pending",
        "reason": reason,
        "config": cfg.to_dict(),
    }
    write_results(results_path(cfg), result, profile=cfg.profile, seed=cfg.seed, wall_seconds=0.0)
    print(f"[{cfg.notebook}] skeleton only: {reason}. Wrote {results_path(cfg)}")
    return result


def run_diagnostic(cfg: DiagnosticConfig) -> dict[str, Any]:
    """Run (or resume) the branch-viability diagnostic, phases A-G.

    Writes ``diagnostic.json``, ``table1.json`` and ``figure1.json`` under
    ``results/<profile>/diagnostic/`` (per-phase files under its ``scratch/``).
    """
    from pwopsd.diagnostic.phases import run

    return run(cfg)


def eval_seeds_for(cfg: MainTableConfig) -> list[int]:
    """Evaluation seeds derived from the run seed: distinct across runs, fixed per run."""
    return [cfg.seed * 1000 + k for k in range(cfg.eval_seeds)]


def run_main_table(cfg: MainTableConfig) -> dict[str, Any]:
    """Evaluate every requested method on the profile's benchmarks; write main_table.json.

    Today only ``base`` (the untrained main model) can run; trained methods are listed as
    pending until the training loop lands.
    """
    from pwopsd import evaluate

    prof = cfg.get_profile()
    start = time.time()
    seeds = eval_seeds_for(cfg)
    methods: dict[str, Any] = {}
    pending: dict[str, str] = {}
    for method in cfg.methods:
        if method != "base":
            names = [f"pw_opsd_{s}" for s in cfg.schedules] if method == "pw_opsd" else [method]
            for name in names:
                pending[name] = TRAINED_METHODS_PENDING
            continue
        summary = evaluate.evaluate_model(
            prof.main_model,
            list(prof.benchmarks),
            seeds=seeds,
            sampling=prof.eval_sampling,
            out_dir=cfg.results_dir / "samples" / method,
            max_problems=cfg.max_problems,
            profile=prof,
        )
        methods[method] = summary
    result = {
        "section": "main_table",
        "status": "ok" if methods else "pending",
        "model": prof.main_model,
        "benchmarks": [{"name": b.name, "label": b.label} for b in prof.benchmarks],
        "eval_seeds": seeds,
        "sampling": prof.eval_sampling.__dict__,
        "methods": methods,
        "pending": pending,
        "config": cfg.to_dict(),
    }
    write_results(
        results_path(cfg),
        result,
        profile=cfg.profile,
        seed=cfg.seed,
        wall_seconds=time.time() - start,
    )
    print(f"[main_table] wrote {results_path(cfg)} in {time.time() - start:.0f} s")
    return result


def show_main_table(result: dict[str, Any]):
    """Display the main table (Avg/Pass/Maj, mean +- sd over seeds) as a DataFrame."""
    from pwopsd import plots

    return plots.main_table_frame(result)


def show_schedules(cfg: ScheduleSweepConfig):
    """Plot the position-weight curves of the requested schedules."""
    from pwopsd import plots

    return plots.plot_schedules(cfg.schedules, custom=(cfg.w_min, cfg.c, cfg.s))
