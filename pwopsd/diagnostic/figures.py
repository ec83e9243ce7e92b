"""Table 1 and Figure 1 of the diagnostic, drawn from its results files (nothing computed here).

The notebook and ``book/diagnostic.md`` call these on the parsed ``table1.seed<k>.json`` /
``figure1.seed<k>.json`` of ``results/<profile>/diagnostic/`` (one per seed; :func:`load_seeds`)
and on ``data/published/diagnostic.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd.config import RESULTS_DIR
from pwopsd.metrics import mean_sd

LABEL_NAMES = {"diversity": "benign diversity", "real_uncertain": "real uncertainty"}
COLOURS = {"diversity": "tab:blue", "real_uncertain": "tab:red"}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def table1_frame(table: dict[str, Any], published: dict[str, Any] | None = None) -> pd.DataFrame:
    """Table 1 as a DataFrame: AUROC [CI], AUPRC (chance), counts, and the published column."""
    rows = []
    for r in table["rows"]:
        pub = "not published"
        if published is not None:
            if "position" in r["score"]:
                h = published["headline"]
                pub = f"{h['auroc']:.2f} [{h['ci95'][0]:.2f}, {h['ci95'][1]:.2f}]"
            else:
                pub = f"<= {published['local_uncertainty_scores_max_auroc']:.2f} (max over local scores)"
        ci = (
            f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r.get("ci_low") is not None else "n/a"
        )
        rows.append(
            {
                "score": r["score"],
                "orientation": r.get("orientation", ""),
                "AUROC": _fmt(r["auroc"]),
                "95% CI": ci,
                "AUROC, not residualised": _fmt(r.get("auroc_unresidualised")),
                "AUPRC": _fmt(r["auprc"]),
                "AUPRC chance": _fmt(r.get("auprc_chance")),
                "real-uncertain": r["n_real_uncertain"],
                "diversity": r["n_diversity"],
                "published AUROC (Qwen3-4B)": pub,
            }
        )
    return pd.DataFrame(rows).set_index("score")


def position_row(table: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in table["rows"] if "position" in r["score"])


def verdict(table: dict[str, Any]) -> str:
    """One sentence: does the position score separate the labels better than the local ones?"""
    pos = position_row(table)
    local = [r for r in table["rows"] if "position" not in r["score"] and r["auroc"] is not None]
    if pos["auroc"] is None or not local:
        return (
            "Too few labelled candidates of both kinds to compare the scores "
            f"({pos['n_real_uncertain']} real-uncertain, {pos['n_diversity']} diversity)."
        )
    best = max(local, key=lambda r: r["auroc"])
    width = (
        pos["ci_high"] - pos["ci_low"]
        if pos["ci_low"] is not None and pos["ci_high"] is not None
        else float("nan")
    )
    better = pos["auroc"] > best["auroc"]
    clear = pos["ci_low"] is not None and pos["ci_low"] > best["auroc"]
    if better and clear:
        how = (
            "separates the labels better than every local score: even the low end of its "
            "interval lies above every local score's AUROC"
        )
    elif better:
        how = (
            "reaches a higher AUROC than every local score, but its interval still overlaps "
            "the best local score"
        )
    else:
        how = "does **not** separate the labels better than the best local score"
    return (
        f"At this scale the position score ({pos['score']}, AUROC {pos['auroc']:.2f}, "
        f"95% CI [{_fmt(pos['ci_low'])}, {_fmt(pos['ci_high'])}], width {width:.2f}) {how} "
        f"(best local: {best['score']}, {best['auroc']:.2f}); "
        f"{pos['n_real_uncertain']} real-uncertain vs {pos['n_diversity']} diversity candidates "
        f"from {pos['n_problems']} problems."
    )


def plot_figure1(fig_data: dict[str, Any]) -> plt.Figure:
    """Failure rate by normalised position for the two labels (top), and where the labelled
    candidates sit (bottom)."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True, height_ratios=[3, 2])
    edges = fig_data["edges"]
    for label, colour in COLOURS.items():
        s = fig_data["series"][label]
        xs = [(b["lo"] + b["hi"]) / 2 for b in s["bins"] if b["failure_rate"] is not None]
        ys = [b["failure_rate"] for b in s["bins"] if b["failure_rate"] is not None]
        ax1.plot(xs, ys, "o-", color=colour, label=f"{LABEL_NAMES[label]} (n={len(s['u'])})")
        ax2.hist(s["u"], bins=edges, alpha=0.5, color=colour, label=LABEL_NAMES[label])
    s = fig_data["series"]["all"]
    xs = [(b["lo"] + b["hi"]) / 2 for b in s["bins"] if b["failure_rate"] is not None]
    ys = [b["failure_rate"] for b in s["bins"] if b["failure_rate"] is not None]
    ax1.plot(xs, ys, "s--", color="grey", label=f"all candidates incl. gray (n={len(s['u'])})")
    ax1.set_ylabel("failure rate of forced children\n(1 - mean viability)")
    ax1.set_ylim(-0.05, 1.05)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("normalised position u = (i - 0.5) / L")
    ax2.set_ylabel("candidates")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def load_seeds(profile: str = "toy", folder: Path | None = None) -> dict[int, dict[str, Any]]:
    """Full-configuration results of every seed: ``{seed: {"diagnostic", "table1",
    "figure1"}}`` (scaled runs, named with a tag, are skipped)."""
    folder = folder or RESULTS_DIR / profile / "diagnostic"
    seeds: dict[int, dict[str, Any]] = {}
    for path in folder.glob("*.seed*.json"):
        m = re.fullmatch(r"(diagnostic|table1|figure1)\.seed(\d+)\.json", path.name)
        if m:
            seeds.setdefault(int(m[2]), {})[m[1]] = json.loads(path.read_text())
    return {k: seeds[k] for k in sorted(seeds) if len(seeds[k]) == 3}


