"""The findings summary and the pages' opening findings: signs, verdicts and missing results."""

from __future__ import annotations

import json
import math
import re
import statistics

import matplotlib.pyplot as plt
import pytest
from scipy import stats

from pwopsd import findings, page_findings, tables
from pwopsd.metrics import PairedInterval
from tests.conftest import REPO_ROOT

BENCH = [{"name": "toy_aime24", "label": "A"}, {"name": "toy_hmmt25", "label": "H"}]
LABELS = {"opsd": "OPSD", "pw_opsd_moderate": "PW-OPSD Moderate", "eopd": "EOPD", "base": "Base"}


def _table(per_seed: dict[str, list[float]]) -> dict:
    """A two-benchmark table over len(values) training seeds: method -> its score per seed
    (the same on both benchmarks, so the mean over benchmarks is that score)."""
    n = len(next(iter(per_seed.values())))
    results = []
    for i in range(n):
        rows = []
        for method, values in per_seed.items():
            s = {"mean": values[i], "sd": 0.0}
            rows.append({"key": f"qwen3/{method}", "label": LABELS[method], "family": "qwen3",
                         "method": method, "run": None, "factors": {},
                         "scores": {b["name"]: {"avg": s, "pass": s, "maj": s} for b in BENCH}})  # fmt: skip
        results.append({"section": "main_table", "seed": i + 1, "benchmarks": BENCH,
                        "rows": rows, "sampling": {"n": 12}})  # fmt: skip
    return tables.aggregate(results)


# ------------------------------------------------------------------ the verdict logic


@pytest.mark.parametrize(
    ("iv", "paper", "word"),
    [
        (PairedInterval(0.02, 0.01, 0.03, 3), 0.39, findings.AGREE),
        (PairedInterval(-0.02, -0.03, -0.01, 3), -1.14, findings.AGREE),
        (PairedInterval(-0.02, -0.03, -0.01, 3), 0.39, findings.DISAGREE),
        (PairedInterval(0.02, 0.01, 0.03, 3), -2.12, findings.DISAGREE),
        (PairedInterval(-0.02, -0.05, 0.01, 3), 0.39, findings.INCONCLUSIVE),
        (PairedInterval(0.02, math.nan, math.nan, 1), 0.39, findings.UNTESTABLE),
        (PairedInterval(0.02, 0.01, 0.03, 3), None, findings.UNTESTABLE),
        (None, 0.39, findings.UNTESTABLE),
    ],
)
def test_verdict_word(iv, paper, word) -> None:
    assert findings.verdict_word(iv, paper) == word


