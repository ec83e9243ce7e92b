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
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd import metrics, plots, sections, tables
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
        steps = {} if cfg.train_steps is None else {"max_steps": cfg.train_steps}
        changes = recipe.recipe_overrides(best["overrides"], get_profile("toy").train)
        overrides = tuple(sorted({**dict(changes), **steps}.items()))
        root = str(cfg.results_dir / "runs") if cfg.out_dir else ""
        run = RunSpec(method, cfg.seed, MAIN_FAMILY, schedule, "toy", overrides, root)
        label = METHOD_LABELS[method] + (f" {schedule.capitalize()}" if schedule else "")
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
    steps = () if cfg.train_steps is None else (("max_steps", cfg.train_steps),)
    overrides = (*steps, ("matched_step", True)) if matched else steps
    root = str(cfg.results_dir / "runs") if cfg.out_dir else ""
    run = RunSpec(method, cfg.seed, MAIN_FAMILY, schedule, profile, overrides, root)
    label = METHOD_LABELS.get(method, "position weight, global mean")
    label += f" {schedule.capitalize()}" if schedule else ""
    label += " (matched step)" if matched else ""
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


# ------------------------------------------------------------------ reading the results


def measurement_frame(settings: dict[str, Any]) -> pd.DataFrame:
    """One row per dial setting: forward-KL share per third, teacher wins at the first wrong
    step per third, the forward KL per token on wrong over right rollouts (does the signal
    still point at mistakes?), the diagnostic's early-oriented position AUROC and its counts."""
    rows = []
    for key, m in sorted(settings.items(), key=lambda kv: float(kv[0])):
        sig, diag = m["teacher_signal"], m["diagnostic_position"]
        row: dict[str, Any] = {"shortcut share": float(key)}
        for third, part in sig["by_third"].items():
            row[f"FKL share, {third} third"] = part["fkl_share"]
        for third, part in sig["by_third"].items():
            row[f"teacher wins, {third} third"] = part["first_wrong_teacher_wins"]
        row["teacher wins (all)"] = sig["first_wrong_teacher_wins"]
        row["FKL wrong / right"] = sig["wrong_over_correct_fkl"]
        row["position AUROC (early)"] = diag["auroc_early"]
        row["real-uncertain / candidates"] = f"{diag['n_real_uncertain']} / {diag['n_candidates']}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("shortcut share")


def row_mean(row: dict[str, Any], metric: str = "avg") -> float:
    """A stored row's mean over its benchmarks (each the mean over its evaluation seeds)."""
    return statistics.fmean(m[metric]["mean"] for m in row["scores"].values())


def gap_per_seed(per_seed: list[dict[str, Any]], share: float, key: str, ref: str = "opsd"
                 ) -> dict[int, float]:  # fmt: skip
    """Per training seed: (row ``key`` - row ``ref``) at dial ``share``, Avg@12 mean of the
    four sets, in points. Pairs share the training seed and the evaluation seeds."""
    gaps = {}
    prefix = f"dial{setting_key(share)}/"
    for result in per_seed:
        scores = {r["key"]: row_mean(r) for r in result["rows"]}
        a, b = scores.get(prefix + key), scores.get(prefix + ref)
        if a is not None and b is not None:
            gaps[result["seed"]] = 100 * (a - b)
    return gaps


def gap_frame(
    per_seed: list[dict[str, Any]], keys: dict[str, str], ref: str = "opsd"
) -> pd.DataFrame:
    """Per dial setting and compared row: the paired gap to ``ref`` with its t interval."""
    rows = []
    dial = sorted({float(s) for r in per_seed for s in r.get("dial", [])})
    for share in dial:
        for key, label in keys.items():
            gaps = gap_per_seed(per_seed, share, key, ref)
            if not gaps:
                continue
            iv = metrics.paired_interval([gaps[s] for s in sorted(gaps)])
            rows.append({"shortcut share": share, "row": label, "gap": iv.mean,
                         "low": iv.low, "high": iv.high, "seeds": iv.n})  # fmt: skip
    return pd.DataFrame(rows)


