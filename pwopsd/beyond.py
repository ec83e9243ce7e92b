"""Beyond the paper (issue 20): four variants no released OPSD code offers, trained and compared
like the paper's rows (a section: ``notebooks/beyond.ipynb``, ``book/beyond.md``).

1. **PW-Mix** ("pw_mix", :func:`pwopsd.losses.pw_mix_loss`): the paper's future work, the
   clipped forward KL mixed per token with the full-distribution reverse KL by position
   (forward late, reverse early), one row per mixing shape (``BeyondConfig.mix_schedules``).
2. **A schedule fitted to the diagnostic** (:mod:`pwopsd.diagnostic.schedule_fit`): PW-OPSD with
   (w_min, c, s) fitted to the reliability 1 - P(real uncertainty | u) the diagnostic measured.
3. **The teacher-free control** ("teacher_free", :func:`pwopsd.losses.teacher_free_loss`; arXiv
   2608.31046 as we read it): no teacher, a fixed negative advantage on the student's
   low-probability sampled tokens. Its gap to OPSD bounds what the privileged teacher carries.
4. **Teacher variants** (``TrainConfig.teacher``): PW-OPSD Moderate with the live student or an
   EMA of the student's adapter as the teacher, beside the paper's frozen base.

Every row trains on the main family from the same base and evaluates through
:func:`pwopsd.sections.run_table_section` (OPSD, PW-OPSD Moderate and the base model are shared
with the other sections' runs and evaluations). The results file also carries the fitted
schedule and, per run, the teacher pass's seconds per step (``teacher_seconds``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd import sections, tables
from pwopsd.config import RESULTS_DIR, BeyondConfig, TrainConfig
from pwopsd.diagnostic import schedule_fit
from pwopsd.metrics import format_interval
from pwopsd.train import RunSpec
from pwopsd.vocab import MAIN_FAMILY, METHOD_LABELS

TEACHER_LABELS = {"student": "live-student teacher", "ema": "EMA teacher"}
"""How the book names each teacher variant."""


def fitted_schedule_path(cfg: BeyondConfig) -> Path:
    """Where the fitted schedule is saved: beside the diagnostic's results, or in the section's
    own folder when ``out_dir`` is set (a quick look never writes into ``results/``)."""
    if cfg.out_dir:
        return cfg.results_dir / schedule_fit.FILE_NAME
    return RESULTS_DIR / cfg.profile / "diagnostic" / schedule_fit.FILE_NAME


def fit_schedule(cfg: BeyondConfig) -> dict[str, Any] | None:
    """Fit (or reuse) the schedule from the profile's committed diagnostic results and save it
    (:func:`pwopsd.diagnostic.schedule_fit.save_fitted_schedule`); None when there are none."""
    folder = RESULTS_DIR / cfg.profile / "diagnostic"
    try:
        return schedule_fit.save_fitted_schedule(cfg.profile, folder, fitted_schedule_path(cfg))
    except FileNotFoundError as err:
        print(f"[beyond] {err}: the fitted-schedule row is left out")
        return None


def _row(
    cfg: BeyondConfig,
    method: str,
    schedule: Any = None,
    teacher: str = "base",
    label: str = "",
    variant: str = "",
) -> sections.Row:
    """One row on the main family; a non-base teacher adds its overrides and a key suffix."""
    if method == "base":
        return sections.Row(f"{MAIN_FAMILY}/base", "Base", MAIN_FAMILY, "base", None,
                            {"variant": "reference"})  # fmt: skip
    steps, root = sections.run_spec_args(cfg)
    overrides: list[tuple[str, Any]] = list(steps)
    if teacher != "base":
        overrides.append(("teacher", teacher))
        if teacher == "ema" and cfg.teacher_ema_decay != TrainConfig.teacher_ema_decay:
            overrides.append(("teacher_ema_decay", cfg.teacher_ema_decay))
    run = RunSpec(method, cfg.seed, MAIN_FAMILY, schedule, cfg.profile, tuple(overrides), root)
    if not label:
        label = METHOD_LABELS[method]
        if schedule is not None:
            label += " " + sections.schedule_label(schedule)
    key = f"{MAIN_FAMILY}/{run.name}" + ("" if teacher == "base" else f"_teacher_{teacher}")
    factors = {"variant": variant or "reference", "schedule": _schedule_text(schedule),
               "teacher": None if method == "teacher_free" else teacher}  # fmt: skip
    return sections.Row(key, label, MAIN_FAMILY, method, run, factors)


def _schedule_text(schedule: Any) -> str | None:
    if schedule is None or isinstance(schedule, str):
        return schedule
    return "w{:g} c{:g} s{:g}".format(*schedule)


def beyond_rows(cfg: BeyondConfig, fitted: tuple[float, float, float] | None) -> list[sections.Row]:
    """The section's rows in display order: base, OPSD, PW-OPSD Moderate (the references), PW-Mix
    per mixing shape, PW-OPSD fitted, teacher-free, PW-OPSD Moderate per other teacher."""
    rows = [_row(cfg, "base"), _row(cfg, "opsd"), _row(cfg, "pw_opsd", "moderate")]
    rows += [_row(cfg, "pw_mix", s, variant="mixing") for s in cfg.mix_schedules]
    if cfg.fitted_schedule and fitted is not None:
        label = "PW-OPSD fitted (w_min={:g}, c={:g}, s={:g})".format(*fitted)
        rows.append(_row(cfg, "pw_opsd", tuple(fitted), label=label, variant="fitted schedule"))
    if cfg.teacher_free:
        rows.append(_row(cfg, "teacher_free", variant="teacher-free"))
    for kind in cfg.teachers:
        label = f"PW-OPSD Moderate ({TEACHER_LABELS[kind]})"
        rows.append(_row(cfg, "pw_opsd", "moderate", kind, label, variant="teacher"))
    return rows


def run_beyond(cfg: BeyondConfig, progress: bool = True) -> dict[str, Any]:
    """Fit the schedule, then train and evaluate every row; writes ``beyond.seed<k>.json``."""
    fit = fit_schedule(cfg) if cfg.fitted_schedule else None
    fitted = tuple(fit["schedule"]) if fit else None
    rows = beyond_rows(cfg, fitted)
    extra = {"fitted_schedule": None if fit is None else {k: fit[k] for k in
                                                           ("schedule", "fit", "curve", "sources")}}  # fmt: skip
    return sections.run_table_section(cfg, rows=rows, extra=extra, progress=progress)


# ------------------------------------------------------------------ reading the results


def section_results(profile: str = "toy") -> list[dict[str, Any]]:
    """Every full-configuration seed file of the section, by seed (the book's input)."""
    files = tables.section_files(profile, BeyondConfig.notebook)
    return [json.loads(p.read_text()) for p in files]


VARIANTS = ("mixing", "fitted schedule", "teacher-free", "teacher")
"""The variants, as rows' ``factors["variant"]`` name them (the references are "reference")."""


def comparisons(table: dict[str, Any], variant: str | None = None) -> list[tuple[str, str, str]]:
    """(row, reference row, what the difference tests) for the rows present in ``table``, of
    one variant (:data:`VARIANTS`) or all."""
    keys = [r["key"] for r in table["rows"]]
    opsd, pw = f"{MAIN_FAMILY}/opsd", f"{MAIN_FAMILY}/pw_opsd_moderate"
    out = []
    for r in table["rows"]:
        kind, key = (r.get("factors") or {}).get("variant"), r["key"]
        if variant is not None and kind != variant:
            continue
        if kind == "mixing":
            out += [(key, pw, "reverse KL early instead of down-weighting"),
                    (key, opsd, "mixing vs uniform forward KL")]  # fmt: skip
        elif kind == "fitted schedule":
            out += [(key, pw, "fitted vs published schedule"), (key, opsd, "fitted vs uniform")]
        elif kind == "teacher-free":
            out += [(key, opsd, "what the privileged teacher carries"),
                    (key, f"{MAIN_FAMILY}/base", "the control vs no training")]  # fmt: skip
        elif kind == "teacher":
            out += [(key, pw, "teacher vs the frozen base teacher")]
    return [(a, b, why) for a, b, why in out if a in keys and b in keys]


def verdicts(table: dict[str, Any], variant: str | None = None) -> str:
    """Paired-difference verdicts (Markdown list) for the comparisons of ``variant`` (or all)."""
    pairs = [(a, b) for a, b, _ in comparisons(table, variant)]
    if not pairs:
        return "_No rows of this variant in the results yet._"
    return tables.verdict_list(table, pairs)


def gap_frame(table: dict[str, Any]) -> pd.DataFrame:
    """Per comparison: the paired difference (Avg points, mean of the sets) and its t interval."""
    labels = {r["key"]: r["label"] for r in table["rows"]}
    rows = []
    for a, b, why in comparisons(table):
        iv = tables.paired(table, a, b)
        if iv is None:
            continue
        rows.append({"comparison": f"{labels[a]} − {labels[b]}", "tests": why,
                     "gap": 100 * iv.mean, "low": 100 * iv.low, "high": 100 * iv.high,
                     "seeds": iv.n, "shown": format_interval(iv, 100)})  # fmt: skip
    return pd.DataFrame(rows)


def plot_gaps(gaps: pd.DataFrame) -> plt.Figure:
    """Each comparison's paired difference with its 95% t interval (none with one seed)."""
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(gaps) + 1.2))
    y = list(range(len(gaps)))[::-1]
    err = [(gaps["gap"] - gaps["low"]).fillna(0), (gaps["high"] - gaps["gap"]).fillna(0)]
    ax.errorbar(gaps["gap"], y, xerr=err, fmt="o", capsize=3, color="black")
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(y, gaps["comparison"], fontsize=8)
    ax.set_xlabel("paired difference, Avg@12 mean of the sets (points)")
    fig.tight_layout()
    return fig


