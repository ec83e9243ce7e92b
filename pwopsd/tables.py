"""A section's results over training seeds, the paper's numbers beside them, and the verdict.

:func:`load_section` reads every full-configuration file ``<section>.seed<k>.json`` of a
section (quick or otherwise scaled runs are named apart and skipped) and :func:`aggregate`
turns them into one table: per row, benchmark and metric, the mean over training seeds of each
seed's mean over its evaluation seeds, with the Bessel sd over training seeds (over evaluation
seeds while only one training seed is present; ``spread`` says which).

:func:`verdict` compares two rows the way the paper's claims are worded ("PW-OPSD Moderate
beats OPSD on 3 of 4 sets; the difference exceeds one sd on 1"), from the numbers, so the
sentence changes when they do. A difference "exceeds one sd" when it is larger than the larger
of the two rows' sds.
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
from pwopsd.metrics import mean_sd
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
                    entry["_seed_means"].setdefault((bench, metric), []).append(s["mean"])
                    entry["_eval_sd"][(bench, metric)] = s.get("sd")
    benchmarks = per_seed[0]["benchmarks"]
    out_rows = []
    for entry in rows.values():
        scores: dict[str, dict[str, Any]] = {}
        for (bench, metric), means in entry.pop("_seed_means").items():
            mean, sd = _mean_sd(means)
            if not multi:
                sd = entry["_eval_sd"].get((bench, metric))
            scores.setdefault(bench, {})[metric] = {"mean": mean, "sd": sd, "n": len(means),
                                                    "per_seed": means}  # fmt: skip
        entry.pop("_eval_sd")
        overall = {}
        for metric in METRICS:
            per_seed_overall = _overall_per_seed(per_seed, entry["key"], metric)
            mean, sd = _mean_sd(per_seed_overall)
            overall[metric] = {"mean": mean, "sd": sd if multi else None,
                               "per_seed": per_seed_overall}  # fmt: skip
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


def _overall_per_seed(per_seed: list[dict[str, Any]], key: str, metric: str) -> list[float]:
    """A row's mean over benchmarks, one value per training seed that has the row."""
    out = []
    for result in per_seed:
        for row in result["rows"]:
            if row["key"] == key:
                means = [m[metric]["mean"] for m in row["scores"].values()]
                out.append(statistics.fmean(means))
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


def compare(table: dict[str, Any], a: str, b: str, metric: str = "avg") -> dict[str, Any]:
    """Row ``a`` against row ``b``: per benchmark the difference of means, whether ``a`` is
    ahead, and whether the difference exceeds one sd (the larger of the two rows' sds)."""
    ra, rb = row(table, a), row(table, b)
    if ra is None or rb is None:
        raise KeyError(f"rows {a!r} and {b!r} must both be in the table")
    per = {}
    for bench in table["benchmarks"]:
        sa, sb = ra["scores"][bench["name"]][metric], rb["scores"][bench["name"]][metric]
        diff = sa["mean"] - sb["mean"]
        sds = [x for x in (sa["sd"], sb["sd"]) if x is not None]  # None: no spread known
        exceeds = bool(sds) and abs(diff) > max(sds)
        per[bench["name"]] = {"diff": diff, "ahead": diff > 0, "exceeds_sd": exceeds}
    overall = ra["overall"][metric]["mean"] - rb["overall"][metric]["mean"]
    return {
        "a": ra["label"],
        "b": rb["label"],
        "benchmarks": per,
        "wins": sum(p["ahead"] for p in per.values()),
        "wins_beyond_sd": sum(p["ahead"] and p["exceeds_sd"] for p in per.values()),
        "losses_beyond_sd": sum(not p["ahead"] and p["exceeds_sd"] for p in per.values()),
        "n": len(per),
        "overall_diff": overall,
    }


def paper_difference(family: str, a_label: str, b_label: str) -> float | None:
    """The paper's mean-over-benchmarks Avg@12 of row ``a`` minus row ``b`` (points), or None."""
    pa, pb = published_row(family, a_label), published_row(family, b_label)
    if pa is None or pb is None:
        return None
    return pa["mean"] - pb["mean"]


