"""Table 1 and Figure 1 of the diagnostic, drawn from its results files, and the generated text.

The notebook and ``book/diagnostic.md`` call these on the parsed ``table1.seed<k>.json`` /
``figure1.seed<k>.json`` / ``diagnostic.seed<k>.json`` of ``results/<profile>/diagnostic/``
(one per seed; :func:`load_seeds`) and on the paper's numbers, read from
``data/published/diagnostic.json`` (:func:`load_published`), never written into the text.

Orientation. The paper's headline score is the *early*-position score (higher = earlier in the
spine). A results file whose position row scores u (``position_orientation = "late"``, higher
= later) is shown mirrored (:func:`early_oriented`): residualised within a problem, 1 - u has
AUROC exactly 1 - AUROC(u), its bootstrap interval is the mirrored one, and only its AUPRC is
not recoverable. So the published value always stands beside the same orientation. A score
that reads below 0.5 ranks the other way; the text says so and gives the mirrored value.

Spines. Rows written since the correct-spine restriction carry ``correct_spines`` (the
paper's Appendix A Table 1); the pooled value (all spines) stands beside it. Older files pool
every spine, and :func:`which_spines` says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd.config import REPO_ROOT, RESULTS_DIR
from pwopsd.metrics import mean_sd

PUBLISHED_PATH = REPO_ROOT / "data" / "published" / "diagnostic.json"
LABEL_NAMES = {"diversity": "benign diversity", "real_uncertain": "real uncertainty"}
COLOURS = {"diversity": "tab:blue", "real_uncertain": "tab:red"}
EARLY_SCORE = "early-position score 1 - u"
EARLY_WORDS = "higher = earlier in the spine"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def load_published(path: Path | None = None) -> dict[str, Any]:
    """The paper's diagnostic numbers (``data/published/diagnostic.json``)."""
    return json.loads((path or PUBLISHED_PATH).read_text())


# ------------------------------------------------------------------ orientation and spines


def _is_position(row: dict[str, Any]) -> bool:
    return "position" in row["score"]


def _mirror(stats: dict[str, Any]) -> dict[str, Any]:
    """The statistics of 1 - score from those of score (residualised AUROC and its interval
    mirror exactly; the AUPRC does not and is dropped)."""

    def flip(x: float | None) -> float | None:
        return None if x is None else 1.0 - x

    return {
        **stats,
        "auroc": flip(stats.get("auroc")),
        "auroc_unresidualised": flip(stats.get("auroc_unresidualised")),
        "ci_low": flip(stats.get("ci_high")),
        "ci_high": flip(stats.get("ci_low")),
        "auprc": None,
    }


def early_oriented(row: dict[str, Any]) -> dict[str, Any]:
    """A position row in the paper's orientation (higher = earlier): mirrored when it was
    stored as "higher = later" (``mirrored_from_late`` then says so), as it is otherwise."""
    if not _is_position(row) or "later" not in row.get("orientation", ""):
        return row
    out = _mirror(row) | {"score": EARLY_SCORE, "orientation": EARLY_WORDS}
    out["mirrored_from_late"] = True
    if row.get("correct_spines"):
        out["correct_spines"] = _mirror(row["correct_spines"])
    return out


