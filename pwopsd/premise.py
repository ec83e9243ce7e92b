"""The position-premise study: when does position weighting help? (a section beyond the paper)

The paper's premise is that the privileged teacher's *early* tokens are unreliable: reading the
reference, it commits to the reference's route and to moves the student cannot make without
it, so PW-OPSD down-weights them. In the shipped toy world that premise does not hold (any
route is valid, and the teacher wins at the first wrong step wherever it lies). The toy world's
dial, ``Mixture.teacher_shortcut_share``, makes it hold by degrees: at share x, that share of
the teacher's pretraining examples opens with a fused shortcut copied from the reference
(``a*b+c*d=S``), a move only reachable given the reference.

At each dial setting (a profile, :func:`pwopsd.config.dial_profile_name`) this section trains
OPSD, PW-OPSD (Moderate, Aggressive) and the matched-step control (``TrainConfig.matched_step``:
the learning rate divided by the step's mean position weight) from that setting's checkpoint,
evaluates them beside the base model (:func:`pwopsd.sections.run_table_section`), and measures
once per setting what the dial is meant to move: the teacher-signal position split
(:func:`pwopsd.toy.teacher_signal.position_split`) and the diagnostic's position AUROC.

This module configures and runs the study (its rows, the share-0 controls the paper sections'
pages show, the per-setting measurements); :mod:`pwopsd.premise_report` reads its results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd import sections, tables
from pwopsd.config import (
    REPO_ROOT,
    DiagnosticConfig,
    PositionPremiseConfig,
    dial_profile_name,
    get_profile,
)
from pwopsd.provenance import write_results
from pwopsd.toy import recipe, teacher_signal
from pwopsd.train import RunSpec
from pwopsd.vocab import MAIN_FAMILY, METHOD_LABELS

MEASUREMENT_SEED = 1
"""Seed of the per-setting measurements (teacher signal, diagnostic): they describe the
checkpoint, not a training run, so every training seed reads the same ones."""

MEASUREMENTS_FILE = "dial_measurements.json"
"""Per-setting measurements, beside the section's results files."""


def setting_key(share: float) -> str:
    """A dial setting as results files spell it ("0", "0.5", "1")."""
    return f"{share:g}"


def method_label(method: str, schedule: str | None = None) -> str:
    """How the study labels a run's method: "OPSD", "PW-OPSD Moderate"; the factorial's
    position/global cell, which the vocabulary does not name, is "position weight, global
    mean"."""
    label = METHOD_LABELS.get(method, "position weight, global mean")
    return label + (f" {schedule.capitalize()}" if schedule else "")


def premise_rows(cfg: PositionPremiseConfig) -> list[sections.Row]:
    """Every row of the study, dial setting by dial setting: base, OPSD, PW-OPSD per schedule,
    and the matched-step control per matched schedule."""
    rows: list[sections.Row] = []
    for share in cfg.dial:
        rows.append(_row(cfg, share, "base"))
        rows.append(_row(cfg, share, "opsd"))
        rows += [_row(cfg, share, "pw_opsd", s) for s in cfg.schedules]
        rows += [_row(cfg, share, "pw_opsd", s, matched=True) for s in cfg.matched_schedules]
        if share == 0:
            for run in cfg.zero_controls:
                method, schedule = run.rsplit("_", 1)
                rows.append(_row(cfg, share, method, schedule, matched=True))
        if share == 0 and cfg.own_recipes:
            rows += own_recipe_rows(cfg)
    return rows


def own_recipe_rows(cfg: PositionPremiseConfig) -> list[sections.Row]:
    """Share 0: each method of the per-method tuning with its own best validation recipe (same
    candidates, same budget per method); none when the tuning file is missing."""
    path = recipe.PER_METHOD_PATH
    if not path.exists():
        print(f"[position_premise] no {path.name}: the own-recipe rows are left out")
        return []
    rows = []
    for name, best in recipe.best_recipes(json.loads(path.read_text())).items():
        method, schedule = recipe.method_spec(name)
        steps, root = sections.run_spec_args(cfg)
        changes = recipe.recipe_overrides(best["overrides"], get_profile("toy").train)
        overrides = tuple(sorted({**dict(changes), **dict(steps)}.items()))
        run = RunSpec(method, cfg.seed, MAIN_FAMILY, schedule, "toy", overrides, root)
        label = method_label(method, schedule)
        factors = {"dial": 0.0, "schedule": schedule or "none", "matched_step": False,
                   "recipe": best["candidate"]}  # fmt: skip
        rows.append(sections.Row(f"dial0/{name}_own", f"{label} (own recipe: {best['candidate']})",
                                 MAIN_FAMILY, method, run, factors, "toy"))  # fmt: skip
    return rows


def _row(
    cfg: PositionPremiseConfig,
    share: float,
    method: str,
    schedule: str | None = None,
    matched: bool = False,
) -> sections.Row:
    """One row at dial setting ``share``: its run (None for the base model) on that setting's
    profile; key "dial<share>/<run name>[_matched]"."""
    profile = dial_profile_name(share)
    factors = {"dial": float(share), "schedule": schedule or "none", "matched_step": matched}
    prefix = f"dial{setting_key(share)}/"
    if method == "base":
        return sections.Row(prefix + "base", "Base", MAIN_FAMILY, "base", None, factors, profile)
    steps, root = sections.run_spec_args(cfg)
    overrides = (*steps, ("matched_step", True)) if matched else steps
    run = RunSpec(method, cfg.seed, MAIN_FAMILY, schedule, profile, overrides, root)
    label = method_label(method, schedule) + (" (matched step)" if matched else "")
    key = prefix + run.name + ("_matched" if matched else "")
    return sections.Row(key, label, MAIN_FAMILY, method, run, factors, profile)