def seeds_frame(seeds: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """AUROC of every score per seed, and mean ± sd over the seeds."""
    rows: dict[str, dict[str, Any]] = {}
    for seed, files in seeds.items():
        for r in files["table1"]["rows"]:
            rows.setdefault(r["score"], {"score": r["score"]})[f"seed {seed}"] = _fmt(r["auroc"])
            rows[r["score"]].setdefault("_values", []).append(r["auroc"])
    out = []
    for row in rows.values():
        vals = [v for v in row.pop("_values") if v is not None]
        agg = mean_sd(vals) if vals else {"mean": None, "sd": None}
        sd = "" if agg["sd"] is None else f" ± {agg['sd']:.2f}"
        row["mean ± sd"] = _fmt(agg["mean"]) + sd
        out.append(row)
    return pd.DataFrame(out).set_index("score")


def seeds_verdict(seeds: dict[int, dict[str, Any]]) -> str:
    """One sentence over seeds: in how many does the position score beat every local score?"""
    wins, pos_vals = 0, []
    for files in seeds.values():
        rows = files["table1"]["rows"]
        pos = next(r for r in rows if "position" in r["score"])
        local = [
            r["auroc"] for r in rows if "position" not in r["score"] and r["auroc"] is not None
        ]
        if pos["auroc"] is not None:
            pos_vals.append(pos["auroc"])
            wins += bool(local) and pos["auroc"] > max(local)
    if not pos_vals:
        return "No seed has enough labelled candidates of both kinds to compare the scores."
    agg = mean_sd(pos_vals)
    spread = "" if agg["sd"] is None else f" ± {agg['sd']:.2f}"
    return (
        f"Over {len(seeds)} seed(s) the position score's AUROC is "
        f"{agg['mean']:.2f}{spread}; it beats every local score in {wins} of "
        f"{len(pos_vals)} seed(s). Paper: 0.83 against at most 0.57, so the finding "
        + ("replicates at this scale." if wins == len(pos_vals) and agg["mean"] > 0.5
           else "does not clearly replicate at this scale.")
    )  # fmt: skip
