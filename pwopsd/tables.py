"""A section's results over training seeds, the paper's numbers beside them, and the verdict.

:func:`load_section` reads every full-configuration file ``<section>.seed<k>.json`` of a
section (quick or otherwise scaled runs are named apart and skipped) and :func:`aggregate`
turns them into one table: per row, benchmark and metric, the mean over training seeds of each
seed's mean over its evaluation seeds, with the Bessel sd over training seeds (over evaluation
seeds while only one training seed is present; ``spread`` says which). Each score also keeps
its value per training seed (``by_seed``), which is what comparisons pair on.

:func:`verdict` compares two rows from per-seed paired differences (:func:`paired`: row ``a``
minus row ``b`` on the same training seed, both scored on that seed's evaluation seeds), with a
Student-t interval (:func:`pwopsd.metrics.paired_interval`) on the mean over benchmarks and on
each benchmark, printed in the sentence. Its word on the paper's direction
(:func:`direction_outcome`) is "agrees" or "reversed" only when the interval excludes 0;
otherwise "no detectable difference (interval includes 0)".
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd.config import REPO_ROOT, RESULTS_DIR
from pwopsd.metrics import PairedInterval, format_interval, mean_sd, paired_interval
from pwopsd.vocab import METRICS, PAPER_COLUMN, PAPER_MODEL_LABELS

PUBLISHED_PATH = REPO_ROOT / "data" / "published" / "main_table.json"


def section_files(
    profile: str, section: str, results_dir: Path | None = None, tag: str = ""
) -> list[Path]:
    """Per-seed files of a section, by seed: the full configuration's, or (``tag``) those of
    one scaled configuration."""
    folder = results_dir or RESULTS_DIR / profile / section
    suffix = re.escape(f".{tag}" if tag else "")
    pattern = re.compile(rf"{re.escape(section)}\.seed(\d+){suffix}\.json")
    found = [(int(m[1]), p) for p in folder.glob(f"{section}.seed*.json")
             if (m := pattern.fullmatch(p.name))]  # fmt: skip
    return [p for _, p in sorted(found)]


def load_section(
    profile: str, section: str, results_dir: Path | None = None, tag: str = ""
) -> dict | None:
    """Every full-configuration seed of a section (or of the scaled configuration ``tag``),
    aggregated; None when there is none."""
    files = section_files(profile, section, results_dir, tag)
    if not files:
        return None
    return aggregate([json.loads(p.read_text()) for p in files])


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """:func:`pwopsd.metrics.mean_sd` over the finite values; (None, None) when there are none."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    agg = mean_sd(vals)
    return agg["mean"], agg["sd"]


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One table from per-seed results files (see the module docstring).

    Rows keep the order of their first appearance; a row missing from some seeds is averaged
    over the seeds that have it (``n`` says how many).
    """
    if not per_seed:
        raise ValueError("no results to aggregate")
    seeds = [r.get("seed") for r in per_seed]
    multi = len(per_seed) > 1
    rows: dict[str, dict[str, Any]] = {}
    for result in per_seed:
        for row in result["rows"]:
            entry = rows.setdefault(
                row["key"],
                {k: row[k] for k in ("key", "label", "family", "method", "run", "factors")}
                | {"_seed_means": {}, "_eval_sd": {}},
            )
            for bench, metrics in row["scores"].items():
                for metric, s in metrics.items():
                    entry["_seed_means"].setdefault((bench, metric), []).append(
                        (result.get("seed"), s["mean"]))  # fmt: skip
                    entry["_eval_sd"][(bench, metric)] = s.get("sd")
    benchmarks = per_seed[0]["benchmarks"]
    out_rows = []
    for entry in rows.values():
        scores: dict[str, dict[str, Any]] = {}
        for (bench, metric), pairs in entry.pop("_seed_means").items():
            means = [m for _, m in pairs]
            mean, sd = _mean_sd(means)
            if not multi:
                sd = entry["_eval_sd"].get((bench, metric))
            scores.setdefault(bench, {})[metric] = {"mean": mean, "sd": sd, "n": len(means),
                                                    "per_seed": means, "by_seed": dict(pairs)}  # fmt: skip
        entry.pop("_eval_sd")
        overall = {}
        for metric in METRICS:
            by_seed = _overall_per_seed(per_seed, entry["key"], metric)
            mean, sd = _mean_sd(list(by_seed.values()))
            overall[metric] = {"mean": mean, "sd": sd if multi else None,
                               "per_seed": list(by_seed.values()), "by_seed": by_seed}  # fmt: skip
        out_rows.append({**entry, "scores": scores, "overall": overall})
    return {
        "section": per_seed[0]["section"],
        "seeds": seeds,
        "spread": "training seeds" if multi else "evaluation seeds",
        "benchmarks": benchmarks,
        "sampling": per_seed[0].get("sampling", {}),
        "eval_seeds": {r.get("seed"): r.get("eval_seeds") for r in per_seed},
        "rows": out_rows,
        "runs": {r.get("seed"): r.get("runs", {}) for r in per_seed},
        "provenance": [r.get("provenance", {}) for r in per_seed],
        "models": per_seed[0].get("models", {}),
    }


def _overall_per_seed(per_seed: list[dict[str, Any]], key: str, metric: str) -> dict[Any, float]:
    """A row's mean over benchmarks, by training seed, for every seed that has the row."""
    out = {}
    for result in per_seed:
        for row in result["rows"]:
            if row["key"] == key:
                means = [m[metric]["mean"] for m in row["scores"].values()]
                out[result.get("seed")] = statistics.fmean(means)
    return out


