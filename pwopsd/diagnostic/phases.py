"""The driver of the branch-viability diagnostic's phases A-G (PROTOCOL section 5), resumable.

* A, E (:mod:`pwopsd.diagnostic.sample_phases`): the student's spines and the forced-child
  continuations, sampled through the engine;
* B, C, D (:mod:`pwopsd.diagnostic.teacher_phases`): the teacher pass along each spine, the
  candidate positions, MC dropout, on the HF model;
* F, G (:mod:`pwopsd.diagnostic.report`): viability labels, Table 1, Figure 1 data.

The problems come from :mod:`pwopsd.diagnostic.problems`, the shared model and engine from
:mod:`pwopsd.diagnostic.context`, the files from :mod:`pwopsd.diagnostic.store`, the
statistics from :mod:`pwopsd.diagnostic.stats`.

On disk (``<results_dir>/scratch/<tag>/``, not committed): ``plan.json`` (the settings the files
were made with; a rerun with other settings is refused, naming them), then one JSONL file per
phase A-E, appended and flushed row by row. A rerun reads them, skips finished problems (A-D)
and finished continuations (E), so a SIGKILL loses at most the rows in flight; a torn last line
is dropped, a bad line before it is an error naming it. F and G are cheap and recomputed from
those files on every run. The results the book reads (``diagnostic.seed<k>.json``,
``table1.seed<k>.json``, ``figure1.seed<k>.json``) go to ``<results_dir>/``; a smaller or
otherwise configured run writes ``<stem>.seed<k>.<tag>.json`` beside them instead.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pwopsd.config import DiagnosticConfig, Profile
from pwopsd.diagnostic.context import Context
from pwopsd.diagnostic.problems import (
    continuation_budget,
    pool_spec,
    select_problems,
    spine_budget,
)
from pwopsd.diagnostic.report import LABELS, figure1_data, phase_f, table1
from pwopsd.diagnostic.sample_phases import phase_a, phase_e
from pwopsd.diagnostic.store import check_plan, settings_tag
from pwopsd.diagnostic.teacher_phases import phase_b, phase_c, phase_d
from pwopsd.provenance import write_json, write_results

STORED_PHASES: tuple[tuple[str, Callable[[Context], dict[str, Any]]], ...] = (
    ("A", phase_a),
    ("B", phase_b),
    ("C", phase_c),
    ("D", phase_d),
    ("E", phase_e),
)
"""The phases whose rows are stored (and resumed), in order: name -> function of the context."""

RESULT_STEMS = ("diagnostic", "table1", "figure1")
"""The results files of one seed: ``<stem>.seed<k>[.<tag>].json``."""


def scratch_dir(cfg: DiagnosticConfig) -> Path:
    """``<results_dir>/scratch/<seed and settings tag>/``: one directory per set of the settings
    phases A-E depend on, so runs differing only in F/G thresholds share the samples."""
    return cfg.results_dir / "scratch" / settings_tag(cfg)


def plan_summary(cfg: DiagnosticConfig, profile: Profile) -> dict[str, Any]:
    """What a run would do (``--dry-run``): model, pools, budgets, upper bounds on the work."""
    pools: dict[str, Any] = {}
    for pool in cfg.pools:
        spec = pool_spec(profile, pool)
        pools[pool] = {"source": spec.source, "split": spec.split}
    try:  # local files: say how many problems each pool gives (hub pools would need the net)
        for pool, _ in select_problems(cfg, profile):
            pools[pool]["drawn"] = pools[pool].get("drawn", 0) + 1
    except Exception as err:  # noqa: BLE001 - a plan is still useful without the counts
        pools["note"] = f"pool sizes unknown offline ({type(err).__name__})"
    n_cand = cfg.max_problems * cfg.candidates_per_problem
    return {
        "profile": profile.name,
        "model": profile.main_model,
        "backend": cfg.backend,
        "engine": dataclasses.asdict(profile.engine),
        "pools": pools,
        "problems": cfg.max_problems,
        "spine_budget_tokens": spine_budget(cfg, profile),
        "continuation_budget_tokens": continuation_budget(cfg, profile),
        "max_candidates": n_cand,
        "max_forced_children": n_cand * cfg.children_per_candidate,
        "max_continuations": n_cand * cfg.children_per_candidate * cfg.rollouts_per_child,
        "mc_dropout_passes": cfg.max_problems * cfg.mc_samples,
        "scratch": str(scratch_dir(cfg)),
        "results": [str(cfg.results_file(stem)) for stem in RESULT_STEMS],
    }


def run(
    cfg: DiagnosticConfig,
    *,
    make_engine: Callable[[], Any] | None = None,
    stop_after: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) phases A-G; write the diagnostic, table1 and figure1 files of this seed.

    ``make_engine`` replaces the factory call (tests pass a fake); ``stop_after`` ("A".."E")
    stops once that phase is on disk.
    """
    profile = cfg.get_profile()
    scratch = scratch_dir(cfg)
    scratch.mkdir(parents=True, exist_ok=True)
    check_plan(scratch, cfg, profile.main_model)
    ctx = Context(cfg, profile, scratch, select_problems(cfg, profile), make_engine, log)
    start = time.time()
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}
    try:
        for name, fn in STORED_PHASES:
            if name == "E":
                ctx.free_model()  # the teacher model is not needed while the engine samples
            t0 = time.time()
            counts[name] = fn(ctx)
            timings[name] = round(time.time() - t0, 2)
            log(f"[diagnostic] phase {name}: {counts[name]} ({timings[name]:.1f} s)")
            if stop_after == name:
                return {"status": "stopped", "after": name, "counts": counts}
    finally:
        ctx.close()
    return _write_results(ctx, counts, timings, start)


def _write_results(
    ctx: Context, counts: dict[str, Any], timings: dict[str, float], start: float
) -> dict[str, Any]:
    """Phases F and G from the phase files, then this seed's results files."""
    cfg, profile = ctx.cfg, ctx.profile
    t0 = time.time()
    records = phase_f(ctx)
    labels = {k: sum(r["label"] == k for r in records) for k in (*LABELS, "incomplete")}
    counts["F"] = {"candidates": len(records), **labels}
    timings["F"] = round(time.time() - t0, 2)
    t0 = time.time()
    rows = table1(records, cfg)
    fig = figure1_data(records)
    timings["G"] = round(time.time() - t0, 2)
    wall = time.time() - start
    files = {stem: cfg.results_file(stem) for stem in RESULT_STEMS}
    prov = dict(profile=cfg.profile, seed=cfg.seed, wall_seconds=wall)
    write_results(files["table1"], {"rows": rows}, **prov)
    write_results(files["figure1"], fig, **prov)
    # every candidate with its scores, viabilities and label, for inspection (not committed)
    write_json(ctx.scratch / "candidates.json", records)
    result = {
        "section": "diagnostic",
        "status": "ok",
        "model": profile.main_model,
        "counts": counts,
        "phase_seconds": timings,
        "position_orientation": cfg.position_orientation,
        "config": cfg.to_dict(),
        "scale_tag": cfg.scale_tag(),
        "files": {stem: path.name for stem, path in files.items()},
    }
    write_results(files["diagnostic"], result, **prov)
    ctx.log(f"[diagnostic] labels {labels}; wrote {files['table1']} in {wall:.0f} s")
    return {**result, "table1": rows, "paths": {k: str(v) for k, v in files.items()}}
