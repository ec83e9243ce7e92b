"""Tables and figures for the notebooks and the book, always drawn from results files.

Every function takes the parsed JSON of a results file (or a path) and returns a pandas
DataFrame or a matplotlib Figure; nothing here holds a number of its own. Every figure colours
a method from one palette, :data:`METHOD_COLORS` (:func:`method_color`), so a method keeps its
colour on every page, and puts its legend outside the axes.
"""

from __future__ import annotations

import json
import textwrap
import zlib
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # headless: matplotlib falls back to Agg; kernels use inline
import pandas as pd
import torch
from matplotlib.lines import Line2D

from pwopsd.config import REPO_ROOT, RESULTS_DIR
from pwopsd.losses import position_weights
from pwopsd.tables import published_row
from pwopsd.vocab import (
    DEFAULT_SCHEDULE,
    METHOD_LABELS,
    PAPER_COLUMN,
    PAPER_MODEL_LABELS,
    SCHEDULES,
)

PUBLISHED_DIR = REPO_ROOT / "data" / "published"

# ------------------------------------------------------------------ one colour per method

METHOD_COLORS: dict[str, str] = {
    "base": "#8C8C8C",  # grey: the untrained model every method starts from
    "opsd": "#0072B2",  # blue (Okabe-Ito)
    "eopd": "#E69F00",  # orange (Okabe-Ito)
    "reopold": "#CC79A7",  # reddish purple (Okabe-Ito)
    # PW-OPSD: one green per schedule, light (softest) to dark (sharpest), in SCHEDULES' order
    "pw_opsd_mild": "#ADDD8E",
    "pw_opsd_moderate": "#41AB5D",
    "pw_opsd_sharp": "#1B7837",
    "pw_opsd_aggressive": "#00441B",
    # the factorial's off-diagonal cells (its corners are OPSD and PW-OPSD Moderate)
    "uniform_per_sequence": "#56B4E9",  # sky blue: uniform weight like OPSD
    "position_global": "#882255",  # wine
    # beyond the paper
    "pw_mix": "#332288",  # indigo
    "teacher_free": "#661100",  # dark brown
}
"""Palette key -> colour; :func:`palette_key` maps a table row, run, table key or method to its
key. Black is kept for the paper's values and grey for reference lines."""

FALLBACK_COLORS = ("#999933", "#44AA99", "#AA4499", "#6699CC", "#EE8866")
"""Colours for a method the palette does not name, picked by a stable hash of its name (the
same method gets the same colour in every figure)."""

PAPER_COLOR = "black"
"""The paper's published values on bar charts."""

TEMPLATE_COLORS = {
    "student": ("student template", METHOD_COLORS["base"]),  # the untrained model
    "teacher_answer": ("answer-only teacher", "#DDCC77"),
    "teacher_solution": ("solution teacher", "#997700"),
}
"""Calibration bars: template -> (label, colour); the privileged teachers in sand and gold."""


def palette_key(item: dict[str, Any] | str) -> str:
    """The palette key of a table row (its run, else its method), a run name, a table key
    ("qwen3/pw_opsd_moderate") or a method: a control's suffix ("_matched") and a family
    prefix drop, a position/global cell keys without its schedule, bare PW-OPSD means the
    default schedule."""
    if isinstance(item, dict):
        name = item.get("run") or item.get("method") or str(item.get("key", ""))
    else:
        name = str(item)
    name = name.rsplit("/", 1)[-1].removesuffix("_matched")
    if name in METHOD_COLORS:
        return name
    if name == "pw_opsd":
        return f"pw_opsd_{DEFAULT_SCHEDULE}"
    return next((p for p in ("position_global", "pw_mix") if name.startswith(p)), name)


def method_color(item: dict[str, Any] | str) -> str:
    """The colour of a method (see :func:`palette_key`), the same in every figure."""
    key = palette_key(item)
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return FALLBACK_COLORS[zlib.crc32(key.encode()) % len(FALLBACK_COLORS)]