def oriented(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with its position row in the early orientation (:func:`early_oriented`)."""
    return {**table, "rows": [early_oriented(r) for r in table["rows"]]}


def restricted(table: dict[str, Any]) -> bool:
    """Whether the rows carry the correct-spine statistics (runs since the restriction)."""
    return all(r.get("correct_spines") for r in table["rows"])


def shown(row: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """The statistics Table 1 shows for ``row``: correct spines when stored, else pooled."""
    return row["correct_spines"] if restricted(table) else row


def position_row(table: dict[str, Any]) -> dict[str, Any]:
    """The position row, early-oriented."""
    return early_oriented(next(r for r in table["rows"] if _is_position(r)))


def which_spines(table: dict[str, Any], counts: dict[str, Any] | None = None) -> str:
    """One sentence: which candidates Table 1 holds (correct spines, or every spine pooled)."""
    a = (counts or {}).get("A", {})
    spines = (
        f" ({a['correct']} of {a['spines']} spines correct)" if {"correct", "spines"} <= set(a)
        else ""
    )  # fmt: skip
    if restricted(table):
        return (
            f"Table 1 holds the candidates on correct spines{spines}, as the paper's Appendix A "
            "restricts it; the pooled value over all spines stands beside it."
        )
    return (
        f"**These results predate the correct-spine restriction**: their Table 1 pools the "
        f"candidates of every spine{spines}, and the files do not record which spine a candidate "
        "came from, so the restricted table cannot be recomputed without a rerun. The paper's "
        "Appendix A restricts Table 1 to correct spines; the diagnostic now writes both (each "
        "row's `correct_spines`), and the next run shows the restricted table here."
    )


def orientation_note(table: dict[str, Any]) -> str:
    """One sentence when the stored position row is "higher = later" and is shown mirrored."""
    raw = next(r for r in table["rows"] if _is_position(r))
    if not early_oriented(raw).get("mirrored_from_late"):
        return ""
    return (
        f"These files store the position row as `{raw['score']}` ({raw.get('orientation')}); "
        f"it is shown mirrored, as the {EARLY_SCORE} ({EARLY_WORDS}). Residualised within a "
        "problem, 1 - u has AUROC exactly 1 - AUROC(u) and the mirrored bootstrap interval; only "
        "its AUPRC cannot be recovered (n/a)."
    )


# ------------------------------------------------------------------ Table 1


def _published_cell(row: dict[str, Any], published: dict[str, Any] | None) -> str:
    if published is None:
        return "not published"
    if _is_position(row):  # the paper's orientation, as the row is shown (early)
        h = published["headline"]
        return f"{h['auroc']:.2f} [{h['ci95'][0]:.2f}, {h['ci95'][1]:.2f}]"
    return f"≤ {published['local_uncertainty_scores_max_auroc']:.2f} (every local score)"


def _auroc_ci(s: dict[str, Any]) -> str:
    if s.get("auroc") is None:
        return "n/a"
    return f"{s['auroc']:.2f} [{_fmt(s.get('ci_low'))}, {_fmt(s.get('ci_high'))}]"


def table1_frame(table: dict[str, Any], published: dict[str, Any] | None = None) -> pd.DataFrame:
    """Table 1 as a DataFrame, position row early-oriented: AUROC [CI] (correct spines when
    stored, with the pooled value beside it), the mirrored value of an AUROC below 0.5 (the
    score ranks the other way), AUPRC with its chance level, counts, the paper's value. Cells
    are short so the table fits a page; the prose above it says how each reads."""
    table = oriented(table)
    which = "correct spines" if restricted(table) else "all spines (pooled)"
    rows = []
    for r in table["rows"]:
        s = shown(r, table)
        auprc = "n/a" if r.get("mirrored_from_late") else _fmt(s.get("auprc"))
        auroc = s.get("auroc")
        line = {"score": r["score"], "orientation": r.get("orientation", ""),
                f"AUROC [95% CI], {which}": _auroc_ci(s)}  # fmt: skip
        if restricted(table):
            line["AUROC [95% CI], all spines (pooled)"] = _auroc_ci(r)
        line |= {
            "mirrored (if below 0.5)": _fmt(1 - auroc)
            if auroc is not None and auroc < 0.5
            else "-",
            "AUROC, not residualised": _fmt(s.get("auroc_unresidualised")),
            "AUPRC (chance)": f"{auprc} ({_fmt(s.get('auprc_chance'))})",
            "real-uncertain / labelled": (
                f"{s['n_real_uncertain']} / {s['n_real_uncertain'] + s['n_diversity']}"
            ),
            "paper (Qwen3-4B)": _published_cell(r, published),
        }
        rows.append(line)
    return pd.DataFrame(rows).set_index("score")


# ------------------------------------------------------------------ generated text


def _position_sentence(pos: dict[str, Any], h: dict[str, Any], where: str) -> str:
    a, lo, hi = pos["auroc"], pos.get("ci_low"), pos.get("ci_high")
    head = (
        f"**Position.** The early-position score ({EARLY_WORDS}, the paper's orientation) has "
        f"AUROC {a:.2f}, 95% CI [{_fmt(lo)}, {_fmt(hi)}], on {where}; the paper reports "
        f"{h['auroc']:.2f} [{h['ci95'][0]:.2f}, {h['ci95'][1]:.2f}] for the same orientation."
    )
    if a < 0.5:
        sure = "its interval excludes 0.5" if hi is not None and hi < 0.5 else (
            "but its interval includes 0.5")  # fmt: skip
        return (
            f"{head} Here it is **reversed**: below 0.5 the early score ranks the other way, "
            f"later positions being the real-uncertain ones (mirrored, higher = later: "
            f"{1 - a:.2f}); {sure}."
        )
    if lo is not None and lo > 0.5:
        return f"{head} Here it points the paper's way (its interval excludes 0.5)."
    return f"{head} Here it shows **no detectable ordering** (its interval includes 0.5)."


def _local_sentence(local: list[dict[str, Any]], pub_max: float) -> str:
    def one(r: dict[str, Any]) -> str:
        mirrored = f" (mirrored {1 - r['auroc']:.2f})" if r["auroc"] < 0.5 else ""
        return f"{r['score']} {r['auroc']:.2f}{mirrored}"

    below = [r for r in local if r["auroc"] < 0.5]
    best = max(local, key=lambda r: r["auroc"])
    text = (
        "**Local scores** (higher = more uncertain): " + "; ".join(one(r) for r in local) + ". "
        f"The paper: every local score at most {pub_max:.2f}; here the highest as oriented is "
        f"{best['auroc']:.2f} ({best['score']})."
    )
    if below:
        clear = sum(r.get("ci_high") is not None and r["ci_high"] < 0.5 for r in below)
        over = sum(1 - r["auroc"] > pub_max for r in below)
        text += (
            f" {len(below)} of {len(local)} read below 0.5, and a score below 0.5 ranks the "
            "other way: a more uncertain teacher position is more often benign diversity here "
            f"({clear} of those {len(below)} with intervals wholly below 0.5; {over} mirrored "
            f"value(s) above the paper's {pub_max:.2f})."
        )
    return text


def _finding_sentence(pos: dict[str, Any], local: list[dict[str, Any]]) -> str:
    best = max(local, key=lambda r: r["auroc"])
    a, lo = pos["auroc"], pos.get("ci_low")
    claim = "The paper's finding (the early-position score separates the labels better than "
    claim += "every local score)"
    if a > best["auroc"] and lo is not None and lo > best["auroc"]:
        return f"{claim} holds here: even the low end of its interval lies above them all."
    if a > best["auroc"]:
        return f"{claim} points the same way here, but its interval overlaps the best local score."
    return (
        f"{claim} is **not** seen here: early position {a:.2f} against the best local score "
        f"{best['auroc']:.2f} ({best['score']})."
    )


def count_sentence(stats: dict[str, Any], counts: dict[str, Any] | None = None) -> str:
    """How many labelled candidates are real-uncertain ("19 of 485"), from how many problems."""
    n_real, n_div = stats["n_real_uncertain"], stats["n_diversity"]
    f = (counts or {}).get("F", {})
    extra = (
        f" ({f['candidates']} candidates in all, {f['gray']} gray excluded)"
        if {"candidates", "gray"} <= set(f) else ""
    )  # fmt: skip
    return (
        f"{n_real} of {n_real + n_div} labelled candidates are real-uncertain{extra}, "
        f"{n_div} benign diversity, from {stats['n_problems']} problems, "
        f"{stats['n_single_label_problems']} of which hold one label only and add no "
        "within-problem contrast."
    )


def verdict(
    table: dict[str, Any],
    published: dict[str, Any] | None = None,
    counts: dict[str, Any] | None = None,
) -> str:
    """The generated reading of one seed's Table 1 against the paper (Markdown): the position
    score early-oriented beside the published value ("reversed" below 0.5), the local scores
    (the mirrored value of those below 0.5), the paper's finding, and the counts."""
    published = published or load_published()
    table = oriented(table)
    pos = shown(position_row(table), table)
    local = [shown(r, table) | {"score": r["score"]} for r in table["rows"] if not _is_position(r)]
    local = [r for r in local if r.get("auroc") is not None]
    where = "candidates on correct spines" if restricted(table) else "candidates of all spines"
    lead = ""
    if (pos.get("auroc") is None or not local) and restricted(table):
        lead = (
            f"On correct spines the labels hold {pos['n_real_uncertain']} real-uncertain and "
            f"{pos['n_diversity']} diversity candidates: the restricted Table 1 has no AUROC to "
            "give, so the reading below is **pooled over all spines** (wrong spines included). "
        )
        pooled = position_row(table)
        pos, where = pooled, "candidates of all spines"
        local = [r for r in table["rows"] if not _is_position(r) and r.get("auroc") is not None]
    if pos.get("auroc") is None or not local:
        return lead + (
            f"Too few labelled {where} of both kinds to compare the scores "
            f"({pos['n_real_uncertain']} real-uncertain, {pos['n_diversity']} diversity)."
        )
    return lead + " ".join([
        _position_sentence(pos, published["headline"], where),
        _local_sentence(local, published["local_uncertainty_scores_max_auroc"]),
        _finding_sentence(pos, local),
        count_sentence(pos, counts),
    ])  # fmt: skip


# ------------------------------------------------------------------ Figure 1


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


# ------------------------------------------------------------------ over seeds


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
    """AUROC of every score per seed (position early-oriented; correct spines when stored),
    and mean ± sd over the seeds."""
    rows: dict[str, dict[str, Any]] = {}
    for seed, files in seeds.items():
        table = oriented(files["table1"])
        for r in table["rows"]:
            a = shown(r, table).get("auroc")
            rows.setdefault(r["score"], {"score": r["score"]})[f"seed {seed}"] = _fmt(a)
            rows[r["score"]].setdefault("_values", []).append(a)
    out = []
    for row in rows.values():
        vals = [v for v in row.pop("_values") if v is not None]
        agg = mean_sd(vals) if vals else {"mean": None, "sd": None}
        sd = "" if agg["sd"] is None else f" ± {agg['sd']:.2f}"
        row["mean ± sd"] = _fmt(agg["mean"]) + sd
        out.append(row)
    return pd.DataFrame(out).set_index("score")


def seeds_verdict(seeds: dict[int, dict[str, Any]], published: dict[str, Any] | None = None) -> str:
    """One sentence over seeds: the early-position AUROC beside the paper's, how many seeds
    read below 0.5, and in how many it beats every local score."""
    published = published or load_published()
    wins, below, pos_vals = 0, 0, []
    pooled_seeds = 0
    for files in seeds.values():
        table = oriented(files["table1"])
        pos = shown(position_row(table), table)
        local = [shown(r, table).get("auroc") for r in table["rows"] if not _is_position(r)]
        if pos.get("auroc") is None and restricted(table):  # no real-uncertain on correct spines
            pooled_seeds += 1
            pos = position_row(table)
            local = [r.get("auroc") for r in table["rows"] if not _is_position(r)]
        local = [a for a in local if a is not None]
        if pos.get("auroc") is not None:
            pos_vals.append(pos["auroc"])
            below += pos["auroc"] < 0.5
            wins += bool(local) and pos["auroc"] > max(local)
    if not pos_vals:
        return "No seed has enough labelled candidates of both kinds to compare the scores."
    agg = mean_sd(pos_vals)
    spread = "" if agg["sd"] is None else f" ± {agg['sd']:.2f} (mean ± sd)"
    h = published["headline"]
    word = "**reversed** in every seed" if below == len(pos_vals) else (
        f"below 0.5 in {below} of {len(pos_vals)} seed(s)")  # fmt: skip
    pooled = (
        f" ({pooled_seeds} of them pooled over all spines: no real-uncertain candidate on a "
        "correct spine)" if pooled_seeds else ""
    )  # fmt: skip
    return (
        f"Over {len(pos_vals)} seed(s){pooled} the early-position score's AUROC is "
        f"{agg['mean']:.2f}{spread}, against the paper's {h['auroc']:.2f} for the same "
        f"orientation: {word}; it beats every local score in {wins} of {len(pos_vals)} seed(s)."
    )


def seeds_caveat(seeds: dict[int, dict[str, Any]]) -> str:
    """What the seeds vary, read from their phase counts: identical spines and candidates
    (phases A-C) mean the spread over seeds measures only D, E and the bootstrap."""
    counts = [files["diagnostic"].get("counts", {}) for files in seeds.values()]
    if len(counts) < 2 or any(not c for c in counts):
        return ""
    real = ", ".join(str(c.get("F", {}).get("real_uncertain")) for c in counts)
    if all(c.get(p) == counts[0].get(p) for c in counts for p in "ABC"):
        a, c = counts[0]["A"], counts[0]["C"]
        return (
            f"**What the seeds vary.** Phases A-C give identical counts in all {len(counts)} "
            f"seeds ({a['spines']} spines, {a['correct']} correct, {a['mean_tokens']:.1f} tokens "
            f"on average; {c['candidates']} candidates): every seed analyses the same spines and "
            "candidate positions. The seeds vary only the MC-dropout masks (D), the forced "
            f"continuations (E, hence the labels: {real} real-uncertain) and the bootstrap, so "
            "the ± over seeds measures those alone, not a new draw of spines or problems."
        )
    return (
        f"**What the seeds vary.** Phases A-C differ across the {len(counts)} seeds: each seed "
        f"draws its own spines and candidates (real-uncertain per seed: {real})."
    )