def row(table: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((r for r in table["rows"] if r["key"] == key), None)


def fmt(mean: float | None, sd: float | None, scale: float = 100.0) -> str:
    if mean is None:
        return "n/a"
    return f"{scale * mean:.1f}" if sd is None else f"{scale * mean:.1f} ± {scale * sd:.1f}"


def frame(
    table: dict[str, Any], metric: str = "avg", rows: list[str] | None = None
) -> pd.DataFrame:
    """Rows x benchmarks of one metric, "mean ± sd" in %, plus the mean over benchmarks."""
    labels = {b["name"]: b.get("label") or b["name"] for b in table["benchmarks"]}
    out = []
    for r in table["rows"]:
        if rows is not None and r["key"] not in rows:
            continue
        line: dict[str, Any] = {"model": r["family"], "method": r["label"]}
        for name, label in labels.items():
            s = r["scores"].get(name, {}).get(metric)
            line[label] = fmt(s["mean"], s["sd"]) if s else "n/a"
        o = r["overall"][metric]
        line["mean"] = fmt(o["mean"], o["sd"])
        out.append(line)
    return pd.DataFrame(out).set_index(["model", "method"])


# ------------------------------------------------------------------ the paper's numbers


def published() -> dict[str, Any]:
    return json.loads(PUBLISHED_PATH.read_text())


def published_row(family: str, label: str) -> dict[str, Any] | None:
    """The paper's row for a toy family and one of our row labels ("OPSD", "PW-OPSD
    Moderate", ...), or None when the paper publishes none."""
    model = PAPER_MODEL_LABELS.get(family)
    for r in published()["rows"]:
        if r["model"] == model and r["method"] == label:
            return r
    return None


def comparison_frame(
    table: dict[str, Any], paper_label: dict[str, str] | None = None
) -> pd.DataFrame:
    """Our Avg@k beside the paper's Avg@12: two lines per row ("ours (toy)" and the paper's
    model), benchmarks as columns, "not published" where the paper has no number.

    ``paper_label`` maps a row key to the paper's method name when our label differs (the
    factorial's cells); rows map to the paper's model through :data:`pwopsd.vocab.PAPER_MODEL_LABELS`.
    """
    paper_label = paper_label or {}
    out = []
    for r in table["rows"]:
        pub = published_row(r["family"], paper_label.get(r["key"], r["label"]))
        ours: dict[str, Any] = {"method": r["label"], "source": f"ours ({r['family']})"}
        paper: dict[str, Any] = {"method": r["label"],
                                 "source": f"paper ({PAPER_MODEL_LABELS.get(r['family'], '?')})"}  # fmt: skip
        for b in table["benchmarks"]:
            col = PAPER_COLUMN.get(b["name"], b["name"])
            s = r["scores"][b["name"]]["avg"]
            ours[col] = fmt(s["mean"], s["sd"])
            ps = (pub or {}).get("scores") and pub["scores"].get(col)
            paper[col] = f"{ps['mean']:.2f} ± {ps['sd']:.2f}" if ps else "not published"
        ours["mean"] = fmt(r["overall"]["avg"]["mean"], r["overall"]["avg"]["sd"])
        paper["mean"] = f"{pub['mean']:.2f}" if pub else "not published"
        out += [ours, paper]
    return pd.DataFrame(out).set_index(["method", "source"])


def count_published(frame_: pd.DataFrame) -> int:
    """How many published numbers a comparison frame shows (tests count them per page)."""
    sources = frame_.index.get_level_values("source")
    paper = frame_[[str(s).startswith("paper") for s in sources]]
    return int((paper != "not published").to_numpy().sum())


# ------------------------------------------------------------------ verdicts


def paired(
    table: dict[str, Any],
    a: str,
    b: str,
    bench: str | None = None,
    metric: str = "avg",
    confidence: float = 0.95,
    scale: float = 1.0,
) -> PairedInterval | None:
    """Row ``a`` minus row ``b`` paired by training seed (each seed's two rows scored on that
    seed's evaluation seeds): mean and t interval over the seeds both rows have, on ``bench``
    or (``bench`` None) on the mean over benchmarks, each difference times ``scale`` (100:
    points); None when they share no seed."""
    ra, rb = row(table, a), row(table, b)
    if ra is None or rb is None:
        raise KeyError(f"rows {a!r} and {b!r} must both be in the table")
    if bench is None:
        sa, sb = ra["overall"][metric], rb["overall"][metric]
    else:
        sa, sb = ra["scores"][bench][metric], rb["scores"][bench][metric]
    common = [k for k in sa["by_seed"] if k in sb["by_seed"]]
    if not common:
        return None
    diffs = [scale * (sa["by_seed"][k] - sb["by_seed"][k]) for k in common]
    return paired_interval(diffs, confidence)


def compare(table: dict[str, Any], a: str, b: str, metric: str = "avg") -> dict[str, Any]:
    """Row ``a`` against row ``b`` from per-seed paired differences (:func:`paired`): per
    benchmark and on the mean over benchmarks, the interval and whether ``a`` is ahead; counts
    of the benchmarks whose interval excludes 0 in ``a``'s favour and against it."""
    per = {}
    for bench in table["benchmarks"]:
        iv = paired(table, a, b, bench["name"], metric)
        per[bench["name"]] = {"interval": iv, "ahead": iv is not None and iv.mean > 0}
    ivs = [p["interval"] for p in per.values() if p["interval"] is not None]
    overall = paired(table, a, b, None, metric)
    return {
        "a": row(table, a)["label"],
        "b": row(table, b)["label"],
        "benchmarks": per,
        "wins": sum(p["ahead"] for p in per.values()),
        "wins_clear": sum(iv.excludes_zero and iv.mean > 0 for iv in ivs),
        "losses_clear": sum(iv.excludes_zero and iv.mean < 0 for iv in ivs),
        "n": len(per),
        "overall": overall,
        "overall_diff": None if overall is None else overall.mean,
    }


def paper_difference(family: str, a_label: str, b_label: str) -> float | None:
    """The paper's mean-over-benchmarks Avg@12 of row ``a`` minus row ``b`` (points), or None."""
    pa, pb = published_row(family, a_label), published_row(family, b_label)
    if pa is None or pb is None:
        return None
    return pa["mean"] - pb["mean"]


def direction_outcome(iv: PairedInterval | None, paper: float | None) -> str:
    """The verdict's word on a paired interval (toy scale) against the paper's difference.

    "agrees" / "reversed" only when the interval excludes 0; an interval that includes 0 is
    "no detectable difference"; one training seed gives no interval and no verdict.
    """
    if iv is None or iv.n < 2:
        return "not judged (one training seed: no interval yet)"
    if not iv.excludes_zero:
        return "no detectable difference (interval includes 0)"
    if paper is None or paper == 0:
        return "a detectable difference (interval excludes 0)"
    if (paper > 0) == (iv.mean > 0):
        return "agrees (interval excludes 0)"
    return "reversed (interval excludes 0)"


def verdict(
    table: dict[str, Any], a: str, b: str, paper_label: dict[str, str] | None = None
) -> str:
    """One generated sentence: row ``a`` minus row ``b`` here, paired by training seed with t
    intervals on the mean over benchmarks and per benchmark, and the paper's direction
    against it (Markdown)."""
    paper_label = paper_label or {}
    c = compare(table, a, b)
    ra, rb = row(table, a), row(table, b)
    where = f" ({ra['family']})" if len({r["family"] for r in table["rows"]}) > 1 else ""
    names = {x["name"]: x.get("label") or x["name"] for x in table["benchmarks"]}
    per_set = "; ".join(
        f"{names[k]} {format_interval(p['interval'], 100, show_n=False)}"
        for k, p in c["benchmarks"].items() if p["interval"] is not None
    )  # fmt: skip
    overall = "n/a" if c["overall"] is None else format_interval(c["overall"], 100)
    text = (
        f"**{c['a']}** − **{c['b']}**{where}, Avg points, per-seed paired differences "
        f"(same training seed, same evaluation seeds) with 95% t intervals: mean of the "
        f"{c['n']} sets {overall}; per set {per_set}. Ahead on {c['wins']} of {c['n']} sets; "
        f"the interval excludes 0 in its favour on {c['wins_clear']} and against it on "
        f"{c['losses_clear']}."
    )
    paper = paper_difference(ra["family"], paper_label.get(a, ra["label"]),
                             paper_label.get(b, rb["label"]))  # fmt: skip
    outcome = direction_outcome(c["overall"], paper)
    if paper is None:
        return text + f" The paper publishes no numbers for this comparison; here: {outcome}."
    return text + f" Paper: {paper:+.2f} points on the mean; here: **{outcome}**."


def factorial_effects(table: dict[str, Any], metric: str = "avg") -> dict[str, Any]:
    """Main effects and interaction of the 2x2 factorial (Appendix L), in points of the mean over
    benchmarks, per training seed (the seeds all four cells have) and as mean ± sd and a t
    interval over seeds (each seed's effect is a within-seed contrast: a paired difference).

    position effect = ((pos, global) + (pos, per-seq) - (uni, global) - (uni, per-seq)) / 2;
    reduction effect = ((uni, per-seq) + (pos, per-seq) - (uni, global) - (pos, global)) / 2;
    interaction = ((pos, per-seq) - (pos, global) - (uni, per-seq) + (uni, global)) / 2.
    """
    cells = {}
    for r in table["rows"]:
        f = r.get("factors") or {}
        if "weighting" in f:
            cells[(f["weighting"], f["reduction"])] = r["overall"][metric]["by_seed"]
    need = [(w, d) for w in ("uniform", "position") for d in ("global", "per_sequence")]
    if any(k not in cells for k in need):
        return {}
    seeds = [k for k in cells[need[0]] if all(k in cells[c] for c in need)]
    if not seeds:
        return {}
    ug, us, pg, ps = ([cells[c][k] for k in seeds] for c in need)
    n = len(seeds)
    per = {
        "position": [(pg[i] + ps[i] - ug[i] - us[i]) / 2 for i in range(n)],
        "reduction": [(us[i] + ps[i] - ug[i] - pg[i]) / 2 for i in range(n)],
        "interaction": [(ps[i] - pg[i] - us[i] + ug[i]) / 2 for i in range(n)],
    }
    return {
        k: {
            "mean": _mean_sd(v)[0],
            "sd": _mean_sd(v)[1],
            "per_seed": v,
            "interval": paired_interval(v),
        }  # fmt: skip
        for k, v in per.items()
    }


def verdict_list(
    table: dict[str, Any], pairs: list[tuple[str, str]], paper_label: dict[str, str] | None = None
) -> str:
    """A Markdown bullet list of :func:`verdict` sentences for the pairs present in ``table``."""
    keys = {r["key"] for r in table["rows"]}
    lines = [f"- {verdict(table, a, b, paper_label)}" for a, b in pairs if a in keys and b in keys]
    return "\n".join(lines) if lines else "_No comparable rows in these results._"


def gain_target_sentence(
    table: dict[str, Any],
    a: str = "qwen3/opsd",
    b: str = "qwen3/base",
    bench: str = "toy_aime24",
    times: float = 2.0,
) -> str:
    """The toy recipe's bar, judged from the results (Markdown): row ``a`` should beat row
    ``b`` on ``bench`` Avg by more than ``times`` the sd of ``a`` across training seeds (the
    training issue's target, kept as stated), with the per-seed paired interval beside it."""
    ra, rb = row(table, a), row(table, b)
    if ra is None or rb is None or bench not in ra["scores"] or bench not in rb["scores"]:
        return "_The rows for the training target are not in these results._"
    sa, sb = ra["scores"][bench]["avg"], rb["scores"][bench]["avg"]
    label = next((x["label"] for x in table["benchmarks"] if x["name"] == bench), bench)
    gain = 100 * (sa["mean"] - sb["mean"])
    head = (
        f"**Training target**: {ra['label']} should beat {rb['label']} on {label} Avg by more "
        f"than {times:g} times the spread of {ra['label']} across training seeds. "
        f"{ra['label']} − {rb['label']} = {gain:+.1f} points"
    )
    if len(sa.get("per_seed", [])) < 2:
        return head + " (one training seed: no spread across training seeds yet to judge by)."
    common = [k for k in sa["by_seed"] if k in sb["by_seed"]]
    diffs = [sa["by_seed"][k] - sb["by_seed"][k] for k in common]
    bar = times * 100 * sa["sd"]
    met = "met" if gain > bar else "not met"
    return (
        f"{head} over {len(sa['per_seed'])} training seeds (per seed "
        f"{', '.join(f'{100 * g:+.1f}' for g in diffs)}; paired difference with 95% t interval "
        f"{format_interval(paired_interval(diffs), 100)}); the spread is {100 * sa['sd']:.1f}, "
        f"so the bar is {bar:.1f} points: **{met}**."
    )


def effects_sentence(table: dict[str, Any]) -> str:
    """The factorial's main effects and interaction as one generated sentence (Markdown), each
    with its t interval over training seeds."""
    eff = factorial_effects(table)
    if not eff:
        return "_The four factorial cells are not all present._"

    def part(name: str) -> str:
        return f"{name} {format_interval(eff[name]['interval'], 100, show_n=False)}"

    n = len(eff["position"]["per_seed"])
    detectable = [k for k, e in eff.items() if e["interval"].excludes_zero]
    judged = (
        "one training seed: no interval yet"
        if n < 2
        else f"interval excludes 0: {', '.join(detectable) or 'none'}"
    )
    return (
        f"Effects on the mean Avg over benchmarks (points, mean and 95% t interval over {n} "
        f"training seed(s), each seed's effect a within-seed contrast): {part('position')} "
        f"(position weight vs uniform), {part('reduction')} (per-sequence vs global mean), "
        f"{part('interaction')} ({judged})."
    )
