"""What each results page says first, and the threats to validity every toy result shares, both
generated from the results files (:mod:`pwopsd.findings` judges the paper's claims).

:func:`section_finding` gives a page's opening finding in bold, in one or two sentences; a
section without results yet (the variants beyond the paper while they train) gets a "no results
yet" sentence instead of an error. :func:`threats` reads every number it cites from a file: the
checkpoints' pretraining logs, the recipe tunings, the training seeds and the diagnostic counts.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scipy.special import stdtrit

from pwopsd import beyond, premise_report, tables
from pwopsd.config import get_profile
from pwopsd.diagnostic import figures
from pwopsd.findings import (
    AGREE,
    BASE,
    DISAGREE,
    MAIN,
    OPSD,
    diagnostic_findings,
    diagnostic_seeds,
    difference,
    interval_text,
    paired,
)
from pwopsd.metrics import PairedInterval
from pwopsd.toy import recipe
from pwopsd.vocab import FAMILIES, MAIN_FAMILY, PAPER_MODEL_LABELS

NO_RESULTS = "No results yet: this page fills in as its runs finish."
UNITS = "points of mean Avg@12 over the four toy sets, 95% t interval over {n} training seeds"


def _listed(table: dict[str, Any], pairs: list[tuple[str, str]], name: Callable) -> str:
    """Each present pair as "name interval (paper +x.xx)", "; "-joined, then the units."""
    parts = []
    for a, b in pairs:
        d = difference(table, a, b)
        if d["interval"] is not None:
            paper = "" if d["paper"] is None else f" (paper {d['paper']:+.2f})"
            parts.append(f"{name(d)} {interval_text(d['interval'])}{paper}")
    return f"{'; '.join(parts)} ({UNITS.format(n=len(table['seeds']))})"


def main_finding() -> str:
    """Each method minus OPSD, and OPSD minus the base model."""
    table = tables.load_section("toy", MAIN)
    if table is None:
        return NO_RESULTS
    methods = ("pw_opsd_moderate", "pw_opsd_aggressive", "eopd", "reopold")
    pairs = [(f"{MAIN_FAMILY}/{m}", OPSD) for m in methods]
    gain = interval_text(paired(table, OPSD, BASE))
    return (
        f"Each method minus OPSD: {_listed(table, pairs, lambda d: d['a'])}. "
        f"OPSD itself gains {gain} points over the base model."
    )


def sweep_finding() -> str:
    """The toy order of the schedules, and each schedule minus OPSD."""
    table = tables.load_section("toy", "schedule_sweep")
    if table is None:
        return NO_RESULTS
    ranked = sorted(table["rows"], key=lambda r: -r["overall"]["avg"]["mean"])
    pairs = [(r["key"], OPSD) for r in table["rows"] if r["method"] == "pw_opsd"]
    return (
        f"By mean Avg@12 the toy order is {' > '.join(r['label'] for r in ranked)}. "
        f"Each schedule minus OPSD: {_listed(table, pairs, lambda d: d['a'])}."
    )


def cross_finding() -> str:
    """PW-OPSD Moderate minus OPSD in each family, beside the paper's model."""
    table = tables.load_section("toy", "cross_model")
    if table is None:
        return NO_RESULTS

    def name(d: dict[str, Any]) -> str:
        return f"toy {d['family']} ({PAPER_MODEL_LABELS[d['family']]})"

    pairs = [(f"{f}/pw_opsd_moderate", f"{f}/opsd") for f in FAMILIES]
    return f"PW-OPSD Moderate minus OPSD: {_listed(table, pairs, name)}."