def verdict(
    table: dict[str, Any], a: str, b: str, paper_label: dict[str, str] | None = None
) -> str:
    """One generated sentence: how row ``a`` does against row ``b`` here, and whether the
    paper's direction replicates (Markdown)."""
    paper_label = paper_label or {}
    c = compare(table, a, b)
    ra, rb = row(table, a), row(table, b)
    where = f" ({ra['family']})" if len({r["family"] for r in table["rows"]}) > 1 else ""
    text = (
        f"**{c['a']}** beats **{c['b']}**{where} on {c['wins']} of {c['n']} sets "
        f"(mean Avg {100 * c['overall_diff']:+.1f} points); the difference exceeds one sd "
        f"in its favour on {c['wins_beyond_sd']} and against it on {c['losses_beyond_sd']}"
        f" (spread over {table['spread']}, {len(table['seeds'])} seed(s))."
    )
    paper = paper_difference(ra["family"], paper_label.get(a, ra["label"]),
                             paper_label.get(b, rb["label"]))  # fmt: skip
    if paper is None:
        return text + " The paper publishes no numbers for this comparison."
    same = (paper > 0) == (c["overall_diff"] > 0)
    clear = c["wins_beyond_sd"] > c["losses_beyond_sd"] if paper > 0 else (
        c["losses_beyond_sd"] > c["wins_beyond_sd"])  # fmt: skip
    clear_against = c["losses_beyond_sd"] > c["wins_beyond_sd"] if paper > 0 else (
        c["wins_beyond_sd"] > c["losses_beyond_sd"])  # fmt: skip
    if same and clear:
        outcome = "replicates at this scale"
    elif same:
        outcome = "points the same way here, but within the spread: not a clear replication"
    elif clear_against:
        outcome = "does not replicate at this scale (reversed, beyond the spread)"
    else:
        outcome = "points the other way here, within the spread: no evidence either way"
    return text + f" Paper: {paper:+.2f} points on the mean; the paper's finding {outcome}."


def factorial_effects(table: dict[str, Any], metric: str = "avg") -> dict[str, Any]:
    """Main effects and interaction of the 2x2 factorial (Appendix L), in points of the mean over
    benchmarks, per training seed and as mean ± sd over seeds.

    position effect = ((pos, global) + (pos, per-seq) - (uni, global) - (uni, per-seq)) / 2;
    reduction effect = ((uni, per-seq) + (pos, per-seq) - (uni, global) - (pos, global)) / 2;
    interaction = ((pos, per-seq) - (pos, global) - (uni, per-seq) + (uni, global)) / 2.
    """
    cells = {}
    for r in table["rows"]:
        f = r.get("factors") or {}
        if "weighting" in f:
            cells[(f["weighting"], f["reduction"])] = r["overall"][metric]["per_seed"]
    need = [(w, d) for w in ("uniform", "position") for d in ("global", "per_sequence")]
    if any(k not in cells for k in need):
        return {}
    n = min(len(v) for v in cells.values())
    ug, us, pg, ps = (cells[k][:n] for k in need)
    per = {
        "position": [(pg[i] + ps[i] - ug[i] - us[i]) / 2 for i in range(n)],
        "reduction": [(us[i] + ps[i] - ug[i] - pg[i]) / 2 for i in range(n)],
        "interaction": [(ps[i] - pg[i] - us[i] + ug[i]) / 2 for i in range(n)],
    }
    return {
        k: {"mean": _mean_sd(v)[0], "sd": _mean_sd(v)[1], "per_seed": v} for k, v in per.items()
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
    ``b`` on ``bench`` Avg by more than ``times`` the sd of ``a`` across training seeds."""
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
    paired = [100 * (x - y) for x, y in zip(sa["per_seed"], sb["per_seed"])]
    bar = times * 100 * sa["sd"]
    met = "met" if gain > bar else "not met"
    return (
        f"{head} over {len(sa['per_seed'])} training seeds (per seed "
        f"{', '.join(f'{g:+.1f}' for g in paired)}); the spread is {100 * sa['sd']:.1f}, so the "
        f"bar is {bar:.1f} points: **{met}**."
    )


def effects_sentence(table: dict[str, Any]) -> str:
    """The factorial's main effects and interaction as one generated sentence (Markdown)."""
    eff = factorial_effects(table)
    if not eff:
        return "_The four factorial cells are not all present._"

    def part(name: str) -> str:
        e = eff[name]
        sd = "" if e["sd"] is None else f" ± {100 * e['sd']:.1f}"
        return f"{name} {100 * e['mean']:+.1f}{sd}"

    n = len(eff["position"]["per_seed"])
    return (
        f"Effects on the mean Avg over benchmarks (points, mean{' ± sd' if n > 1 else ''} over "
        f"{n} training seed(s)): {part('position')} (position weight vs uniform), "
        f"{part('reduction')} (per-sequence vs global mean), {part('interaction')}."
    )
