"""The paper's claims against the toy results: one verdict per claim, the summary table and the
(method - OPSD) figure of the book's first page, all generated from the results files.

A toy comparison is row ``a`` minus row ``b`` on the mean Avg@12 over the four toy sets, paired
by training seed, with its 95% t interval (:func:`pwopsd.tables.paired`). Its verdict
(:func:`verdict_word`) reads :func:`pwopsd.tables.direction_outcome` against the sign of the
paper's difference: "agree" / "disagree" when the interval excludes 0 on the paper's side / on
the other, "inconclusive" when it includes 0, "untestable here" without a paper direction, a
result or an interval. Missing results show as "-", never as an error.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from pwopsd import plots, tables
from pwopsd.diagnostic import figures
from pwopsd.metrics import PairedInterval, format_interval
from pwopsd.vocab import MAIN_FAMILY, PAPER_MODEL_LABELS

AGREE, DISAGREE, INCONCLUSIVE, UNTESTABLE = "agree", "disagree", "inconclusive", "untestable here"
VERDICTS = (AGREE, DISAGREE, INCONCLUSIVE, UNTESTABLE)
MISSING = "-"
MAIN = "main_table"
OPSD, BASE = f"{MAIN_FAMILY}/opsd", f"{MAIN_FAMILY}/base"


@dataclass(frozen=True)
class Finding:
    """One line of the summary: the paper's claim, its number, the toy result, the verdict and
    the page that shows the comparison."""

    claim: str
    paper: str
    toy: str
    verdict: str
    page: str


def verdict_word(iv: PairedInterval | None, paper: float | None) -> str:
    """agree / disagree / inconclusive / untestable here: a toy interval against the sign of the
    paper's difference, through :func:`pwopsd.tables.direction_outcome`."""
    if paper is None or paper == 0:
        return UNTESTABLE
    outcome = tables.direction_outcome(iv, paper)
    words = {"agrees": AGREE, "reversed": DISAGREE, "no detectable": INCONCLUSIVE}
    return next((w for prefix, w in words.items() if outcome.startswith(prefix)), UNTESTABLE)


def every_seed(passes: list[bool], fails: list[bool]) -> str:
    """A verdict judged seed by seed: agree when every seed passes, disagree when every seed
    fails, inconclusive otherwise, untestable here without seeds."""
    if not passes:
        return UNTESTABLE
    return AGREE if all(passes) else DISAGREE if all(fails) else INCONCLUSIVE


def interval_text(iv: PairedInterval | None) -> str:
    """A paired interval in points ("-3.4 [-7.8, +1.1]"), "-" when there is none."""
    return MISSING if iv is None else format_interval(iv, 100, show_n=False)


def paired(table: dict[str, Any] | None, a: str, b: str) -> PairedInterval | None:
    """:func:`pwopsd.tables.paired` on the mean over sets; None when the table or a row is absent."""
    if table is None or tables.row(table, a) is None or tables.row(table, b) is None:
        return None
    return tables.paired(table, a, b)


def difference(table: dict[str, Any] | None, a: str, b: str) -> dict[str, Any]:
    """Row ``a`` minus row ``b``: their labels, the family, the toy paired interval and the
    paper's difference on its mean over benchmarks (None where it publishes none)."""
    family = a.split("/")[0]
    found = table is not None and tables.row(table, a) and tables.row(table, b)
    la, lb = (tables.row(table, k)["label"] if found else k.split("/")[-1] for k in (a, b))
    return {
        "a": la,
        "b": lb,
        "family": family,
        "interval": paired(table, a, b),
        "paper": tables.paper_difference(family, la, lb),
    }


def pair_finding(
    table: dict[str, Any] | None,
    page: str,
    a: str,
    b: str,
    expected: float | None = None,
    claim: str | None = None,
) -> Finding:
    """Row ``a`` against row ``b``. The claim's verb follows the sign of the paper's difference
    (of ``expected`` where the paper publishes no number); the toy side is the paired interval."""
    d = difference(table, a, b)
    sign = d["paper"] if d["paper"] is not None else expected
    where = "" if d["family"] == MAIN_FAMILY else f" ({PAPER_MODEL_LABELS.get(d['family'])})"
    claim = claim or f"{d['a']} {'beats' if (sign or 0) > 0 else 'trails'} {d['b']}{where}"
    paper = MISSING if d["paper"] is None else f"{d['paper']:+.2f}"
    iv = d["interval"]
    return Finding(claim, paper, interval_text(iv), verdict_word(iv, sign), page)