# ------------------------------------------------------------------ per-setting measurements


def measurements_path(cfg: PositionPremiseConfig) -> Path:
    """The measurements file; a quick look (:meth:`scale_tag`) gets its own, tagged name."""
    tag = cfg.scale_tag()
    stem = MEASUREMENTS_FILE.removesuffix(".json")
    return cfg.results_dir / (f"{stem}.{tag}.json" if tag else MEASUREMENTS_FILE)


def position_auroc(table1: dict[str, Any]) -> dict[str, Any]:
    """The diagnostic's position row, oriented as the paper orients it (earlier = higher score):
    the AUROC of 1 - u is 1 minus that of u (a rank statistic), its interval mirrored."""
    row = next(r for r in table1["rows"] if "position" in r["score"])
    late = "later" in row.get("orientation", "")
    flip = (lambda x: None if x is None else 1.0 - x) if late else (lambda x: x)
    return {
        "auroc_early": flip(row["auroc"]),
        "ci_low": flip(row["ci_high"] if late else row["ci_low"]),
        "ci_high": flip(row["ci_low"] if late else row["ci_high"]),
        "n_real_uncertain": row.get("n_real_uncertain"),
        "n_candidates": (row.get("n_real_uncertain") or 0) + (row.get("n_diversity") or 0),
    }


def measure_setting(cfg: PositionPremiseConfig, share: float, progress: bool) -> dict[str, Any]:
    """Teacher-signal position split and diagnostic position AUROC of one dial setting (a quick
    look's ``max_problems`` caps both; the diagnostic then writes tagged files)."""
    profile = dial_profile_name(share)
    model = get_profile(profile).models[MAIN_FAMILY]
    start = time.time()
    quick = {} if cfg.max_problems is None else {"max_problems": cfg.max_problems}
    signal = teacher_signal.measure(model, seed=MEASUREMENT_SEED, progress=progress, **quick)
    out = cfg.results_dir / "diagnostic" / f"dial{setting_key(share)}"
    diag = DiagnosticConfig(seed=MEASUREMENT_SEED, profile=profile, out_dir=str(out), **quick)
    sections.run_diagnostic(diag)
    table1 = json.loads(diag.results_file("table1").read_text())
    return {
        "profile": profile,
        "model": str(Path(model).resolve().relative_to(REPO_ROOT)),
        "teacher_signal": {k: signal[k] for k in (*teacher_signal.HEADLINE, "by_third",
                                                  "student_accuracy", "n_rollouts", "n_wrong")},
        "diagnostic_position": position_auroc(table1),
        "seconds": round(time.time() - start, 1),
    }  # fmt: skip


def measure_dial(cfg: PositionPremiseConfig, progress: bool = True) -> dict[str, Any]:
    """Measurements of every setting in ``cfg.dial``: read from the cached file, the missing
    ones measured and added (the file is rewritten after each, so an interrupted run resumes)."""
    path = measurements_path(cfg)
    data = json.loads(path.read_text()) if path.exists() else {}
    settings = data.get("settings", {})
    for share in cfg.dial:
        key = setting_key(share)
        if key in settings:
            continue
        settings[key] = measure_setting(cfg, share, progress)
        write_results(path, {"settings": settings}, profile=cfg.profile, seed=MEASUREMENT_SEED,
                      wall_seconds=sum(s["seconds"] for s in settings.values()))  # fmt: skip
    return settings


def run_position_premise(cfg: PositionPremiseConfig, progress: bool = True) -> dict[str, Any]:
    """Measure the dial (cached), then train and evaluate every row; writes
    ``position_premise.seed<k>.json``."""
    dial = measure_dial(cfg, progress) if cfg.measure else {}
    rows = premise_rows(cfg)
    extra = {"dial": [float(s) for s in cfg.dial], "measurements": dial}
    return sections.run_table_section(cfg, rows=rows, extra=extra, progress=progress)


# ------------------------------------------------------------------ the paper sections' controls


def control_rows(schedules: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """Keys of the share-0 rows that control the paper-protocol PW-OPSD rows of ``schedules``:
    OPSD, each schedule plain and with the matched step, the matched ``extra`` runs, and the
    own-recipe rows."""
    keys = ["dial0/opsd"]
    for s in schedules:
        keys += [f"dial0/pw_opsd_{s}", f"dial0/pw_opsd_{s}_matched"]
    keys += [f"dial0/{run}_matched" for run in extra]
    return keys + [f"dial0/{m}_own" for m in recipe.PER_METHOD]


def controls(
    schedules: list[str], profile: str = "toy", extra: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, str] | None:
    """For a paper section's page: the matched-step and own-recipe controls of its PW-OPSD rows
    (Avg@12 table and paired verdicts against OPSD), from this section's share-0 rows, which
    are the shipped toy world; None before any seed has run."""
    table = tables.load_section(profile, PositionPremiseConfig.notebook)
    if table is None:
        return None
    present = {r["key"] for r in table["rows"]}
    keys = [k for k in control_rows(schedules, extra) if k in present]
    pairs = [(k, "dial0/opsd") for k in keys if k != "dial0/opsd"]
    return tables.frame(table, "avg", rows=keys), tables.verdict_list(table, pairs)
