"""Tables and figures for the notebooks and the book, always drawn from results files.

Every function takes the parsed JSON of a results file (or a path) and returns a pandas
DataFrame or a matplotlib Figure; nothing here holds a number of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # headless: matplotlib falls back to Agg; kernels use inline
import pandas as pd
import torch

from pwopsd.config import REPO_ROOT, RESULTS_DIR
from pwopsd.losses import position_weights
from pwopsd.vocab import SCHEDULES

PUBLISHED_DIR = REPO_ROOT / "data" / "published"


def load_json(path: str | Path) -> dict[str, Any] | None:
    """Parsed JSON at ``path`` (relative paths are from the repo root), or None if absent."""
    p = Path(path)
    p = p if p.is_absolute() else REPO_ROOT / p
    if not p.exists():
        return None
    return json.loads(p.read_text())


def provenance_frame() -> pd.DataFrame:
    """One row per results file under results/ (per-sample scratch excluded): where it came from."""
    rows = []
    for path in sorted(RESULTS_DIR.rglob("*.json")):
        if "samples" in path.relative_to(RESULTS_DIR).parts:
            continue
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            continue
        prov = doc.get("provenance") or next(
            (v["provenance"] for v in doc.values() if isinstance(v, dict) and "provenance" in v),
            None,
        )
        if prov is None:
            continue
        hw = prov.get("hardware", {})
        wall = prov.get("wall_seconds")
        rows.append(
            {
                "file": str(path.relative_to(REPO_ROOT)),
                "profile": prov.get("profile") or "",
                "seed": "" if prov.get("seed") is None else str(prov["seed"]),
                "commit": str(prov.get("git_commit"))[:12],
                "hardware": f"{hw.get('cpu_count')} CPUs, {hw.get('memory_gib')} GiB"
                + (f", {hw['gpu']}" if hw.get("gpu") else ""),
                "wall time (s)": None if wall is None else round(wall, 1),
            }
        )
    return pd.DataFrame(rows).set_index("file") if rows else pd.DataFrame()


# ------------------------------------------------------------------ published numbers


def published_table(model: str | None = None) -> pd.DataFrame:
    """The paper's Avg@12 table (mean ± sd over 3 seeds) from data/published/main_table.json."""
    doc = load_json(PUBLISHED_DIR / "main_table.json")
    assert doc is not None, "data/published/main_table.json is missing"
    rows = []
    for r in doc["rows"]:
        if model is not None and r["model"] != model:
            continue
        row = {"model": r["model"], "method": r["method"]}
        for b in doc["benchmarks"]:
            s = (r["scores"] or {}).get(b)
            row[b] = f"{s['mean']:.2f} ± {s['sd']:.2f}" if s else "not published"
        row["mean"] = f"{r['mean']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "method"])


# ------------------------------------------------------------------ table sections


def section_status(table: dict[str, Any] | None, section: str) -> str:
    """One sentence for the top of a table section's page: which seeds, commit, wall time."""
    if table is None:
        return (
            f"No results yet: run `papermill notebooks/{section}.ipynb out.ipynb -p seed 1` "
            "(each seed adds itself to the tables)."
        )
    provs = table["provenance"]
    commits = sorted({str(p.get("git_commit"))[:12] for p in provs})
    wall = sum(p.get("wall_seconds") or 0 for p in provs)
    seeds = ", ".join(str(s) for s in table["seeds"])
    return (
        f"Results for training seed(s) {seeds} at profile `{provs[0].get('profile')}` "
        f"(commit {', '.join(f'`{c}`' for c in commits)}; {wall / 60:.1f} min of wall time in "
        f"all). Tables show mean ± sd over {table['spread']}."
    )


