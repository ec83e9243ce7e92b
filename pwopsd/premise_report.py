"""Reading the position-premise study's results (:mod:`pwopsd.premise` runs it): the book page's
and the notebook's frames, sentences, verdicts and figures, from the committed results files.

:func:`section_results` reads every full-configuration seed file of the section and
:func:`latest_measurements` the per-setting measurements stored in them. :func:`gap_frame` gives
each compared row minus OPSD (or the base model) at each dial setting, paired by training seed
(:func:`pwopsd.tables.paired`); :func:`verdict` and :func:`reading` apply the reading stated
before the runs to those gaps; :func:`tuning_frame` and :func:`tuning_sentence` show the
equal-budget per-method tuning behind the own-recipe rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd import metrics, plots, tables
from pwopsd.config import PositionPremiseConfig
from pwopsd.premise import method_label, setting_key
from pwopsd.toy import recipe, teacher_signal

COMPARED_ROWS = {
    "pw_opsd_moderate": "PW-OPSD Moderate",
    "pw_opsd_aggressive": "PW-OPSD Aggressive",
    "pw_opsd_moderate_matched": "PW-OPSD Moderate (matched step)",
    "pw_opsd_aggressive_matched": "PW-OPSD Aggressive (matched step)",
}
"""Row (key after "dial<share>/") -> label, each compared with OPSD at the same setting."""


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


def gap_frame(
    per_seed: list[dict[str, Any]], keys: dict[str, str], ref: str = "opsd"
) -> pd.DataFrame:
    """Per dial setting and compared row (key after "dial<share>/" -> label): the row minus
    ``ref`` at the same setting, Avg@12 mean of the four sets in points, paired by training seed
    (:func:`pwopsd.tables.paired`: same training seed, same evaluation seeds) with its t
    interval; a row without ``ref`` or without a seed in common with it is left out."""
    rows: list[dict[str, Any]] = []
    if not per_seed:
        return pd.DataFrame(rows)
    table = tables.aggregate(per_seed)
    present = {r["key"] for r in table["rows"]}
    dial = sorted({float(s) for r in per_seed for s in r.get("dial", [])})
    for share in dial:
        prefix = f"dial{setting_key(share)}/"
        for key, label in keys.items():
            a, b = prefix + key, prefix + ref
            iv = tables.paired(table, a, b, scale=100) if a in present and b in present else None
            if iv is None:
                continue
            rows.append({"shortcut share": share, "row": label, "gap": iv.mean, "low": iv.low,
                         "high": iv.high, "seeds": iv.n})  # fmt: skip
    return pd.DataFrame(rows)


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
    (columns, labelled as the rows are: "OPSD", "PW-OPSD Moderate"), mean over tuning seeds;
    None when the file is missing."""
    path = path or recipe.PER_METHOD_PATH
    if not path.exists():
        return None
    rows = json.loads(path.read_text())["rows"]
    frame = pd.DataFrame(rows).groupby(["candidate", "method"], sort=False)["avg"].mean()
    out = (100 * frame).unstack("method")
    out = out[[m for m in recipe.PER_METHOD if m in out.columns]].rename_axis(None, axis=1)
    return out.rename(columns=lambda name: method_label(*recipe.method_spec(name)))


def tuning_sentence(path: Path | None = None) -> str:
    """Which candidate each method picked on the validation set."""
    path = path or recipe.PER_METHOD_PATH
    tuning = json.loads(path.read_text())
    best = recipe.best_recipes(tuning)
    seeds = sorted({r["seed"] for r in tuning["rows"]})
    picks = "; ".join(f"{method_label(*recipe.method_spec(name))}: **{b['candidate']}** "
                      f"({100 * b['avg']:.1f})"
                      for name, b in best.items())  # fmt: skip
    return (f"Validation Avg@12 (%) of every candidate recipe on `toy_val` (tuning seed(s) "
            f"{', '.join(map(str, seeds))}; the four benchmark sets are never used). Each "
            f"method's pick: {picks}. The picks train as the \"own recipe\" rows at share 0.")  # fmt: skip
