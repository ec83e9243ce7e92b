"""What each paper-section notebook runs: thin glue from a validated config to results files.

The four method-table sections (main table, schedule sweep, cross-model, reduction factorial)
share one runner, :func:`run_table_section`: the section's rows (:func:`section_rows`: a model
family and a training run, or the untrained base) are trained through :mod:`pwopsd.grid`
(finished runs are reused, never retrained), then every row is evaluated with the evaluation
protocol through one vLLM engine per family. Evaluations are cached in the run's directory
(``<run>/eval``; ``results/<profile>/runs/<family>/base/seed<k>/eval`` for the base model),
so a row shared by two sections (OPSD, PW-OPSD Moderate, the base model) is sampled once.

Each call writes one file per training seed, ``results/<profile>/<section>/<section>.seed<k>.json``
(rows, scores per benchmark, training curves, provenance). A run whose scale parameters differ
from the section's full configuration writes ``<section>.seed<k>.<tag>.json`` instead and never
replaces a full run's file. :mod:`pwopsd.tables` aggregates the full files over seeds for the
book.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd import evaluate, grid, jsonl, plots, tables
from pwopsd.config import (
    REPO_ROOT,
    RESULTS_DIR,
    CrossModelConfig,
    DiagnosticConfig,
    MainTableConfig,
    ReductionFactorialConfig,
    ScheduleSweepConfig,
    TableSectionConfig,
    get_profile,
)
from pwopsd.diagnostic.phases import run as run_diagnostic_phases
from pwopsd.engine import make_engine
from pwopsd.provenance import write_results
from pwopsd.train import RunResult, RunSpec, train
from pwopsd.vocab import MAIN_FAMILY, METHOD_LABELS, METRICS, SCHEDULE_NOTES

FACTORIAL_RUNS = {
    "uniform_global": ("opsd", None),
    "uniform_per_sequence": ("uniform_per_sequence", None),
    "position_global": ("position_global", "schedule"),
    "position_per_sequence": ("pw_opsd", "schedule"),
}
"""Factorial cell -> (training method, schedule source). Uniform/global *is* OPSD and
position/per-sequence *is* PW-OPSD (PROTOCOL section 2), so those two cells reuse the OPSD and
PW-OPSD runs instead of training twice; the other two are their own methods."""

METRIC_KEYS = ("step", "loss", "fkl_token_mean", "completion_len_mean", "clip_frac_tokens",
               "clip_frac_entries", "rollout_tokens_per_s", "seconds", "teacher_seconds")  # fmt: skip
"""Per-step training metrics kept in a section's results file (the full rows stay in the run)."""


@dataclass(frozen=True)
class Row:
    """One row of a section's table: a model family and a training run (``run``), or the
    family's untrained base model (``run`` None)."""

    key: str
    """Unique within the section: "<family>/<run name>" ("qwen3/pw_opsd_moderate")."""
    label: str
    """Shown in tables ("PW-OPSD Moderate")."""
    family: str
    method: str
    """"base", a main-table method or a factorial cell."""
    run: RunSpec | None = None
    """The training run this row's adapter comes from; None for the base model."""
    factors: dict[str, Any] = field(default_factory=dict)
    """Section-specific coordinates (schedule; weighting and reduction; dial setting)."""
    profile: str = ""
    """The profile whose model this row uses; "" = the section's (the position-premise
    section's rows use its dial settings' profiles)."""


def run_diagnostic(cfg: DiagnosticConfig) -> dict[str, Any]:
    """Run (or resume) the branch-viability diagnostic, phases A-G.

    Writes ``diagnostic.seed<k>.json``, ``table1.seed<k>.json`` and ``figure1.seed<k>.json``
    under ``results/<profile>/diagnostic/`` (``<name>.seed<k>.<tag>.json`` for a smaller or
    otherwise configured run; per-phase files under its ``scratch/``).
    """
    return run_diagnostic_phases(cfg)


def eval_seeds_for(cfg: TableSectionConfig) -> list[int]:
    """Evaluation seeds derived from the run seed: distinct across runs, fixed per run."""
    return [cfg.seed * 1000 + k for k in range(cfg.eval_seeds)]


# ------------------------------------------------------------------ rows of each section


def schedule_label(schedule: Any) -> str:
    if isinstance(schedule, str):
        return schedule.capitalize()
    w, c, s = schedule
    return f"custom (w_min={w:g}, c={c:g}, s={s:g})"