def legend_outside(fig: plt.Figure, handles: list, labels: list[str]) -> None:
    """One legend for the whole figure, to the right of every axes (needs a constrained
    layout), so that no legend covers data."""
    labels = [textwrap.fill(label, 32) for label in labels]
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def move_legends_outside(fig: plt.Figure) -> plt.Figure:
    """Re-place each axes legend of a figure drawn elsewhere (a lower floor's figure) to the
    right of its axes (the figure widens to make room), so that no legend covers data."""
    fig.set_size_inches(fig.get_size_inches()[0] + 2.0, fig.get_size_inches()[1])
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.legend(*ax.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout()
    return fig


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
                # The short commit, and the dirty flag a bare [:12] would cut off.
                "commit": str(prov.get("git_commit")).removesuffix("-dirty")[:12]
                + (
                    " (uncommitted changes)"
                    if str(prov.get("git_commit")).endswith("-dirty")
                    else ""
                ),
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


# ------------------------------------------------------------------ bars of a table section


def _paper_label(row: dict[str, Any]) -> str:
    """The paper's name for a row's method ("PW-OPSD Moderate"), by its palette key."""
    key = palette_key(row)
    if key.startswith("pw_opsd_"):
        return f"PW-OPSD {key.removeprefix('pw_opsd_').capitalize()}"
    return METHOD_LABELS.get(key, row.get("label", key))


def _paper_value(row: dict[str, Any], bench: str | None) -> float | None:
    """The paper's Avg@12 (%) for a row's method and model on the benchmark a toy set stands
    in for (``bench`` None: its mean over the four), or None when it publishes none."""
    control = str(row.get("run") or row.get("key", "")).endswith("_matched")
    pub = None if control else published_row(row["family"], _paper_label(row))
    if pub is None:
        return None
    if bench is None:
        return pub.get("mean")
    score = (pub.get("scores") or {}).get(PAPER_COLUMN.get(bench, bench))
    return None if score is None else score["mean"]


def _bars(ax: plt.Axes, table: dict[str, Any], rows: list[dict], metric: str, paper: bool) -> dict:
    """One group of bars per benchmark plus the mean over benchmarks, one bar per row;
    returns label -> legend handle."""
    names = [b["name"] for b in table["benchmarks"]] + [None]
    width = 0.8 / max(1, len(rows))
    handles: dict[str, Any] = {}
    for j, r in enumerate(rows):
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(names))]
        scores = [r["scores"][n][metric] if n else r["overall"][metric] for n in names]
        means = [100 * s["mean"] for s in scores]
        sds = [100 * (s["sd"] or 0.0) for s in scores]
        handles[r["label"]] = ax.bar(xs, means, width, yerr=sds, capsize=2, color=method_color(r),
                                     edgecolor="white", linewidth=0.5, error_kw={"lw": 0.8})  # fmt: skip
        for x, n in zip(xs, names, strict=True):
            value = _paper_value(r, n) if paper and metric == "avg" else None
            if value is not None:
                ax.hlines(value, x - width / 2, x + width / 2, colors=PAPER_COLOR, lw=2)
                handles["paper"] = None
    labels = {b["name"]: b.get("label") or b["name"] for b in table["benchmarks"]}
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([labels[n].replace(" ", "\n", 1) if n else "mean of\nthe sets" for n in names],
                       fontsize=8)  # fmt: skip
    ax.set_ylim(0, 105)
    ax.grid(axis="y", lw=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    return handles


def plot_rows(
    table: dict[str, Any], metric: str = "avg", group_by_family: bool = False, paper: bool = True
) -> plt.Figure:
    """Bars of one metric per benchmark and of the mean over benchmarks, one bar per row in its
    method's colour (:func:`method_color`), error bars the table's sd (over ``table["spread"]``).

    ``paper``: a black tick over a bar marks the paper's Avg@12 for the same method on the
    benchmark the toy set stands in for, with the paper's model (Avg only; none where the paper
    publishes none). ``group_by_family``: one panel per model family, same y axis.
    """
    families = list(dict.fromkeys(r["family"] for r in table["rows"]))
    groups = families if group_by_family else [None]
    per_panel = max(sum(1 for r in table["rows"] if g in (None, r["family"])) for g in groups)
    width = len(groups) * (0.9 + (len(table["benchmarks"]) + 1) * (0.2 * per_panel + 0.35))
    fig, axes = plt.subplots(1, len(groups), figsize=(min(13.0, width + 2.0), 3.6), sharey=True,
                             squeeze=False, layout="constrained")  # fmt: skip
    handles: dict[str, Any] = {}
    for ax, family in zip(axes[0], groups, strict=True):
        rows = [r for r in table["rows"] if family in (None, r["family"])]
        handles |= _bars(ax, table, rows, metric, paper)
        if family is not None:
            ax.set_title(f"toy {family} (paper: {PAPER_MODEL_LABELS.get(family, '?')})", fontsize=9)
    axes[0][0].set_ylabel(f"{metric.capitalize()}@{table['sampling'].get('n', 'k')} (%)")
    if "paper" in handles:
        handles["paper"] = Line2D([], [], color=PAPER_COLOR, marker="_", ms=12, mew=2, ls="none")
        handles["paper's Avg@12 (its model, the real set)"] = handles.pop("paper")
    legend_outside(fig, list(handles.values()), list(handles))
    return fig


def saturation_note(table: dict[str, Any], metric: str = "pass", at_least: float = 0.95) -> str:
    """A sentence for a page whose figures leave ``metric`` out because it sits at its ceiling
    in every cell (all means >= ``at_least``); empty when it does not."""
    means = [s[metric]["mean"] for r in table["rows"] for s in r["scores"].values()]
    if not means or min(means) < at_least:
        return ""
    name = f"{metric.capitalize()}@{table['sampling'].get('n', 'k')}"
    return (
        f"{name} lies between {100 * min(means):.1f}% and {100 * max(means):.1f}% in every cell: "
        "at toy scale it is saturated and separates no method, so the figures leave it out."
    )


def plot_factorial(table: dict[str, Any], metric: str = "avg") -> plt.Figure:
    """Interaction plot of the 2x2 factorial: mean over benchmarks per reduction, one line per
    weighting (parallel lines = no interaction); each cell's point in its method's colour,
    error bars the sd over ``table["spread"]``."""
    fig, ax = plt.subplots(figsize=(8.0, 3.4), layout="constrained")
    handles: dict[str, Any] = {}
    lines: dict[str, Any] = {}
    for weighting, style in (("uniform", "-"), ("position", "--")):
        cells = [(i, r) for i, reduction in enumerate(("global", "per_sequence"))
                 for r in table["rows"]
                 if r["factors"] == {"weighting": weighting, "reduction": reduction}]  # fmt: skip
        ys = [100 * r["overall"][metric]["mean"] for _, r in cells]
        ax.plot([i for i, _ in cells], ys, style, color="grey", lw=1.2, zorder=1)
        lines[f"{weighting} weight (line)"] = Line2D([], [], color="grey", ls=style)
        for (i, r), y in zip(cells, ys, strict=True):
            sd = 100 * (r["overall"][metric]["sd"] or 0.0)
            handles[r["label"]] = ax.errorbar(i, y, yerr=sd, marker="o", ms=8, capsize=3,
                                              color=method_color(r), ls="none", zorder=2)  # fmt: skip
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["global token mean", "per-sequence mean"])
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylabel(f"mean {metric.capitalize()}@k over benchmarks (%)")
    handles |= lines
    legend_outside(fig, list(handles.values()), list(handles))
    return fig