def teacher_cost_frame(per_seed: list[dict[str, Any]]) -> pd.DataFrame:
    """Per trained row: the teacher pass's mean seconds per step and its share of the step's
    wall time, over every step of every seed (from each run's stored metrics)."""
    out: dict[str, dict[str, list[float]]] = {}
    labels = {}
    for result in per_seed:
        labels.update({r["key"]: r["label"] for r in result["rows"]})
        for key, run in result.get("runs", {}).items():
            steps = [m for m in run.get("metrics", []) if "teacher_seconds" in m]
            entry = out.setdefault(key, {"teacher": [], "step": []})
            entry["teacher"] += [m["teacher_seconds"] for m in steps]
            entry["step"] += [m["seconds"] for m in steps]
    rows = []
    for key, e in out.items():
        if e["teacher"]:
            t, s = statistics.fmean(e["teacher"]), statistics.fmean(e["step"])
            rows.append({"row": labels.get(key, key), "teacher s / step": t,
                         "step s": s, "teacher share": t / s if s else None})  # fmt: skip
    return pd.DataFrame(rows).set_index("row") if rows else pd.DataFrame()


def fitted_sentence(fit: dict[str, Any] | None) -> str:
    """The fitted schedule and the measured curve it came from, in words (Markdown)."""
    if fit is None:
        return "_No diagnostic results to fit a schedule to yet._"
    c = fit["curve"]
    w_min, centre, width = fit["schedule"]
    bins = "; ".join(f"u≈{u:.1f}: {r}/{r + d} real ({p:.1%})" for u, r, d, p in
                     zip(c["u"], c["n_real_uncertain"], c["n_diversity"], c["p_real"], strict=True))  # fmt: skip
    n = sum(c["n_real_uncertain"]) + sum(c["n_diversity"])
    return (f"Fitted to {n} labelled candidates pooled over {len(fit['sources'])} diagnostic "
            f"seed file(s) (per position bin, real-uncertain / labelled: {bins}): **w_min = "
            f"{w_min:g}, c = {centre:g}, s = {width:g}** (weighted RMSE "
            f"{fit['fit']['rmse']:.3f}). The target is 1 − P(real | u) rescaled to a maximum "
            "of 1; the sigmoid can only rise, so a reliability that does not rise with "
            "position fits as a near-flat schedule.")  # fmt: skip