def section_rows(cfg: TableSectionConfig) -> list[Row]:
    """The rows a section's table needs, in display order (each run validated)."""
    overrides, root = run_spec_args(cfg)

    def row(family: str, method: str, schedule: Any = None, label: str = "", **factors) -> Row:
        if method == "base":
            return Row(f"{family}/base", "Base", family, "base", None, factors)
        run = RunSpec(method, cfg.seed, family, schedule, cfg.profile, overrides, root)
        if not label:
            label = METHOD_LABELS.get(method, method)
            if schedule is not None:
                label += " " + schedule_label(schedule)
        return Row(f"{family}/{run.name}", label, family, method, run, factors)

    main = MAIN_FAMILY
    rows: list[Row] = []
    if isinstance(cfg, MainTableConfig):
        for method in cfg.methods:
            for schedule in cfg.schedules if method == "pw_opsd" else [None]:
                rows.append(row(main, method, schedule))
    elif isinstance(cfg, ScheduleSweepConfig):
        rows.append(replace(row(main, "opsd"), factors={"schedule": "none (OPSD)"}))
        schedules: list[Any] = list(cfg.schedules)
        if cfg.w_min is not None:
            schedules.append((cfg.w_min, cfg.c, cfg.s))
        for schedule in schedules:
            r = row(main, "pw_opsd", schedule)
            rows.append(replace(r, factors={"schedule": _schedule_key(schedule)}))
    elif isinstance(cfg, CrossModelConfig):
        for family in cfg.families:
            for method in cfg.methods:
                schedule = cfg.schedule if method == "pw_opsd" else None
                rows.append(row(family, method, schedule))
    elif isinstance(cfg, ReductionFactorialConfig):
        for weighting in cfg.weightings:
            for reduction in cfg.reductions:
                factorial_cell = f"{weighting}_{reduction}"
                method, sched = FACTORIAL_RUNS[factorial_cell]
                schedule = cfg.schedule if sched else None
                label = f"{weighting} weight, {reduction.replace('_', '-')} mean"
                if factorial_cell == "uniform_global":
                    label += " (= OPSD)"
                elif factorial_cell == "position_per_sequence":
                    label += f" (= PW-OPSD {cfg.schedule.capitalize()})"
                rows.append(
                    row(main, method, schedule, label, weighting=weighting, reduction=reduction)
                )
    else:
        raise TypeError(f"{type(cfg).__name__} is not a table section")
    return rows


def _schedule_key(schedule: Any) -> str:
    if isinstance(schedule, str):
        return schedule
    return "custom w{:g} c{:g} s{:g}".format(*schedule)


def run_spec_args(cfg: TableSectionConfig) -> tuple[tuple[tuple[str, Any], ...], str]:
    """What a section sets on every run it trains, as ``RunSpec``'s (overrides, root): a quick
    look's step cap (``RunSpec.train_config`` lowers eval_step and save_every), and the runs
    folder under the section's own ``out_dir`` ("" = the profile's runs folder)."""
    overrides = () if cfg.train_steps is None else (("max_steps", cfg.train_steps),)
    root = str(cfg.results_dir / "runs") if cfg.out_dir else ""
    return overrides, root


def _eval_dir(cfg: TableSectionConfig, row: Row) -> Path:
    """Where a row's evaluation samples are cached: beside the run (or the base model's
    per-seed folder), one folder per evaluation scale."""
    scale = []
    if cfg.max_problems is not None:
        scale.append(f"max_problems{cfg.max_problems}")
    if cfg.eval_seeds != type(cfg)().eval_seeds:
        scale.append(f"eval_seeds{cfg.eval_seeds}")
    name = "eval" + "".join(f"-{s}" for s in scale)
    if row.run is not None:
        return row.run.run_dir() / name
    profile = row.profile or cfg.profile
    root = cfg.results_dir / "runs" / profile if cfg.out_dir else RESULTS_DIR / profile / "runs"
    return root / row.family / "base" / f"seed{cfg.seed}" / name


# ------------------------------------------------------------------ the runner


