"""Training curves of a table section: per step, the mean over training seeds with its
min-max band, in each method's colour from :data:`pwopsd.plots.METHOD_COLORS`.

The losses of different objectives never share an axis (:func:`loss_objective`): the clipped
forward KL of OPSD, PW-OPSD and the factorial's cells is a divergence (PW-OPSD's carries the
weights w(u) <= 1, so it sits below OPSD's by construction), EOPD's is a PPO-style surrogate
plus a gated top-k forward KL, and REOPOLD's is a policy-gradient surrogate whose sign follows
its reward (negative when the teacher gives the sampled tokens less probability than the
student does).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt  # headless: matplotlib falls back to Agg; kernels use inline

from pwopsd.plots import legend_outside, method_color
from pwopsd.vocab import CLIPPED_FKL_METHODS, METHOD_LABELS

BAND = "min-max over training seeds"
"""What the shaded band around a training curve spans (the line is the mean over seeds)."""


SHARED_CURVES = (
    ("fkl_token_mean", "clipped forward KL per token\n(nats, unweighted)"),
    ("completion_len_mean", "rollout length (tokens)"),
)
"""Per-step quantities every panel row shows for all methods (the clipped KL only where the
loss is a clipped forward KL: EOPD and REOPOLD log none)."""


def loss_objective(method: str) -> str:
    """The objective a method's ``loss`` column measures: methods with the same objective share
    a training-loss panel, and losses of different objectives never share an axis."""
    if method in CLIPPED_FKL_METHODS:
        return "clipped forward KL"
    return METHOD_LABELS.get(method, method)


def _curves(table: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(family, row key) -> the row's label, method, colour and per-seed metrics, in row order."""
    out = {}
    for r in table["rows"]:
        seeds = [runs[r["key"]]["metrics"] for runs in table.get("runs", {}).values()
                 if (runs.get(r["key"]) or {}).get("metrics")]  # fmt: skip
        if seeds:
            out[(r["family"], r["key"])] = {"label": r["label"], "method": r["method"],
                                            "color": method_color(r), "seeds": seeds}  # fmt: skip
    return out


def _band(ax: plt.Axes, seeds: list[list[dict]], metric: str, color: str) -> Any:
    """Mean over seeds per step as a line, min-max over seeds as a band; None if no seed logs
    ``metric``."""
    by_step: dict[int, list[float]] = {}
    for rows in seeds:
        for r in rows:
            if r.get(metric) is not None and not math.isnan(r[metric]):
                by_step.setdefault(r["step"], []).append(r[metric])
    if not by_step:
        return None
    steps = sorted(by_step)
    vals = [by_step[s] for s in steps]
    ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], color=color,
                    alpha=0.2, lw=0)  # fmt: skip
    (line,) = ax.plot(steps, [sum(v) / len(v) for v in vals], color=color, lw=1.5)
    return line


def _curve_panel(ax: plt.Axes, curves: list[dict], metric: str, title: str) -> dict[str, Any]:
    """One panel of training curves; returns label -> line for the legend."""
    handles = {}
    for c in curves:
        if metric == "loss" and loss_objective(c["method"]) != title:
            continue
        line = _band(ax, c["seeds"], metric, c["color"])
        if line is not None:
            handles[c["label"]] = line
    if metric == "loss" and title != "clipped forward KL":
        ax.axhline(0.0, color="grey", lw=0.6)  # REOPOLD's surrogate loss changes sign
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.tick_params(labelsize=8)
    return handles


def plot_training_curves(table: dict[str, Any]) -> plt.Figure | None:
    """Per-step curves of every trained row: mean over training seeds (line) and min-max over
    them (band, :data:`BAND`), in the method's colour. Panels: the clipped KL per token and
    the rollout length for all rows, then the training loss, one panel per objective
    (:func:`loss_objective`); one block of panels per model family when families mix."""
    curves = _curves(table)
    if not curves:
        return None
    families = list(dict.fromkeys(f for f, _ in curves))
    objectives = list(dict.fromkeys(loss_objective(c["method"]) for c in curves.values()))
    panels = [*SHARED_CURVES, *(("loss", o) for o in objectives)]
    ncols = min(3, len(panels)) if len(families) == 1 else len(panels)
    per_family = math.ceil(len(panels) / ncols) * ncols
    nrows = per_family // ncols * len(families)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 2.4, 2.5 * nrows + 0.3),
                             squeeze=False, layout="constrained")  # fmt: skip
    handles: dict[str, Any] = {}
    for fi, family in enumerate(families):
        block = list(axes.flat)[fi * per_family : (fi + 1) * per_family]
        mine = [c for (f, _), c in curves.items() if f == family]
        for ax, (metric, title) in zip(block, panels):
            for label, line in _curve_panel(ax, mine, metric, title).items():
                handles.setdefault(label, line)
            name = f"training loss: {title}" if metric == "loss" else title
            ax.set_title(name if len(families) == 1 else f"{family}: {name}", fontsize=9)
        for ax in block[len(panels) :]:
            ax.set_visible(False)
    handles = {c["label"]: handles[c["label"]] for c in curves.values() if c["label"] in handles}
    handles[f"band: {BAND}"] = plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.2)
    legend_outside(fig, list(handles.values()), list(handles))
    return fig