def test_a_method_clearly_behind_opsd_disagrees_with_the_paper() -> None:
    table = _table({"opsd": [0.80, 0.82, 0.81], "pw_opsd_moderate": [0.70, 0.71, 0.72]})
    f = findings.pair_finding(table, "main_table", "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert f.claim == "PW-OPSD Moderate beats OPSD"  # the paper's sign (+0.39) sets the verb
    assert f.paper == "+0.39"
    assert f.toy.startswith("-10.0 [") and f.verdict == findings.DISAGREE


def test_a_method_clearly_ahead_of_opsd_agrees_and_noise_is_inconclusive() -> None:
    ahead = _table({"opsd": [0.70, 0.71, 0.72], "pw_opsd_moderate": [0.75, 0.75, 0.78]})
    f = findings.pair_finding(ahead, "main_table", "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert f.toy.startswith("+5.0 [") and f.verdict == findings.AGREE
    noisy = _table({"opsd": [0.70, 0.71, 0.72], "pw_opsd_moderate": [0.80, 0.65, 0.70]})
    f = findings.pair_finding(noisy, "main_table", "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert f.verdict == findings.INCONCLUSIVE


def test_a_baseline_the_paper_puts_below_opsd_agrees_when_it_trails() -> None:
    table = _table({"opsd": [0.80, 0.82, 0.81], "eopd": [0.75, 0.76, 0.78]})
    f = findings.pair_finding(table, "main_table", "qwen3/eopd", "qwen3/opsd")
    assert f.claim == "EOPD trails OPSD" and f.paper == "-1.14"
    assert f.toy.startswith("-4.7 [") and f.verdict == findings.AGREE


def test_an_expected_direction_stands_in_for_an_unpublished_number() -> None:
    table = _table({"opsd": [0.80, 0.82, 0.81], "base": [0.60, 0.60, 0.60]})
    f = findings.pair_finding(table, "main_table", "qwen3/opsd", "qwen3/base", expected=1.0)
    assert f.paper == findings.MISSING and f.verdict == findings.AGREE
    f = findings.pair_finding(table, "main_table", "qwen3/opsd", "qwen3/base")
    assert f.verdict == findings.UNTESTABLE


def test_missing_rows_and_tables_give_dashes_not_errors() -> None:
    f = findings.pair_finding(None, "main_table", "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert f.toy == findings.MISSING and f.verdict == findings.UNTESTABLE
    assert [x.toy for x in findings.factorial_findings(None)] == [findings.MISSING] * 2


def test_diagnostic_claims_are_judged_seed_by_seed() -> None:
    pub = {"headline": {"auroc": 0.83, "ci95": [0.66, 0.95]},
           "local_uncertainty_scores_max_auroc": 0.57}  # fmt: skip

    def seed(auroc: float, low: float, high: float, best: float) -> dict:
        return {"auroc": auroc, "low": low, "high": high, "best_local": best, "real": 5,
                "labelled": 50, "problems": 20}  # fmt: skip

    below = [seed(0.37, 0.30, 0.43, 0.47), seed(0.38, 0.31, 0.44, 0.45)]
    assert [f.verdict for f in findings.diagnostic_findings(below, pub)] == [findings.DISAGREE] * 2
    above = [seed(0.80, 0.70, 0.90, 0.55), seed(0.85, 0.75, 0.92, 0.50)]
    assert [f.verdict for f in findings.diagnostic_findings(above, pub)] == [findings.AGREE] * 2
    mixed = [below[0], above[0]]
    assert findings.diagnostic_findings(mixed, pub)[0].verdict == findings.INCONCLUSIVE
    assert {f.verdict for f in findings.diagnostic_findings([], pub)} == {findings.UNTESTABLE}


def test_factorial_effects_keep_their_sign_and_are_not_judged_against_the_paper() -> None:
    cells = {("uniform", "global"): [0.85, 0.86, 0.84], ("uniform", "per_sequence"): [0.85, 0.86, 0.84],
             ("position", "global"): [0.81, 0.82, 0.80], ("position", "per_sequence"): [0.81, 0.82, 0.80]}  # fmt: skip
    results = []
    for i in range(3):
        rows = []
        for (w, d), values in cells.items():
            s = {"mean": values[i], "sd": 0.0}
            rows.append({"key": f"qwen3/{w}_{d}", "label": f"{w} {d}", "family": "qwen3",
                         "method": f"{w}_{d}", "run": None, "factors": {"weighting": w, "reduction": d},
                         "scores": {b["name"]: {"avg": s, "pass": s, "maj": s} for b in BENCH}})  # fmt: skip
        results.append(
            {"section": "reduction_factorial", "seed": i + 1, "benchmarks": BENCH, "rows": rows}
        )
    position, reduction = findings.factorial_findings(tables.aggregate(results))
    assert position.toy.startswith("-4.0") and reduction.toy.startswith("+0.0")
    assert position.verdict == reduction.verdict == findings.UNTESTABLE


def test_summary_markdown_is_one_row_per_finding_with_dashes() -> None:
    found = [
        findings.Finding(
            "A beats B", findings.MISSING, "+1.0 [+0.5, +1.5]", findings.AGREE, "main_table"
        )
    ]
    text = findings.summary_markdown(found)
    assert text.splitlines()[0].startswith("| Claim (paper) | Paper | Toy scale | Verdict |")
    row = "| A beats B | - | +1.0 [+0.5,\u00a0+1.5] | **agree** | {doc}`Main table <main_table>` |"
    assert row in text


# ------------------------------------------------------------------ the committed results


def test_the_moderate_finding_matches_a_recomputation_from_the_results_files() -> None:
    """PW-OPSD Moderate minus OPSD, recomputed from the per-seed files without pwopsd.tables."""
    diffs = []
    for path in sorted(
        (REPO_ROOT / "results" / "toy" / "main_table").glob("main_table.seed[0-9].json")
    ):
        rows = {r["key"]: r for r in json.loads(path.read_text())["rows"]}
        a, b = (rows[k]["scores"].values() for k in ("qwen3/pw_opsd_moderate", "qwen3/opsd"))
        diffs.append(100 * (statistics.fmean(s["avg"]["mean"] for s in a)
                            - statistics.fmean(s["avg"]["mean"] for s in b)))  # fmt: skip
    n = len(diffs)
    assert n >= 2
    m = statistics.fmean(diffs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    low, high = m - half, m + half
    found = next(f for f in findings.summary() if f.claim == "PW-OPSD Moderate beats OPSD")
    shown = [float(x) for x in re.findall(r"[+-]\d+\.\d+", found.toy)]
    assert shown == pytest.approx([m, low, high], abs=0.051)
    expected = (
        findings.AGREE if low > 0 else findings.DISAGREE if high < 0 else findings.INCONCLUSIVE
    )
    assert found.verdict == expected  # the paper's difference is positive (+0.39)


def test_the_summary_has_every_claim_and_no_nan() -> None:
    found = findings.summary()
    assert len(found) == 12 and {f.verdict for f in found} <= set(findings.VERDICTS)
    text = findings.summary_markdown(found)
    assert "nan" not in text.lower() and "None" not in text


def test_the_difference_figure_keeps_the_signs_and_its_legend_outside() -> None:
    rows = findings.difference_rows()
    assert {d["family"] for d in rows} == {"qwen3", "llama", "olmo3"}
    fig = findings.plot_differences(rows)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert [h > 0 for h in heights] == [d["interval"].mean > 0 for d in rows]
    assert fig.legends and fig.axes[0].get_legend() is None
    plt.close(fig)


def test_the_intro_caption_states_the_seeds_the_results_hold() -> None:
    text = (REPO_ROOT / "book" / "intro.md").read_text()
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    n = len(tables.load_section("toy", "main_table")["seeds"])
    assert f"over the {words[n]} training seeds" in text


# ------------------------------------------------------------------ the pages' findings


def test_every_page_finding_is_bold_and_free_of_nan() -> None:
    for section in page_findings.SECTIONS:
        text = page_findings.section_finding(section)
        assert text.startswith("**") and text.endswith("**"), section
        assert "nan" not in text.lower() and "None" not in text, section


def test_page_findings_say_no_results_yet_when_files_are_missing(monkeypatch) -> None:
    monkeypatch.setattr(page_findings.tables, "load_section", lambda *a, **k: None)
    monkeypatch.setattr(page_findings.beyond, "section_results", lambda *a, **k: [])
    monkeypatch.setattr(page_findings.premise_report, "section_results", lambda *a, **k: [])
    monkeypatch.setattr(page_findings.figures, "load_seeds", lambda *a, **k: {})
    for section in page_findings.SECTIONS:
        assert "No results yet" in page_findings.section_finding(section), section


def test_the_cross_model_finding_has_the_sign_of_each_family() -> None:
    table = tables.load_section("toy", "cross_model")
    text = page_findings.cross_finding()
    for family in ("qwen3", "llama", "olmo3"):
        iv = tables.paired(table, f"{family}/pw_opsd_moderate", f"{family}/opsd")
        shown = re.search(rf"toy {family} \([^)]*\) ([+-][\d.]+) \[", text)
        assert shown and (float(shown[1]) > 0) == (iv.mean > 0), family


def test_threats_read_their_numbers_from_the_files() -> None:
    text = page_findings.threats()
    tune = json.loads((REPO_ROOT / "results" / "toy" / "recipe_tuning.json").read_text())
    assert f"best of {len({r['candidate'] for r in tune['rows']})} candidate recipes" in text
    n = len(tables.load_section("toy", "main_table")["seeds"])
    assert f"**{n} training seeds.**" in text and f"{n - 1} degrees of freedom" in text
    assert "nan" not in text.lower()


def test_the_beyond_finding_counts_intervals_once_results_arrive(monkeypatch) -> None:
    scores = {
        "base": [0.50, 0.51, 0.50],
        "opsd": [0.80, 0.82, 0.81],
        "teacher_free": [0.60, 0.62, 0.63],
    }
    results = []
    for i in range(3):
        rows = []
        for method, values in scores.items():
            s = {"mean": values[i], "sd": 0.0}
            variant = {"variant": "teacher-free"} if method == "teacher_free" else {}
            rows.append({"key": f"qwen3/{method}", "label": method, "family": "qwen3",
                         "method": method, "run": None, "factors": variant,
                         "scores": {b["name"]: {"avg": s, "pass": s, "maj": s} for b in BENCH}})  # fmt: skip
        results.append({"section": "beyond", "seed": i + 1, "benchmarks": BENCH, "rows": rows})
    monkeypatch.setattr(page_findings.beyond, "section_results", lambda *a, **k: results)
    text = page_findings.section_finding("beyond")
    # teacher-free minus OPSD lies below 0, teacher-free minus the base model above it
    assert (
        "Of 2 comparisons" in text
        and "1 lie wholly above 0, 1 wholly below and 0 include 0" in text
    )
    monkeypatch.setattr(page_findings.beyond, "section_results", lambda *a, **k: results[:1])
    assert "one training seed" in page_findings.section_finding("beyond")