def run_table_section(
    cfg: TableSectionConfig,
    *,
    rows: list[Row] | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or reuse) every row's run through :mod:`pwopsd.grid`, evaluate every row with
    the evaluation protocol, and write ``<section>.seed<k>.json``.

    ``rows`` default to :func:`section_rows`; ``extra`` adds keys to the results file. One
    vLLM engine per (profile, model family) serves its training rollouts (each update's
    adapter merged into its weights) and the evaluation of its base model and adapters.
    """
    start = time.time()
    rows = section_rows(cfg) if rows is None else rows
    seeds = eval_seeds_for(cfg)
    out: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    for profile, family in dict.fromkeys((r.profile or cfg.profile, r.family) for r in rows):
        group = [r for r in rows if (r.profile or cfg.profile, r.family) == (profile, family)]
        _run_group(cfg, profile, family, group, out, runs, progress)
    models = {}
    for r in rows:
        name = r.family if not r.profile else f"{r.profile}/{r.family}"
        models[name] = _shown_model(get_profile(r.profile or cfg.profile).models[r.family])
    prof = cfg.get_profile()
    result = {
        "section": cfg.notebook,
        "status": "ok",
        "seed": cfg.seed,
        "models": models,
        "benchmarks": [{"name": b.name, "label": b.label} for b in prof.benchmarks],
        "eval_seeds": seeds,
        "sampling": prof.eval_sampling.__dict__,
        "rows": out,
        "runs": runs,
        "schedule_notes": SCHEDULE_NOTES,
        "config": cfg.to_dict(),
        **(extra or {}),
    }
    path = cfg.results_file()
    write_results(path, result, profile=cfg.profile, seed=cfg.seed,
                  wall_seconds=time.time() - start)  # fmt: skip
    print(f"[{cfg.notebook}] wrote {path} in {time.time() - start:.0f} s")
    return result


def _run_group(
    cfg: TableSectionConfig,
    profile: str,
    family: str,
    rows: list[Row],
    out: list[dict[str, Any]],
    runs: dict[str, Any],
    progress: bool,
) -> None:
    """Train and evaluate the rows of one (profile, family) through one engine; append each
    row's record to ``out`` and its run's summary to ``runs``."""
    prof = get_profile(profile)
    specs = list(dict.fromkeys(r.run for r in rows if r.run is not None))
    engine = make_engine("vllm", prof.models[family], profile=prof, enable_lora=bool(specs),
                         max_lora_rank=prof.train.lora_r)  # fmt: skip
    try:
        report = grid.run_grid(specs, engines={f"{profile}/{family}": engine},
                               progress=progress)  # fmt: skip
        for row in rows:
            adapter = None
            if row.run is not None:
                result = _run_result(row, report)
                adapter = str(result.eval_adapter)
                runs[row.key] = {
                    "run_dir": _shown_path(result.run_dir),
                    "reused": result.reused,
                    "eval_step": result.summary.get("eval_step"),
                    "train_seconds": result.summary.get("provenance", {}).get("wall_seconds"),
                    "metrics": _read_metrics(result.run_dir / "metrics.jsonl"),
                }
            summary = evaluate.evaluate_model(
                prof.models[family],
                list(prof.benchmarks),
                seeds=eval_seeds_for(cfg),
                sampling=prof.eval_sampling,
                out_dir=_eval_dir(cfg, row),
                adapter=adapter,
                max_problems=cfg.max_problems,
                profile=prof,
                engine=engine,
                progress=progress,
            )
            out.append(_row_record(row, summary))
    finally:
        engine.close()


def _run_result(row: Row, report: grid.GridReport) -> RunResult:
    """The finished run of a row: from this grid call, or reused from an earlier one."""
    for result in report.results.values():
        if result.spec == row.run:
            return result
    return train(row.run, progress=False)  # finished: returns at once, trains nothing


def _shown_path(path: Path) -> str:
    """A path as a results file records it: relative to the repository when inside it (so
    committed files do not carry this machine's layout), absolute otherwise."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _shown_model(model: str) -> str:
    """A model as a results file records it: a local checkpoint relative to the repository
    (:func:`_shown_path`), a hub id as it is."""
    return _shown_path(Path(model)) if Path(model).exists() else model


def _row_record(row: Row, summary: dict[str, Any]) -> dict[str, Any]:
    """A row as stored: coordinates, and per benchmark each metric's per-eval-seed values."""
    scores = {}
    for bench, b in summary["benchmarks"].items():
        per_seed = b["seeds"]
        scores[bench] = {
            metric: {
                **{k: b["mean_sd"][metric].get(k) for k in ("mean", "sd")},
                "values": [per_seed[s][metric] for s in sorted(per_seed, key=int)],
            }
            for metric in METRICS
        }
    return {
        "key": row.key,
        "label": row.label,
        "family": row.family,
        **({"profile": row.profile} if row.profile else {}),
        "method": row.method,
        "run": None if row.run is None else row.run.name,
        "factors": row.factors,
        "adapter": _shown_path(Path(summary["adapter"])) if summary.get("adapter") else None,
        "eval_seconds": summary.get("provenance", {}).get("wall_seconds"),
        "scores": scores,
    }


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """A run's per-step metrics, cut to the keys the book plots."""
    return [{k: r.get(k) for k in METRIC_KEYS if k in r} for r in jsonl.read(path)]


# ------------------------------------------------------------------ notebook displays


def show_table(result: dict[str, Any], metric: str = "avg") -> pd.DataFrame:
    """This run's table (rows x benchmarks, mean ± sd over its evaluation seeds, in %)."""
    return tables.frame(tables.aggregate([result]), metric)


def show_schedules(cfg: ScheduleSweepConfig) -> Any:
    """Plot the position-weight curves of the requested schedules."""
    return plots.plot_schedules(cfg.schedules, custom=(cfg.w_min, cfg.c, cfg.s))
