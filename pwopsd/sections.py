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


def results_path(cfg: NotebookConfig) -> Path:
    """Where a section's results file goes: <results_dir>/<section>.json for the full
    configuration, <results_dir>/<section>.<tag>.json for any smaller or other one (the book
    reads only the full one)."""
    tag = cfg.scale_tag()
    return cfg.results_dir / (f"{cfg.notebook}.{tag}.json" if tag else f"{cfg.notebook}.json")


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
    ``results/<profile>/diagnostic/`` (``<name>.<tag>.json`` for a smaller or otherwise
    configured run; per-phase files under its ``scratch/``).
    """
    from pwopsd.diagnostic.phases import run

    return run(cfg)


def eval_seeds_for(cfg: MainTableConfig) -> list[int]:
    """Evaluation seeds derived from the run seed: distinct across runs, fixed per run."""
    return [cfg.seed * 1000 + k for k in range(cfg.eval_seeds)]


def main_table_runs(cfg: MainTableConfig) -> list[Any]:
    """The training runs the main table needs: one per trained method (PW-OPSD per schedule)."""
    from pwopsd.train import RunSpec

    overrides: tuple[tuple[str, Any], ...] = ()
    if cfg.train_steps is not None:
        train = cfg.get_profile().train
        steps = cfg.train_steps
        overrides = (
            ("max_steps", steps),
            ("eval_step", min(train.eval_step, steps)),
            ("save_every", min(train.save_every, steps)),
        )
    # A run for another out_dir keeps its runs beside its results, away from the shared ones.
    root = str(cfg.results_dir / "runs") if cfg.out_dir else ""
    specs = []
    for method in cfg.methods:
        if method == "base":
            continue
        for schedule in cfg.schedules if method == "pw_opsd" else [None]:
            specs.append(
                RunSpec(
                    method=method,
                    seed=cfg.seed,
                    schedule=schedule,
                    profile=cfg.profile,
                    overrides=overrides,
                    root=root,
                )
            )
    return specs


def run_main_table(cfg: MainTableConfig) -> dict[str, Any]:
    """Train (or reuse) every requested method, evaluate each at ``eval_step``; write the table.

    One vLLM engine serves everything in this process: the training rollouts (a new
    ``LoRARequest`` per update) and the evaluation of the base model and of every adapter.
    """
    from pwopsd import evaluate
    from pwopsd.sampling import make_engine
    from pwopsd.train import train

    prof = cfg.get_profile()
    start = time.time()
    seeds = eval_seeds_for(cfg)
    specs = main_table_runs(cfg)
    engine = make_engine(
        "vllm",
        prof.main_model,
        profile=prof,
        enable_lora=bool(specs),
        max_lora_rank=prof.train.lora_r,
    )
    methods: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    try:
        if "base" in cfg.methods:
            methods["base"] = evaluate.evaluate_model(
                prof.main_model,
                list(prof.benchmarks),
                seeds=seeds,
                sampling=prof.eval_sampling,
                out_dir=cfg.results_dir / "samples" / "base",
                max_problems=cfg.max_problems,
                profile=prof,
                engine=engine,
            )
        for spec in specs:
            run = train(spec, engine=engine)
            runs[spec.name] = {
                "run_dir": str(run.run_dir),
                "reused": run.reused,
                "eval_step": run.summary.get("eval_step"),
                "train_seconds": run.summary.get("provenance", {}).get("wall_seconds"),
                "metrics": _read_metrics(run.run_dir / "metrics.jsonl"),
            }
            methods[spec.name] = evaluate.evaluate_model(
                prof.main_model,
                list(prof.benchmarks),
                seeds=seeds,
                sampling=prof.eval_sampling,
                out_dir=cfg.results_dir / "samples" / spec.name,
                adapter=str(run.eval_adapter),
                max_problems=cfg.max_problems,
                profile=prof,
                engine=engine,
            )
    finally:
        engine.close()
    result = {
        "section": "main_table",
        "status": "ok" if methods else "pending",
        "model": prof.main_model,
        "benchmarks": [{"name": b.name, "label": b.label} for b in prof.benchmarks],
        "eval_seeds": seeds,
        "sampling": prof.eval_sampling.__dict__,
        "methods": methods,
        "runs": runs,
        "pending": {},
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


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """A run's per-step metrics (small: one row per step) for the book's training curves."""
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def show_main_table(result: dict[str, Any]):
    """Display the main table (Avg/Pass/Maj, mean +- sd over seeds) as a DataFrame."""
    from pwopsd import plots

    return plots.main_table_frame(result)


def show_schedules(cfg: ScheduleSweepConfig):
    """Plot the position-weight curves of the requested schedules."""
    from pwopsd import plots

    return plots.plot_schedules(cfg.schedules, custom=(cfg.w_min, cfg.c, cfg.s))