COMPARED_ROWS = {
    "pw_opsd_moderate": "PW-OPSD Moderate",
    "pw_opsd_aggressive": "PW-OPSD Aggressive",
    "pw_opsd_moderate_matched": "PW-OPSD Moderate (matched step)",
    "pw_opsd_aggressive_matched": "PW-OPSD Aggressive (matched step)",
}
"""Row (key after "dial<share>/") -> label, each compared with OPSD at the same setting."""


def gain_table(per_seed: list[dict[str, Any]]) -> pd.DataFrame:
    """Each trained row's gain over the base model at each dial setting: the paired mean over
    training seeds with its 95% t interval, as text (dial settings x rows)."""
    keys = {"opsd": "OPSD", **COMPARED_ROWS}
    gains = gap_frame(per_seed, keys, ref="base")
    if gains.empty:
        return gains
    gains = gains.assign(**{"gain over base": [_interval_text(r) for _, r in gains.iterrows()]})
    out = gains.pivot(index="shortcut share", columns="row", values="gain over base")
    return out[[k for k in keys.values() if k in out.columns]].rename_axis(None, axis=1)


def plot_measurements(settings: dict[str, Any]) -> Any:
    """What the dial moved, per setting: the teacher's forward-KL share per third of the
    completion (left), its wins at first wrong steps per third (middle), and the diagnostic's
    early-position AUROC with its 95% interval beside the paper's value (right)."""
    import matplotlib.pyplot as plt

    from pwopsd.diagnostic.figures import load_published

    keys = sorted(settings, key=float)
    x = [float(k) for k in keys]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for third, style in zip(teacher_signal.THIRDS, ("-o", "--s", ":^"), strict=True):
        parts = [settings[k]["teacher_signal"]["by_third"][third] for k in keys]
        axes[0].plot(x, [p["fkl_share"] for p in parts], style, label=f"{third} third")
        wins = [p["first_wrong_teacher_wins"] for p in parts]
        axes[1].plot(x, [float("nan") if w is None else w for w in wins], style,
                     label=f"{third} third")  # fmt: skip
    axes[0].set_ylabel("share of the teacher's forward KL")
    axes[1].set_ylabel("teacher wins at the first wrong step")
    axes[1].set_ylim(0, 1.05)
    diag = [settings[k]["diagnostic_position"] for k in keys]
    mid = [float("nan") if d["auroc_early"] is None else d["auroc_early"] for d in diag]
    err = [[m - (d["ci_low"] or m) for m, d in zip(mid, diag, strict=True)],
           [(d["ci_high"] or m) - m for m, d in zip(mid, diag, strict=True)]]  # fmt: skip
    axes[2].errorbar(x, mid, yerr=err, fmt="-o", capsize=3, label="toy (95% CI)")
    axes[2].axhline(load_published()["headline"]["auroc"], color="black", linestyle="--",
                    linewidth=1, label="paper (Qwen3-4B)")  # fmt: skip
    axes[2].axhline(0.5, color="grey", linewidth=0.8)
    axes[2].set_ylabel("position AUROC, early = higher")
    axes[2].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("dial (shortcut share)")
        ax.set_xticks(x)
    axes[0].legend(frameon=False, fontsize=8)
    axes[2].legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_gaps(gaps: pd.DataFrame) -> Any:
    """The headline figure: (row - OPSD) against the dial, mean over training seeds with its
    95% t interval as error bars; one line per compared row, legend outside the axes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    labels = list(dict.fromkeys(gaps["row"]))
    key_of = {label: key for key, label in COMPARED_ROWS.items()}
    for i, label in enumerate(labels):
        part = gaps[gaps["row"] == label]
        x = part["shortcut share"] + (i - (len(labels) - 1) / 2) * 0.015  # dodge the bars
        err = [part["gap"] - part["low"], part["high"] - part["gap"]]
        dashed = "matched" in label
        ax.errorbar(x, part["gap"], yerr=err, marker="o", capsize=3, label=label,
                    linestyle="--" if dashed else "-",
                    color=plots.method_color(key_of.get(label, label)))  # fmt: skip
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("dial: share of teacher examples opening with the reference's shortcut")
    ax.set_ylabel("row - OPSD, Avg@12 (points)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _interval_text(row: pd.Series) -> str:
    return metrics.format_interval(
        metrics.PairedInterval(row["gap"], row["low"], row["high"], int(row["seeds"]))
    )


def _moved_clause(settings: dict[str, Any]) -> tuple[str, bool]:
    """What the dial did to the teacher's signal between its lowest and highest setting, and
    whether the first third's forward-KL share rose (the pre-stated "moved as intended")."""
    keys = sorted(settings, key=float)
    if len(keys) < 2:
        return "", False
    sig = [settings[k]["teacher_signal"] for k in (keys[0], keys[-1])]
    lo, hi = (s["by_third"]["first"]["fkl_share"] for s in sig)
    r_lo, r_hi = (s["wrong_over_correct_fkl"] for s in sig)
    text = (f"From share {float(keys[0]):g} to {float(keys[-1]):g}, the teacher's forward-KL "
            f"share in the first third of the completion went from {lo:.2f} to {hi:.2f} "
            f"({'up' if hi > lo else 'not up'}), and its forward KL per token on wrong over right "
            f"rollouts from {r_lo:.2f} to {r_hi:.2f}. ")  # fmt: skip
    return text, hi > lo


