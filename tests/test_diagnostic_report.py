"""The diagnostic read honestly (issue 19, part 5): the paper's early orientation, the mirror of a
later-is-higher row, the correct-spine restriction, and the generated text on hand-made tables."""

from __future__ import annotations

import random

import pytest

from pwopsd.config import DiagnosticConfig
from pwopsd.diagnostic import figures, report

PUB = {
    "model": "Qwen3-4B",
    "headline": {"score": "oriented early-position score", "orientation": "early",
                 "orientation_words": "higher = earlier in the spine", "auroc": 0.91,
                 "ci95": [0.71, 0.97]},
    "local_uncertainty_scores_max_auroc": 0.61,
}  # fmt: skip
"""Made-up published numbers: the text must print these, not the paper's."""


def _records(n_problems: int = 30, seed: int = 0) -> list[dict]:
    """Candidates whose real uncertainty sits late in the spine; every problem's last candidate
    on a wrong spine is real-uncertain whatever its position."""
    rng = random.Random(seed)
    out = []
    for p in range(n_problems):
        wrong = p % 5 == 0
        for j in range(4):
            u = (j + rng.random()) / 4
            real = wrong or (u > 0.6 and rng.random() < 0.6)
            out.append({
                "problem_key": f"p{p}", "spine_correct": not wrong, "u": u,
                "trunc_entropy": rng.random(), "entropy": rng.random(), "top1": rng.random(),
                "spine_prob": 0.1 + 0.8 * rng.random(),
                "label": "real_uncertain" if real else "diversity",
            })  # fmt: skip
    return out


def _cfg(orientation: str) -> DiagnosticConfig:
    return DiagnosticConfig(position_orientation=orientation, bootstrap=200)


def test_a_late_row_mirrors_exactly_into_the_early_one():
    records = _records()
    late = report.table1(records, _cfg("late"))[0]
    early = report.table1(records, _cfg("early"))[0]
    shown = figures.early_oriented(late)
    assert shown["mirrored_from_late"] and shown["orientation"] == "higher = earlier in the spine"
    for key in ("auroc", "auroc_unresidualised", "ci_low", "ci_high"):
        assert shown[key] == pytest.approx(early[key], abs=1e-9), key
        assert shown["correct_spines"][key] == pytest.approx(early["correct_spines"][key], abs=1e-9)
    assert shown["auprc"] is None  # not recoverable from the late row
    assert figures.early_oriented(early) is early  # already early: untouched


def test_table1_carries_the_correct_spine_restriction():
    records = _records()
    rows = report.table1(records, _cfg("early"))
    pooled, correct = rows[0], rows[0]["correct_spines"]
    on_correct = [r for r in records if r["spine_correct"]]
    assert correct["n_real_uncertain"] == sum(r["label"] == "real_uncertain" for r in on_correct)
    assert pooled["n_real_uncertain"] > correct["n_real_uncertain"]
    assert pooled["n_diversity"] == correct["n_diversity"]  # wrong spines: real-uncertain only
    assert figures.restricted({"rows": rows})
    assert "correct spines" in figures.which_spines({"rows": rows})


def _row(score: str, orientation: str, auroc: float, lo: float, hi: float, **extra) -> dict:
    return {"score": score, "orientation": orientation, "auroc": auroc,
            "auroc_unresidualised": auroc, "ci_low": lo, "ci_high": hi, "auprc": 0.1,
            "auprc_chance": 0.04, "n_real_uncertain": 19, "n_diversity": 466,
            "n_problems": 169, "n_single_label_problems": 162, **extra}  # fmt: skip


def _table(pos: dict, *locals_: tuple[str, float, float, float]) -> dict:
    local = [_row(n, "higher = more uncertain", a, lo, hi) for n, a, lo, hi in locals_]
    return {"rows": [pos, *local]}


LATE = "position u = (i - 0.5) / L"


def test_a_late_row_above_half_is_a_reversal_of_the_paper():
    table = _table(_row(LATE, "higher = later in the spine", 0.62, 0.57, 0.69),
                   ("entropy", 0.33, 0.22, 0.43), ("mutual information", 0.47, 0.37, 0.59))  # fmt: skip
    counts = {"A": {"spines": 192, "correct": 182}, "F": {"candidates": 553, "gray": 68}}
    text = figures.verdict(table, PUB, counts)
    assert "early-position score (higher = earlier in the spine" in text
    assert "AUROC 0.38, 95% CI [0.31, 0.43], on candidates of all spines" in text
    assert "the paper reports 0.91 [0.71, 0.97] for the same orientation" in text
    assert "**reversed**" in text and "(mirrored, higher = later: 0.62)" in text
    assert "its interval excludes 0.5" in text
    assert "entropy 0.33 (mirrored 0.67); mutual information 0.47 (mirrored 0.53)" in text
    assert "2 of 2 read below 0.5, and a score below 0.5 ranks the other way" in text
    assert "1 of those 2 with intervals wholly below 0.5; 1 mirrored value(s) above the " in text
    assert "every local score at most 0.61" in text and "**not** seen here" in text
    assert "19 of 485 labelled candidates are real-uncertain (553 candidates in all" in text
    assert "0.83" not in text and "0.57" not in text  # the paper's numbers come from PUB
    frame = figures.table1_frame(table, PUB)
    early = frame.loc["early-position score 1 - u"]
    assert early["AUROC [95% CI], all spines (pooled)"] == "0.38 [0.31, 0.43]"
    assert early["paper (Qwen3-4B)"] == "0.91 [0.71, 0.97]"
    assert early["mirrored (if below 0.5)"] == "0.62"
    assert frame.loc["entropy", "paper (Qwen3-4B)"].startswith("≤ 0.61")
    assert early["real-uncertain / labelled"] == "19 / 485"
    assert "predate the correct-spine restriction" in figures.which_spines(table, counts)
    assert "182 of 192 spines correct" in figures.which_spines(table, counts)
    assert "shown mirrored" in figures.orientation_note(table)


