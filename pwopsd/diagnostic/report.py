"""Phases F and G: viability labels, Table 1 and Figure 1 data, from the phase files.

Cheap and deterministic: recomputed from ``A``-``E`` on every run, so the thresholds that
only these phases read may change without sampling anything again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pwopsd import jsonl
from pwopsd.config import DiagnosticConfig
from pwopsd.diagnostic.stats import (
    auroc,
    cluster_bootstrap_ci,
    residual_auprc,
    residual_auroc,
    single_label_groups,
)
from pwopsd.grading import is_correct

LABELS = ("diversity", "real_uncertain", "gray")


def label_candidate(viabilities: list[float], cfg: DiagnosticConfig) -> str:
    """diversity / real_uncertain / gray from the children's viabilities (PROTOCOL section 5)."""
    if sum(v >= cfg.viable_threshold for v in viabilities) >= cfg.min_viable_children:
        return "diversity"
    mean = sum(viabilities) / len(viabilities)
    if (
        all(v < cfg.real_max_child_viability for v in viabilities)
        and mean < cfg.real_max_mean_viability
    ):
        return "real_uncertain"
    return "gray"


def phase_f(ctx: Any) -> list[dict[str, Any]]:
    """One record per candidate: its scores, children's viabilities and label."""
    cfg = ctx.cfg
    spines = {s["problem_key"]: s for s in jsonl.read(ctx.file("A"))}
    mc = {d["problem_key"]: d for d in jsonl.read(ctx.file("D"))}
    by_child: dict[tuple, list] = {}
    for r in jsonl.read(ctx.file("E")):
        key, pos, child, _ = r["key"]  # (problem key, position, forced child, rollout index)
        by_child.setdefault((key, pos, child), []).append(r["answer"])
    cache: dict[tuple, bool] = {}

    def correct(answer: str | None, gold: str) -> bool:
        if answer is None:
            return False
        if (answer, gold) not in cache:
            cache[(answer, gold)] = is_correct(answer, gold)
        return cache[(answer, gold)]

    records = []
    for c in jsonl.read(ctx.file("C")):
        key = c["problem_key"]
        s = spines[key]
        d = mc.get(key, {}).get("scores", {})
        for j, cand in enumerate(c["candidates"]):
            answers = [by_child.get((key, cand["pos"], ch), []) for ch in cand["children"]]
            complete = all(len(a) == cfg.rollouts_per_child for a in answers)
            via = [
                sum(correct(a, s["gold"]) for a in ans) / len(ans) if ans else 0.0
                for ans in answers
            ]
            rec = {
                "problem_key": key,
                "pool": s["pool"],
                "spine_correct": s["correct"],
                **{
                    k: cand[k]
                    for k in ("pos", "u", "trunc_entropy", "entropy", "top1", "spine_prob")
                },
                "children": cand["children"],
                "child_is_spine_token": [ch == cand["spine_token"] for ch in cand["children"]],
                "viability": via,
                "label": label_candidate(via, cfg) if complete else "incomplete",
            }
            for k, vals in d.items():
                rec[k] = vals[j]
            records.append(rec)
    return records


def score_definitions(orientation: str) -> list[tuple[str, str, Callable[[dict], float]]]:
    """Table 1's scores: (name, orientation stated in words, value from a candidate record).

    Every local score is oriented so that *higher = more uncertain*, fixed before looking at
    any label; the position score as ``position_orientation`` says.
    """
    if orientation == "late":
        pos = ("position u = (i - 0.5) / L", "higher = later in the spine", lambda r: r["u"])
    else:
        pos = ("early-position score 1 - u", "higher = earlier in the spine", lambda r: 1 - r["u"])
    return [
        pos,
        ("teacher top-k truncated entropy", "higher = more uncertain", lambda r: r["trunc_entropy"]),
        ("teacher full entropy", "higher = more uncertain", lambda r: r["entropy"]),
        ("teacher 1 - top-1 probability", "higher = more uncertain", lambda r: 1 - r["top1"]),
        ("teacher surprisal of the spine token", "higher = more uncertain", lambda r: -math.log(max(r["spine_prob"], 1e-12))),
        ("MC-dropout predictive entropy", "higher = more uncertain", lambda r: r["mc_pred_entropy"]),
        ("MC-dropout mutual information", "higher = more uncertain", lambda r: r["mc_mutual_info"]),
        ("MC-dropout Dirichlet precision, negated", "higher = more uncertain (lower precision)", lambda r: -math.log(r["mc_dirichlet_precision"])),
    ]  # fmt: skip