def plot_rows(
    table: dict[str, Any], metric: str = "avg", group_by_family: bool = False
) -> plt.Figure:
    """Bars of one metric per benchmark for every row (error bars: the table's sd)."""
    labels = {b["name"]: b.get("label") or b["name"] for b in table["benchmarks"]}
    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels) + 0.25 * len(rows)), 3.4))
    width = 0.8 / max(1, len(rows))
    for j, r in enumerate(rows):
        xs = [i + j * width for i in range(len(labels))]
        means = [100 * r["scores"][n][metric]["mean"] for n in labels]
        sds = [100 * (r["scores"][n][metric]["sd"] or 0.0) for n in labels]
        name = f"{r['family']}: {r['label']}" if group_by_family else r["label"]
        ax.bar(xs, means, width, yerr=sds, capsize=2, label=name)
    ax.set_xticks([i + width * (len(rows) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(list(labels.values()))
    ax.set_ylabel(f"{metric.capitalize()}@{table['sampling'].get('n', 'k')} (%)")
    ax.legend(fontsize=7, ncol=2 if len(rows) > 5 else 1, loc="upper right")
    fig.tight_layout()
    return fig


def plot_factorial(table: dict[str, Any], metric: str = "avg") -> plt.Figure:
    """Interaction plot of the 2x2 factorial: mean over benchmarks per reduction, one line per
    weighting (parallel lines = no interaction)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for weighting in ("uniform", "position"):
        xs, ys, es = [], [], []
        for i, reduction in enumerate(("global", "per_sequence")):
            r = next((r for r in table["rows"] if r["factors"] == {"weighting": weighting,
                      "reduction": reduction}), None)  # fmt: skip
            if r is None:
                continue
            o = r["overall"][metric]
            xs.append(i)
            ys.append(100 * o["mean"])
            es.append(100 * (o["sd"] or 0.0))
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{weighting} weight")
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["global token mean", "per-sequence mean"])
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylabel(f"mean {metric.capitalize()}@k over benchmarks (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(table: dict[str, Any]) -> plt.Figure | None:
    """Per-step loss, mean KL per token and rollout length of every trained run (all seeds)."""
    runs = [(seed, key, run) for seed, rs in table.get("runs", {}).items()
            for key, run in rs.items() if run.get("metrics")]  # fmt: skip
    if not runs:
        return None
    labels = {r["key"]: r["label"] for r in table["rows"]}
    panels = (
        ("loss", "loss"),
        ("fkl_token_mean", "mean clipped KL per token"),
        ("completion_len_mean", "rollout length (tokens)"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.2))
    colors = {}
    for ax, (metric, title) in zip(axes, panels):
        for seed, key, run in runs:
            pts = [r for r in run["metrics"] if r.get(metric) is not None]
            color = colors.setdefault(key, f"C{len(colors) % 10}")
            label = labels.get(key, key) if ax is axes[-1] and seed == runs[0][0] else None
            ax.plot([r["step"] for r in pts], [r[metric] for r in pts], color=color, lw=1.0,
                    alpha=0.8, label=label)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_frame(table: dict[str, Any]) -> pd.DataFrame:
    """One row per trained run and seed: steps, train time, last loss, clip fractions, tok/s."""
    labels = {r["key"]: r["label"] for r in table["rows"]}
    rows = []
    for seed, rs in table.get("runs", {}).items():
        for key, run in rs.items():
            m = run.get("metrics") or [{}]
            last = m[-1]
            clip = last.get("clip_frac_tokens")
            rows.append(
                {
                    "method": labels.get(key, key),
                    "seed": seed,
                    "steps": last.get("step"),
                    "evaluated step": run.get("eval_step"),
                    "train time (s)": None if run.get("train_seconds") is None
                    else round(run["train_seconds"], 1),
                    "final loss": None if last.get("loss") is None else round(last["loss"], 4),
                    "clipped tokens (last step)": None if clip is None else f"{100 * clip:.1f}%",
                    "rollout tok/s (mean)": round(
                        sum(r.get("rollout_tokens_per_s") or 0 for r in m) / max(len(m), 1)
                    ),
                }
            )  # fmt: skip
    return pd.DataFrame(rows).set_index(["method", "seed"]) if rows else pd.DataFrame()


# ------------------------------------------------------------------ toy world


def calibration_checks_frame(cal: dict[str, Any]) -> pd.DataFrame:
    """Family x band check (True = met) plus the vLLM-vs-HF logprob gap."""
    rows = []
    for family, entry in cal.items():
        row = {"family": family, **entry.get("checks", {})}
        if "logprob_max_abs_diff" in entry:
            row["vLLM vs HF max |logprob diff|"] = f"{entry['logprob_max_abs_diff']:.1e}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("family")


def plot_calibration(cal: dict[str, Any]) -> plt.Figure:
    """Avg@n per template and family: the privileged templates should sit above the student."""
    fams = list(cal)
    templates = ("student", "teacher_answer", "teacher_solution")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(templates)
    for j, t in enumerate(templates):
        ax.bar(
            [i + j * width for i in range(len(fams))],
            [100 * cal[f][t]["avg"] for f in fams],
            width,
            label=t,
        )
    ax.set_xticks([i + width for i in range(len(fams))])
    ax.set_xticklabels(fams)
    ax.set_ylabel("Avg@n (%)")
    ax.set_ylim(0, 100)
    # Above the axes: the bars reach 100 when a teacher is strong, and an inside legend hides them.
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ schedules


def plot_schedules(
    names: list[str] | None = None,
    custom: tuple[float | None, float | None, float | None] = (None, None, None),
) -> plt.Figure:
    """w(u) = w_min + (1 - w_min) sigmoid((u - c) / s) for each schedule (PROTOCOL section 2)."""
    names = list(SCHEDULES) if names is None else names
    curves = {n: SCHEDULES[n] for n in names}
    if all(v is not None for v in custom):
        curves["custom"] = custom
    mask = torch.ones(1, 200, dtype=torch.bool)
    u = (torch.arange(1, 201) - 0.5) / 200
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, (w_min, c, s) in curves.items():
        w = position_weights(mask, w_min=w_min, c=c, s=s)[0]
        ax.plot(u.numpy(), w.numpy(), label=f"{name} (w_min={w_min}, c={c}, s={s})")
    ax.set_xlabel("relative position u = (i - 0.5) / L")
    ax.set_ylabel("token weight w(u)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