def reading(part: pd.DataFrame, settings: dict[str, Any]) -> str:
    """The pre-stated reading of one row's gaps to OPSD (``part``, sorted by dial setting)."""
    early_up = _moved_clause(settings)[1]
    rises, wins = part.iloc[-1]["gap"] > part.iloc[0]["gap"], part.iloc[-1]["low"] > 0
    if wins and rises and early_up:
        return "**supports the premise**: the gap rises with the dial and clears 0"
    if not rises or all(part["high"] < 0):
        return "**refutes the premise in this world**: " + (
            "PW-OPSD trails OPSD at every setting" if rises else "the gap does not rise with the dial")  # fmt: skip
    if not wins:
        return "**does not support it**: the gap does not clear 0 at the strongest setting"
    return ("**does not settle it**: the gap clears 0, but the teacher's early forward-KL share "
            "did not rise with the dial")  # fmt: skip


def verdict(
    gaps: pd.DataFrame,
    settings: dict[str, Any],
    label: str = "PW-OPSD Moderate",
    gains: pd.DataFrame | None = None,
) -> str:
    """The pre-stated reading, applied to the numbers: did the dial move the teacher's early
    forward-KL share up, does (``label`` - OPSD) rise with the dial and clear 0 at the
    strongest setting? ``gains`` (rows minus base, :func:`gap_frame` with ``ref="base"``) adds
    whether OPSD itself fell below the base model there. Every clause carries its interval."""
    part = gaps[gaps["row"] == label].sort_values("shortcut share")
    if part.empty:
        return f"_No {label} rows yet._"
    first, last = part.iloc[0], part.iloc[-1]
    moved = _moved_clause(settings)[0]
    outcome = reading(part, settings)
    fell = ""
    if gains is not None and not gains.empty:
        at = gains[(gains["shortcut share"] == last["shortcut share"]) & (gains["row"] == "OPSD")]
        if not at.empty and at.iloc[0]["high"] < 0:
            fell = (f" At share {last['shortcut share']:g} OPSD itself falls below the base "
                    f"model ({_interval_text(at.iloc[0])}), and {label} does not stop the fall.")  # fmt: skip
    return (f"{moved}{label} minus OPSD (Avg@12, mean of four sets, paired by training seed, "
            f"95% t interval): {_interval_text(first)} at share "
            f"{first['shortcut share']:g} and {_interval_text(last)} at share "
            f"{last['shortcut share']:g}. By the reading stated before the runs, this "
            f"{outcome}.{fell}")  # fmt: skip