def diagnostic_seeds(seeds: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per diagnostic seed, read as :func:`pwopsd.diagnostic.figures.seeds_verdict` reads it
    (early-oriented, correct spines when stored): the early-position AUROC and its bootstrap
    interval, the best local score's AUROC, and the label counts; a seed without an AUROC or
    an interval is left out."""
    out = []
    for files in seeds.values():
        table = figures.oriented(files["table1"])
        rows = [r for r in table["rows"] if "position" not in r["score"]]
        pos = figures.shown(figures.position_row(table), table)
        local = [figures.shown(r, table).get("auroc") for r in rows]
        if pos.get("auroc") is None and figures.restricted(table):  # pooled over all spines
            pos, local = figures.position_row(table), [r.get("auroc") for r in rows]
        local = [x for x in local if x is not None]
        if None in (pos.get("auroc"), pos.get("ci_low"), pos.get("ci_high")) or not local:
            continue  # too few labelled candidates of both kinds to judge this seed
        real, labelled = pos["n_real_uncertain"], pos["n_real_uncertain"] + pos["n_diversity"]
        out.append({"auroc": pos["auroc"], "low": pos["ci_low"], "high": pos["ci_high"],
                    "best_local": max(local), "real": real, "labelled": labelled,
                    "problems": pos["n_problems"]})  # fmt: skip
    return out


def diagnostic_findings(per: list[dict[str, Any]], pub: dict[str, Any]) -> list[Finding]:
    """The diagnostic's two claims, judged seed by seed (:func:`every_seed`): the early-position
    AUROC lies above 0.5 (each seed's bootstrap interval), and above every local score."""
    h, cap = pub["headline"], pub["local_uncertainty_scores_max_auroc"]
    claims = (
        "An early-position score separates real uncertainty from benign diversity (AUROC)",
        f"The early-position score beats every local score (each at most {cap:.2f} in the paper)",
    )
    papers = (f"{h['auroc']:.2f} [{h['ci95'][0]:.2f}, {h['ci95'][1]:.2f}]", f"{h['auroc']:.2f}")
    if not per:
        return [Finding(c, p, MISSING, UNTESTABLE, "diagnostic") for c, p in zip(claims, papers)]
    mean, best = (statistics.fmean(s[k] for s in per) for k in ("auroc", "best_local"))
    lows, highs, n = [s["low"] for s in per], [s["high"] for s in per], len(per)
    ahead = sum(s["auroc"] > s["best_local"] for s in per)
    toys = (
        f"{mean:.2f} over {n} seeds (their 95% intervals within [{min(lows):.2f}, {max(highs):.2f}])",
        f"{mean:.2f} vs best local {best:.2f}; ahead in {ahead} of {n} seeds",
    )
    words = (
        every_seed([x > 0.5 for x in lows], [x < 0.5 for x in highs]),
        every_seed([s["low"] > s["best_local"] for s in per],
                   [s["auroc"] < s["best_local"] for s in per]),
    )  # fmt: skip
    return [Finding(*parts, "diagnostic") for parts in zip(claims, papers, toys, words)]


def factorial_findings(table: dict[str, Any] | None) -> list[Finding]:
    """The factorial's two main effects (:func:`pwopsd.tables.factorial_effects`); the paper
    publishes no numbers for the factorial, so neither can be judged against it."""
    effects = tables.factorial_effects(table) if table else {}
    claims = {
        "position": "Effect of the position weight (vs uniform weight)",
        "reduction": "Effect of the per-sequence mean (vs global token mean)",
    }
    return [
        Finding(claim, MISSING, interval_text(effects.get(k, {}).get("interval")), UNTESTABLE,
                "reduction_factorial")
        for k, claim in claims.items()
    ]  # fmt: skip


def summary() -> list[Finding]:
    """Every claim of the summary, in the book's order, from the committed results."""
    sections = (MAIN, "schedule_sweep", "cross_model", "reduction_factorial")
    main, sweep, cross, factorial = (tables.load_section("toy", s) for s in sections)
    out = diagnostic_findings(diagnostic_seeds(figures.load_seeds("toy")), figures.load_published())
    for method in ("pw_opsd_moderate", "pw_opsd_aggressive"):
        out.append(pair_finding(main, MAIN, f"{MAIN_FAMILY}/{method}", OPSD))
    base_claim = "OPSD beats the untrained base model (implied; no base scores published)"
    out.append(pair_finding(main, MAIN, OPSD, BASE, expected=1.0, claim=base_claim))
    for method in ("eopd", "reopold"):
        out.append(pair_finding(main, MAIN, f"{MAIN_FAMILY}/{method}", OPSD))
    aggressive, moderate = (f"{MAIN_FAMILY}/pw_opsd_{s}" for s in ("aggressive", "moderate"))
    out.append(pair_finding(sweep, "schedule_sweep", aggressive, moderate))
    for family in ("llama", "olmo3"):
        out.append(
            pair_finding(cross, "cross_model", f"{family}/pw_opsd_moderate", f"{family}/opsd")
        )
    return out + factorial_findings(factorial)


PAGE_NAMES = {
    "diagnostic": "Diagnostic",
    MAIN: "Main table",
    "schedule_sweep": "Schedule sweep",
    "cross_model": "Across families",
    "reduction_factorial": "Factorial",
}
"""Short link texts for the summary's page column (the pages' titles are long)."""


def _unbroken(text: str) -> str:
    """Intervals' brackets kept on one line ("[-7.8, +1.1]" with a no-break space)."""
    return text.replace(", ", ",\u00a0")


def summary_markdown(found: list[Finding]) -> str:
    """The summary as a compact Markdown table: verdicts in bold, each page as a link."""
    lines = ["| Claim (paper) | Paper | Toy scale | Verdict | Page |", "|---|---|---|---|---|"]
    for f in found:
        page = f"{{doc}}`{PAGE_NAMES.get(f.page, f.page)} <{f.page}>`"
        lines.append(f"| {f.claim} | {f.paper} | {_unbroken(f.toy)} | **{f.verdict}** | {page} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the figure


def difference_rows() -> list[dict[str, Any]]:
    """Every trained method minus OPSD per family (Qwen3 from the main table, Llama and Olmo-3
    from the cross-model section): :func:`difference` plus the table row (for its colour)."""
    out = []
    for section, families in ((MAIN, (MAIN_FAMILY,)), ("cross_model", ("llama", "olmo3"))):
        table = tables.load_section("toy", section)
        for r in table["rows"] if table else []:
            if r["family"] in families and r["method"] not in ("base", "opsd"):
                out.append({**difference(table, r["key"], f"{r['family']}/opsd"), "row": r})
    return out


def plot_differences(rows: list[dict[str, Any]]) -> plt.Figure:
    """Bars: toy (method - OPSD) in points with 95% t interval bars, grouped by family, one
    colour per method; black diamonds: the paper's difference with the model each family
    stands for (none where it publishes none)."""
    fig, ax = plt.subplots(figsize=(8.0, 3.6), layout="constrained")
    handles: dict[str, Any] = {}
    x, ticks = 0.0, []
    for family in dict.fromkeys(d["family"] for d in rows):
        mine = [d for d in rows if d["family"] == family]
        label = f"toy {family}\n({PAPER_MODEL_LABELS.get(family, '?')})"
        ticks.append((x + 0.25 * (len(mine) - 1), label))
        for d in mine:
            if (iv := d["interval"]) is not None:
                err = (
                    None if iv.n < 2 else [[100 * (iv.mean - iv.low)], [100 * (iv.high - iv.mean)]]
                )
                colour = plots.method_color(d["row"])
                handles[d["a"]] = ax.bar(x, 100 * iv.mean, 0.4, yerr=err, capsize=3, color=colour)
            if d["paper"] is not None:
                ax.plot(x, d["paper"], "D", color=plots.PAPER_COLOR, mec="white", ms=7, zorder=3)
            x += 0.5
        x += 0.8
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
    ax.set_ylabel("method − OPSD, Avg@12\n(percentage points)")
    paper = Line2D([], [], color=plots.PAPER_COLOR, mec="white", marker="D", ms=7, ls="none")
    handles["paper's difference (its model, its benchmarks)"] = paper
    plots.legend_outside(fig, list(handles.values()), list(handles))
    return fig