def factorial_finding() -> str:
    """The two main effects and the interaction, and which is the larger."""
    table = tables.load_section("toy", "reduction_factorial")
    effects = tables.factorial_effects(table) if table else {}
    if not effects:
        return NO_RESULTS
    text = {k: interval_text(e["interval"]) for k, e in effects.items()}
    names = {"position": "the position weight's", "reduction": "the reduction's"}
    larger = names[max(names, key=lambda k: abs(effects[k]["mean"]))]
    clear = [k for k, e in effects.items() if e["interval"].excludes_zero]
    judged = f"intervals that exclude 0: {', '.join(clear)}" if clear else "no interval excludes 0"
    return (
        f"The position weight moves the mean Avg@12 by {text['position']} points, the "
        f"per-sequence mean by {text['reduction']}, their interaction by {text['interaction']} "
        f"(95% t intervals over {len(effects['position']['per_seed'])} training seeds). "
        f"Of the two main effects, {larger} is the larger; {judged}."
    )


def diagnostic_finding() -> str:
    """The early-position AUROC over seeds against the paper's, and against the local scores."""
    per = diagnostic_seeds(figures.load_seeds("toy"))
    if not per:
        return NO_RESULTS
    pub = figures.load_published()
    found, beats = diagnostic_findings(per, pub)
    side = {
        AGREE: "every seed's 95% interval lies above 0.5",
        DISAGREE: "every seed's 95% interval lies below 0.5, so here it ranks the other way",
    }.get(found.verdict, "the seeds' intervals include 0.5")
    return (
        f"The early-position score's AUROC is {statistics.fmean(s['auroc'] for s in per):.2f} "
        f"over {len(per)} seeds: {side}; the paper reports {found.paper}. Against the best "
        f"local uncertainty score: {beats.toy}."
    )


def premise_finding() -> str:
    """PW-OPSD Moderate minus OPSD at the weakest and strongest dial setting, and the reading
    stated before the runs (:func:`pwopsd.premise_report.reading`)."""
    per_seed = premise_report.section_results("toy")
    gaps = premise_report.gap_frame(per_seed, premise_report.COMPARED_ROWS) if per_seed else None
    if gaps is None or gaps.empty:
        return NO_RESULTS
    part = gaps[gaps["row"] == "PW-OPSD Moderate"].sort_values("shortcut share")
    ends = [part.iloc[0], part.iloc[-1]]
    shown = [
        f"{interval_text(PairedInterval(*(r[k] / 100 for k in ('gap', 'low', 'high')), int(r['seeds'])))}"
        f" at shortcut share {r['shortcut share']:g}"
        for r in ends
    ]
    outcome = premise_report.reading(part, premise_report.latest_measurements(per_seed))
    outcome = outcome.replace(" it**", " the premise**").replace("**", "")
    return (
        f"PW-OPSD Moderate minus OPSD is {shown[0]} and {shown[1]} (Avg@12 points, 95% t "
        f"interval over training seeds). By the reading stated before the runs, this {outcome}."
    )


def beyond_finding() -> str:
    """How many variant-minus-reference intervals lie above 0, below 0, or include it."""
    try:
        per_seed = beyond.section_results("toy")
        table = tables.aggregate(per_seed) if per_seed else None
    except (ValueError, KeyError):  # a seed file still being written
        table = None
    pairs = [(a, b) for a, b, _ in beyond.comparisons(table)] if table else []
    if not pairs:
        return "No results yet: the variants beyond the paper are still training."
    ivs = [paired(table, a, b) for a, b in pairs]
    if min(iv.n for iv in ivs) < 2:
        return f"{len(pairs)} comparisons so far, from one training seed: no intervals yet."
    up = sum(iv.excludes_zero and iv.mean > 0 for iv in ivs)
    down = sum(iv.excludes_zero and iv.mean < 0 for iv in ivs)
    units = UNITS.format(n=min(iv.n for iv in ivs))
    return (
        f"Of {len(pairs)} comparisons, each a variant minus its reference ({units}), {up} lie "
        f"wholly above 0, {down} wholly below and {len(pairs) - up - down} include 0."
    )


SECTIONS: dict[str, Callable[[], str]] = {
    "diagnostic": diagnostic_finding,
    MAIN: main_finding,
    "schedule_sweep": sweep_finding,
    "cross_model": cross_finding,
    "reduction_factorial": factorial_finding,
    "position_premise": premise_finding,
    "beyond": beyond_finding,
}
"""Page -> its opening finding (plain Markdown)."""