def section_results(profile: str = "toy") -> list[dict[str, Any]]:
    """Every full-configuration seed file of the section, by seed (the book's input)."""
    files = tables.section_files(profile, PositionPremiseConfig.notebook)
    return [json.loads(p.read_text()) for p in files]


def latest_measurements(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-setting measurements stored in the newest seed file (all seeds read the same
    cached ones; the newest has every setting any seed measured)."""
    for result in reversed(per_seed):
        if result.get("measurements"):
            return result["measurements"]
    return {}


def measurement_sentence(settings: dict[str, Any]) -> str:
    """How the dial moved the teacher's early signal and the diagnostic, setting by setting."""
    if not settings:
        return ""
    parts = []
    for key in sorted(settings, key=float):
        sig, diag = settings[key]["teacher_signal"], settings[key]["diagnostic_position"]
        first = sig["by_third"]["first"]["fkl_share"]
        auroc = diag["auroc_early"]
        auroc_text = "-" if auroc is None else f"{auroc:.2f}"
        ratio = sig["wrong_over_correct_fkl"]
        parts.append(f"share {float(key):g}: {first:.2f} of the forward KL in the first third, "
                     f"forward KL per token {ratio:.2f}x as high on wrong rollouts as on right "
                     f"ones, early-position AUROC {auroc_text}")  # fmt: skip
    return "Measured: " + "; ".join(parts) + "."


def step_size_sentence(gaps: pd.DataFrame) -> str:
    """Does the matched-step control close PW-OPSD's gap at share 0 (the step-size reading)?"""
    at0 = gaps[gaps["shortcut share"] == 0.0].set_index("row")
    out = []
    for schedule in ("Moderate", "Aggressive"):
        plain, matched = f"PW-OPSD {schedule}", f"PW-OPSD {schedule} (matched step)"
        if plain not in at0.index or matched not in at0.index:
            continue
        m = at0.loc[matched]
        closes = m["high"] >= 0
        out.append(f"At share 0, PW-OPSD {schedule} minus OPSD is {_interval_text(at0.loc[plain])};"
                   f" with the matched step it is {_interval_text(m)}: the step size "
                   + ("**accounts for** the deficit (the interval reaches 0)." if closes else
                      "**does not account for** the deficit (the interval stays below 0)."))  # fmt: skip
    return " ".join(out)


def tuning_frame(path: Path | None = None) -> pd.DataFrame | None:
    """The equal-budget tuning: validation Avg@12 (%) per candidate (rows) and method
    (columns), mean over tuning seeds; None when the file is missing."""
    path = path or recipe.PER_METHOD_PATH
    if not path.exists():
        return None
    rows = json.loads(path.read_text())["rows"]
    frame = pd.DataFrame(rows).groupby(["candidate", "method"], sort=False)["avg"].mean()
    out = (100 * frame).unstack("method")
    return out[[m for m in recipe.PER_METHOD if m in out.columns]].rename_axis(None, axis=1)


def tuning_sentence(path: Path | None = None) -> str:
    """Which candidate each method picked on the validation set."""
    path = path or recipe.PER_METHOD_PATH
    tuning = json.loads(path.read_text())
    best = recipe.best_recipes(tuning)
    seeds = sorted({r["seed"] for r in tuning["rows"]})
    picks = "; ".join(f"{name}: **{b['candidate']}** ({100 * b['avg']:.1f})"
                      for name, b in best.items())  # fmt: skip
    return (f"Validation Avg@12 (%) of every candidate recipe on `toy_val` (tuning seed(s) "
            f"{', '.join(map(str, seeds))}; the four benchmark sets are never used). Each "
            f"method's pick: {picks}. The picks train as the \"own recipe\" rows at share 0.")  # fmt: skip


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
    per_seed = section_results(profile)
    if not per_seed:
        return None
    table = tables.aggregate(per_seed)
    present = {r["key"] for r in table["rows"]}
    keys = [k for k in control_rows(schedules, extra) if k in present]
    pairs = [(k, "dial0/opsd") for k in keys if k != "dial0/opsd"]
    return tables.frame(table, "avg", rows=keys), tables.verdict_list(table, pairs)