def table1(records: list[dict[str, Any]], cfg: DiagnosticConfig) -> list[dict[str, Any]]:
    """One row per score over the labelled (diversity / real-uncertain) candidates of every
    spine (pooled), each row carrying ``correct_spines``: the same statistics over the
    candidates on correct spines only, as the paper's Appendix A restricts Table 1.

    A wrong spine makes every later forced child fail, so its candidates are labelled real
    uncertainty mechanically; the restriction keeps them out. Results files written before
    the restriction existed have no ``correct_spines`` key (the book says which it shows).
    """
    pooled = _score_rows(records, cfg)
    on_correct = _score_rows([r for r in records if r.get("spine_correct")], cfg)
    for row, sub in zip(pooled, on_correct, strict=True):
        row["correct_spines"] = {k: v for k, v in sub.items() if k not in ("score", "orientation")}
    return pooled


def _score_rows(records: list[dict[str, Any]], cfg: DiagnosticConfig) -> list[dict[str, Any]]:
    """Table 1's rows (one per score) over the labelled candidates among ``records``."""
    lab = [r for r in records if r["label"] in ("diversity", "real_uncertain")]
    y = np.array([r["label"] == "real_uncertain" for r in lab], dtype=int)
    g = np.array([r["problem_key"] for r in lab])
    rows = []
    for name, orient, fn in score_definitions(cfg.position_orientation):
        usable = [i for i, r in enumerate(lab) if _has(r, fn)]
        s = np.array([fn(lab[i]) for i in usable], dtype=float)
        yy, gg = y[usable], g[usable]
        row: dict[str, Any] = {
            "score": name,
            "orientation": orient,
            "auroc": None,
            "auroc_unresidualised": None,
            "ci_low": None,
            "ci_high": None,
            "auprc": None,
            "auprc_chance": None,
            "n_real_uncertain": int(yy.sum()),
            "n_diversity": int(len(yy) - yy.sum()),
            "n_problems": len(set(gg.tolist())),
            "n_single_label_problems": single_label_groups(yy, gg) if len(yy) else 0,
        }
        if len(yy) and 0 < yy.sum() < len(yy):
            ci = cluster_bootstrap_ci(
                s, yy, gg, n_boot=cfg.bootstrap, seed=cfg.seed, level=cfg.ci_level
            )
            row.update(
                auroc=residual_auroc(s, yy, gg),
                auroc_unresidualised=auroc(s, yy),
                ci_low=_finite(ci.lo),
                ci_high=_finite(ci.hi),
                auprc=residual_auprc(s, yy, gg),
                auprc_chance=float(yy.mean()),
                bootstrap_used=ci.n_used,
                bootstrap_skipped=ci.n_skipped,
            )
        rows.append(row)
    return rows


def _has(record: dict[str, Any], fn: Callable[[dict], float]) -> bool:
    try:
        return math.isfinite(fn(record))
    except (KeyError, TypeError, ValueError):
        return False


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def figure1_data(records: list[dict[str, Any]], n_bins: int = 5) -> dict[str, Any]:
    """Failure rate (1 - mean child viability) by normalised position, per label, and the
    candidates' positions (Figure 1)."""
    edges = [i / n_bins for i in range(n_bins + 1)]
    series: dict[str, Any] = {}
    for label in ("diversity", "real_uncertain", "gray", "all"):
        rs = [
            r
            for r in records
            if r["label"] != "incomplete" and (label == "all" or r["label"] == label)
        ]
        bins = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            inside = [r for r in rs if a <= r["u"] < b or (b == 1.0 and r["u"] == 1.0)]
            fail = [1 - sum(r["viability"]) / len(r["viability"]) for r in inside]
            bins.append(
                {
                    "lo": a,
                    "hi": b,
                    "n": len(inside),
                    "failure_rate": sum(fail) / len(fail) if fail else None,
                }
            )
        series[label] = {"bins": bins, "u": [round(r["u"], 4) for r in rs]}
    return {"edges": edges, "series": series}