def test_an_early_row_that_agrees_with_the_paper_says_so():
    pos = _row("early-position score 1 - u", "higher = earlier in the spine", 0.80, 0.70, 0.90)
    table = _table(pos, ("entropy", 0.55, 0.45, 0.65))
    text = figures.verdict(table, PUB)
    assert "points the paper's way (its interval excludes 0.5)" in text
    assert "reversed" not in text and "read below 0.5" not in text
    assert "holds here: even the low end of its interval lies above them all" in text
    assert figures.orientation_note(table) == ""
    unclear = _table(_row("early-position score 1 - u", "higher = earlier in the spine",
                          0.55, 0.45, 0.65), ("entropy", 0.52, 0.45, 0.6))  # fmt: skip
    assert "**no detectable ordering** (its interval includes 0.5)" in figures.verdict(unclear, PUB)


def test_restricted_rows_are_shown_with_the_pooled_value_beside_them():
    sub = _row("", "", 0.30, 0.20, 0.40) | {"n_real_uncertain": 9, "n_diversity": 400}
    pos = _row(LATE, "higher = later in the spine", 0.62, 0.57, 0.69, correct_spines=sub)
    ent = _row("entropy", "higher = more uncertain", 0.4, 0.3, 0.5, correct_spines=dict(sub))
    table = {"rows": [pos, ent]}
    frame = figures.table1_frame(table, PUB)
    early = frame.loc["early-position score 1 - u"]
    assert early["AUROC [95% CI], correct spines"] == "0.70 [0.60, 0.80]"  # 1 - 0.30, mirrored
    assert early["AUROC [95% CI], all spines (pooled)"] == "0.38 [0.31, 0.43]"
    assert early["real-uncertain / labelled"] == "9 / 409"
    text = figures.verdict(table, PUB)
    assert "AUROC 0.70, 95% CI [0.60, 0.80], on candidates on correct spines" in text


def test_no_real_uncertain_candidate_on_correct_spines_falls_back_to_the_pooled_reading():
    """The toy's case: every real-uncertain candidate sits on a wrong spine, so the restricted
    table has no AUROC; the verdict says so and reads the pooled value instead."""
    empty = {"auroc": None, "ci_low": None, "ci_high": None, "n_real_uncertain": 0,
             "n_diversity": 457}  # fmt: skip
    pos = _row("early-position score 1 - u", "higher = earlier in the spine", 0.38, 0.31, 0.43,
               correct_spines=dict(empty))  # fmt: skip
    ent = _row("entropy", "higher = more uncertain", 0.33, 0.22, 0.43, correct_spines=dict(empty))
    text = figures.verdict({"rows": [pos, ent]}, PUB)
    assert text.startswith("On correct spines the labels hold 0 real-uncertain and 457 diversity")
    assert "**pooled over all spines**" in text
    assert "AUROC 0.38, 95% CI [0.31, 0.43], on candidates of all spines" in text
    seeds = {1: {"table1": {"rows": [pos, ent]}}}
    assert "1 of them pooled over all spines" in figures.seeds_verdict(seeds, PUB)


def _seed(real: int, spines: int = 192) -> dict:
    counts = {"A": {"spines": spines, "correct": 182, "mean_tokens": 39.8}, "B": {},
              "C": {"candidates": 553}, "F": {"real_uncertain": real}}  # fmt: skip
    table = _table(_row(LATE, "higher = later in the spine", 0.62, 0.57, 0.69),
                   ("entropy", 0.33, 0.22, 0.43))  # fmt: skip
    return {"diagnostic": {"counts": counts}, "table1": table, "figure1": {}}


def test_seeds_say_what_they_vary():
    same = {1: _seed(19), 2: _seed(20), 3: _seed(19)}
    caveat = figures.seeds_caveat(same)
    assert "identical counts in all 3 seeds" in caveat and "19, 20, 19 real-uncertain" in caveat
    assert "not a new draw of spines or problems" in caveat
    assert "each seed draws its own spines" in figures.seeds_caveat(
        {1: _seed(19), 2: _seed(19, 190)}
    )
    text = figures.seeds_verdict(same, PUB)
    assert "AUROC is 0.38 ± 0.00 (mean ± sd), against the paper's 0.91" in text
    assert "**reversed** in every seed" in text and "beats every local score in 3 of 3" in text
    frame = figures.seeds_frame(same)
    assert frame.loc["early-position score 1 - u", "seed 2"] == "0.38"


def test_committed_results_read_against_the_published_file():
    seeds = figures.load_seeds("toy")
    if not seeds:
        pytest.skip("no committed diagnostic results")
    first = seeds[min(seeds)]
    pub = figures.load_published()
    text = figures.verdict(first["table1"], pub, first["diagnostic"]["counts"])
    assert f"the paper reports {pub['headline']['auroc']:.2f}" in text
    assert "labelled candidates are real-uncertain" in text