def training_frame(table: dict[str, Any]) -> pd.DataFrame:
    """One row per trained run and seed: steps, train time, last loss, clip fractions, tok/s.
    Indexed by model, method and seed when the table mixes models, else by method and seed.
    Missing values show "-"."""
    labels = {r["key"]: r["label"] for r in table["rows"]}
    models = {r["key"]: r.get("model") for r in table["rows"]}
    rows = []
    for seed, rs in table.get("runs", {}).items():
        for key, run in rs.items():
            m = run.get("metrics") or [{}]
            last = m[-1]
            clip = last.get("clip_frac_tokens")
            rows.append(
                {
                    "model": models.get(key) or key.split("/")[0],
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
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).astype(object)
    frame = frame.where(frame.notna(), "-")
    index = ["model", "method", "seed"] if frame["model"].nunique() > 1 else ["method", "seed"]
    return frame.drop(columns=[] if "model" in index else ["model"]).set_index(index)


# ------------------------------------------------------------------ toy world


CHECK_LABELS = {
    "student_avg_in_band": "student Avg@n in band",
    "student_pass_above_avg": "student Pass@n above Avg@n",
    "teacher_at_least_15_above_student": "solution teacher ≥ 15 points above student",
    "answer_only_at_least_10_above_student": "answer-only teacher ≥ 10 points above student",
    "answer_only_length_within_30pct": "answer-only length within 30% of student's",
    "teacher_signal_measured": "teacher signal measured",
    "format_share_below_0.1": "format share < 0.1",
    "first_wrong_teacher_wins_at_least_0.8": "first wrong step: teacher wins ≥ 0.8",
    "wrong_over_correct_fkl_at_least_2": "wrong / right FKL ≥ 2",
}
"""How the toy-world page names each calibration band check (the files' keys are snake_case)."""


def check_label(name: str) -> str:
    """A band check's name in words (:data:`CHECK_LABELS`; else underscores as spaces)."""
    return CHECK_LABELS.get(name, name.replace("_", " "))


def calibration_checks_frame(cal: dict[str, Any]) -> pd.DataFrame:
    """Band check (rows, in words) x family ("yes" = met) plus the vLLM-vs-HF logprob gap;
    checks a family did not record show "-". Checks as rows keep the table narrow."""
    rows = {}
    for family, entry in cal.items():
        row = {check_label(k): "yes" if v else "no" for k, v in entry.get("checks", {}).items()}
        if "logprob_max_abs_diff" in entry:
            row["vLLM vs HF max |logprob diff|"] = f"{entry['logprob_max_abs_diff']:.1e}"
        rows[family] = row
    return pd.DataFrame(rows).astype(object).fillna("-").rename_axis("check")


def plot_calibration(cal: dict[str, Any]) -> plt.Figure:
    """Avg@n per template and family: the privileged templates should sit above the student."""
    fams = list(cal)
    templates = ("student", "teacher_answer", "teacher_solution")
    fig, ax = plt.subplots(figsize=(8.5, 3.2), layout="constrained")
    width = 0.8 / len(templates)
    for j, t in enumerate(templates):
        label, color = TEMPLATE_COLORS[t]
        ax.bar([i + j * width for i in range(len(fams))], [100 * cal[f][t]["avg"] for f in fams],
               width, label=label, color=color)  # fmt: skip
    ax.set_xticks([i + width for i in range(len(fams))])
    ax.set_xticklabels(fams)
    ax.set_ylabel("Avg@n (%)")
    ax.set_ylim(0, 100)
    legend_outside(fig, *ax.get_legend_handles_labels())
    return fig


# ------------------------------------------------------------------ schedules


def plot_schedules(
    names: list[str] | None = None,
    custom: tuple[float | None, float | None, float | None] = (None, None, None),
) -> plt.Figure:
    """w(u) = w_min + (1 - w_min) sigmoid((u - c) / s) for each schedule (PROTOCOL section 2),
    each in its PW-OPSD colour, beside OPSD's uniform weight 1."""
    names = list(SCHEDULES) if names is None else names
    curves = {n: SCHEDULES[n] for n in names}
    if all(v is not None for v in custom):
        curves["custom"] = custom
    mask = torch.ones(1, 200, dtype=torch.bool)
    u = (torch.arange(1, 201) - 0.5) / 200
    fig, ax = plt.subplots(figsize=(8.5, 3.4), layout="constrained")
    ax.plot([0, 1], [1, 1], color=method_color("opsd"), ls=":", label="OPSD (uniform, w = 1)")
    for name, (w_min, c, s) in curves.items():
        w = position_weights(mask, w_min=w_min, c=c, s=s)[0]
        color = "black" if name == "custom" else method_color(f"pw_opsd_{name}")
        ax.plot(u.numpy(), w.numpy(), color=color, ls="--" if name == "custom" else "-", lw=2,
                label=f"{name} (w_min={w_min}, c={c}, s={s})")  # fmt: skip
    ax.set_xlabel("relative position u = (i - 0.5) / L")
    ax.set_ylabel("token weight w(u)")
    ax.set_ylim(0, 1.05)
    legend_outside(fig, *ax.get_legend_handles_labels())
    return fig