def section_finding(section: str) -> str:
    """A page's opening finding, in bold (Markdown)."""
    return f"**{SECTIONS[section]()}**"


# ------------------------------------------------------------------ threats to validity


def _span(values: list[float], fmt: str = "{:g}") -> str:
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low} to {high}"


SETTING_NAMES = {"tau_clip": "clip", "learning_rate": "learning rate", "max_steps": "steps"}


def _changes(overrides: dict[str, Any]) -> str:
    """A candidate recipe's changes to the shipped one ("clip 0.5, learning rate 0.001")."""
    parts = [f"{SETTING_NAMES.get(k, k)} {v:g}" for k, v in overrides.items()]
    return ", ".join(parts) or "the shipped recipe"


def _recipe_threat() -> str:
    """The toy recipe's tuning (one method), the per-method picks and the own-recipe gaps."""
    main = tables.load_section("toy", MAIN)
    if main is None or not recipe.TUNING_PATH.exists():
        return "- **A recipe tuned on one method.** No tuning results yet."
    label = {r["key"].split("/")[-1]: r["label"] for r in main["rows"]}
    tune = json.loads(recipe.TUNING_PATH.read_text())
    text = (
        f"- **A recipe tuned on one method.** The shipped toy recipe is the best of "
        f"{len({r['candidate'] for r in tune['rows']})} candidate recipes on the validation set, "
        f"each trained with {', '.join(sorted({label[r['method']] for r in tune['rows']}))} only."
    )
    if not recipe.PER_METHOD_PATH.exists():
        return text
    best = recipe.best_recipes(json.loads(recipe.PER_METHOD_PATH.read_text()))
    picks = "; ".join(f"{label[m]}: {_changes(b['overrides'])}" for m, b in best.items())
    per_seed = premise_report.section_results("toy")
    study = tables.aggregate(per_seed) if per_seed else None
    own = "; ".join(
        f"{label[m]} {interval_text(paired(study, f'dial0/{m}_own', 'dial0/opsd_own'))}"
        for m in recipe.PER_METHOD[1:]
    )
    return (
        f"{text} Given the same candidates each, the picks are {picks}. Trained with its own "
        f"pick, each PW-OPSD schedule minus OPSD on its own pick is {own} (points of mean "
        "Avg@12, 95% t interval; see {doc}`position_premise`)."
    )


def threats() -> str:
    """The threats to validity shared by every toy result (Markdown list), read from files."""
    models = get_profile("toy").models.values()
    logs = [json.loads((Path(p) / "pretrain_log.json").read_text()) for p in models]
    millions = [log["n_params"] / 1e6 for log in logs]
    main = tables.load_section("toy", MAIN)
    n = len(main["seeds"]) if main else 0
    per = diagnostic_seeds(figures.load_seeds("toy"))
    lines = [
        f"- **Toy scale.** {len(logs)} tiny models of {_span(millions, '{:.2f}')} million "
        "parameters, pretrained on synthetic multi-step arithmetic. The four toy sets stand in "
        "for MATH-500, AIME 2024, AIME 2025 and HMMT 2025 and are not them: compare the order "
        "of the methods, not their levels.",
        _recipe_threat(),
    ]
    if n > 1:
        lines.append(
            f"- **{n} training seeds.** A t interval over {n} paired differences has {n - 1} "
            f"degrees of freedom, so its half-width is {float(stdtrit(n - 1, 0.975)):.1f} "
            "standard errors: the intervals are wide, and one that includes 0 is read as "
            "inconclusive, not as the absence of an effect."
        )
    if per:
        lines.append(
            f"- **Small diagnostic counts.** Each diagnostic seed labels "
            f"{_span([s['real'] for s in per])} of its {_span([s['labelled'] for s in per])} "
            f"labelled candidates as real uncertainty, from {_span([s['problems'] for s in per])} "
            "problems: its AUROCs rest on a handful of positive cases."
        )
    return "\n".join(lines)
