"""Aggregation over training seeds, verdicts and factorial effects (issue 12)."""

from __future__ import annotations

import json
import statistics

import pytest

from pwopsd import tables

BENCH = [{"name": "toy_aime24", "label": "Toy AIME 2024"}, {"name": "toy_hmmt25", "label": "H"}]


def _row(key: str, label: str, avgs: dict[str, list[float]], **factors) -> dict:
    family, _ = key.split("/")
    scores = {}
    for bench, values in avgs.items():
        m = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else None
        s = {"mean": m, "sd": sd, "values": values}
        scores[bench] = {"avg": s, "pass": s, "maj": s}
    return {"key": key, "label": label, "family": family, "method": key.split("/")[1],
            "run": None, "factors": factors, "scores": scores}  # fmt: skip


def _result(seed: int, rows: list[dict]) -> dict:
    return {"section": "main_table", "seed": seed, "benchmarks": BENCH, "rows": rows,
            "sampling": {"n": 12}, "eval_seeds": [seed * 1000], "runs": {},
            "provenance": {"profile": "toy", "wall_seconds": 1.0}}  # fmt: skip


def test_one_seed_reports_the_evaluation_spread_and_many_seeds_the_training_spread() -> None:
    one = tables.aggregate([_result(1, [_row("qwen3/opsd", "OPSD",
                                            {"toy_aime24": [0.2, 0.4], "toy_hmmt25": [0.1, 0.1]})])])  # fmt: skip
    s = one["rows"][0]["scores"]["toy_aime24"]["avg"]
    assert one["spread"] == "evaluation seeds"
    assert s["mean"] == pytest.approx(0.3) and s["sd"] == pytest.approx(
        statistics.stdev([0.2, 0.4])
    )
    many = tables.aggregate(
        [
            _result(
                1, [_row("qwen3/opsd", "OPSD", {"toy_aime24": [0.2, 0.4], "toy_hmmt25": [0.1]})]
            ),
            _result(
                2, [_row("qwen3/opsd", "OPSD", {"toy_aime24": [0.5, 0.5], "toy_hmmt25": [0.3]})]
            ),
        ]
    )
    s = many["rows"][0]["scores"]["toy_aime24"]["avg"]
    assert many["spread"] == "training seeds" and many["seeds"] == [1, 2]
    # each seed counts once, by its mean over evaluation seeds: (0.3 + 0.5) / 2
    assert s["mean"] == pytest.approx(0.4) and s["sd"] == pytest.approx(
        statistics.stdev([0.3, 0.5])
    )
    overall = many["rows"][0]["overall"]["avg"]
    assert overall["per_seed"] == pytest.approx([0.2, 0.4])  # mean over the two benchmarks


T_975_2 = 4.302652729749462  # Student t quantile, 0.975, 2 degrees of freedom


def _moderate_vs_opsd(pw: dict[int, tuple[float, float]], opsd=(0.30, 0.10)) -> dict:
    """Three training seeds of OPSD (AIME, HMMT fixed) and PW-OPSD Moderate (given by seed)."""
    return tables.aggregate([
        _result(seed, [
            _row("qwen3/opsd", "OPSD", {"toy_aime24": [opsd[0]], "toy_hmmt25": [opsd[1]]}),
            _row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate",
                 {"toy_aime24": [a], "toy_hmmt25": [h]}),
        ])
        for seed, (a, h) in pw.items()
    ])  # fmt: skip


def test_verdict_pairs_by_seed_and_prints_the_t_interval() -> None:
    # AIME diffs +0.11, +0.12, +0.13; HMMT diffs 0, +0.01, +0.02; mean of sets +0.055..+0.075
    table = _moderate_vs_opsd({s: (0.40 + 0.01 * s, 0.09 + 0.01 * s) for s in (1, 2, 3)})
    c = tables.compare(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    half = T_975_2 * 0.01 / 3**0.5  # sd of each set of differences is 0.01
    aime = c["benchmarks"]["toy_aime24"]["interval"]
    assert (aime.mean, aime.low, aime.high) == pytest.approx((0.12, 0.12 - half, 0.12 + half))
    hmmt = c["benchmarks"]["toy_hmmt25"]["interval"]
    assert hmmt.low < 0 < hmmt.high  # +1.0 [-1.5, +3.5]: not detectable
    assert c["wins"] == 2 and c["wins_clear"] == 1 and c["losses_clear"] == 0
    assert c["overall"].mean == pytest.approx(0.065) and c["overall"].n == 3
    text = tables.verdict(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert "mean of the 2 sets +6.5 [+4.0, +9.0] (n = 3)" in text
    assert "Toy AIME 2024 +12.0 [+9.5, +14.5]; H +1.0 [-1.5, +3.5]" in text
    assert "Paper: +0.39 points on the mean; here: **agrees (interval excludes 0)**" in text
    # the other way round, the paper's difference flips too: still "agrees"
    reverse = tables.verdict(table, "qwen3/opsd", "qwen3/pw_opsd_moderate")
    assert "Ahead on 0 of 2 sets" in reverse and "Paper: -0.39" in reverse
    assert "**agrees (interval excludes 0)**" in reverse
    # a reversal: PW-OPSD Moderate behind OPSD on every seed, the paper has it ahead
    behind = _moderate_vs_opsd({s: (0.20 - 0.01 * s, 0.09 - 0.01 * s) for s in (1, 2, 3)})
    text = tables.verdict(behind, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert "**reversed (interval excludes 0)**" in text


def test_verdict_says_no_detectable_difference_when_the_interval_includes_0() -> None:
    # mean of sets diffs -0.02, +0.01, -0.02: mean -0.01, interval includes 0
    table = _moderate_vs_opsd({1: (0.26, 0.10), 2: (0.32, 0.10), 3: (0.26, 0.10)})
    text = tables.verdict(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert "**no detectable difference (interval includes 0)**" in text
    assert "agrees" not in text and "reversed" not in text
    one = _moderate_vs_opsd({1: (0.10, 0.10)})
    assert "not judged (one training seed" in tables.verdict(one, "qwen3/pw_opsd_moderate",
                                                             "qwen3/opsd")  # fmt: skip


def test_pairing_removes_the_seed_to_seed_spread() -> None:
    # Both methods move together from seed to seed (sd 10 points each); the paired difference
    # is -2 points on every seed: the one-sd rule saw nothing, the pairs see a reversal.
    base = {1: 0.30, 2: 0.50, 3: 0.40}
    table = tables.aggregate([
        _result(s, [
            _row("qwen3/opsd", "OPSD", {"toy_aime24": [v], "toy_hmmt25": [v]}),
            _row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate",
                 {"toy_aime24": [v - 0.02 + 0.001 * s], "toy_hmmt25": [v - 0.02 - 0.001 * s]}),
        ])
        for s, v in base.items()
    ])  # fmt: skip
    iv = tables.paired(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert iv.mean == pytest.approx(-0.02) and iv.high < 0
    assert "**reversed" in tables.verdict(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")


def test_pairs_are_matched_by_training_seed_not_by_position() -> None:
    # PW-OPSD lacks seed 2: only seeds 1 and 3 pair (diffs +0.1 and +0.3, not +0.1 and -0.2).
    opsd = {1: 0.2, 2: 0.5, 3: 0.1}
    table = tables.aggregate([
        _result(s, [_row("qwen3/opsd", "OPSD", {"toy_aime24": [v], "toy_hmmt25": [v]})]
                + ([] if s == 2 else [_row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate",
                    {"toy_aime24": [0.3 + 0.1 * (s == 3)], "toy_hmmt25": [0.3 + 0.1 * (s == 3)]})]))
        for s, v in opsd.items()
    ])  # fmt: skip
    iv = tables.paired(table, "qwen3/pw_opsd_moderate", "qwen3/opsd", "toy_aime24")
    assert iv.n == 2 and iv.mean == pytest.approx(0.2)
    assert (iv.low, iv.high) == pytest.approx((0.2 - 12.706204736 * 0.1, 0.2 + 12.706204736 * 0.1))


def test_direction_outcome_on_hand_made_intervals() -> None:
    from pwopsd.metrics import PairedInterval

    nan = float("nan")
    assert tables.direction_outcome(PairedInterval(0.1, 0.05, 0.15, 3), 0.4).startswith("agrees")
    assert tables.direction_outcome(PairedInterval(-0.1, -0.15, -0.05, 3), 0.4).startswith(
        "reversed"
    )
    assert tables.direction_outcome(PairedInterval(-0.1, -0.3, 0.1, 3), 0.4).startswith(
        "no detectable difference (interval includes 0)"
    )
    assert tables.direction_outcome(PairedInterval(-0.1, nan, nan, 1), 0.4).startswith("not judged")
    assert tables.direction_outcome(None, 0.4).startswith("not judged")
    assert tables.direction_outcome(PairedInterval(0.1, 0.05, 0.15, 3), None).startswith(
        "a detectable difference"
    )


def test_a_comparison_without_paper_numbers_says_so() -> None:
    table = tables.aggregate([_result(1, [
        _row("qwen3/base", "Base", {"toy_aime24": [0.3], "toy_hmmt25": [0.1]}),
        _row("qwen3/opsd", "OPSD", {"toy_aime24": [0.4], "toy_hmmt25": [0.1]}),
    ])])  # fmt: skip
    assert "publishes no numbers" in tables.verdict(table, "qwen3/opsd", "qwen3/base")
    frame = tables.comparison_frame(table)
    assert frame.loc[("Base", "paper (Qwen3-4B)"), "AIME 2024"] == "not published"
    assert frame.loc[("OPSD", "paper (Qwen3-4B)"), "AIME 2024"] == "75.19 ± 0.42"
    assert frame.loc[("OPSD", "ours (qwen3)"), "AIME 2024"] == "40.0"
    # OPSD's two benchmark columns shown, plus its mean; Base has none
    assert tables.count_published(frame) == 3


def test_factorial_effects_follow_the_cell_arithmetic() -> None:
    def cell(w: str, r: str, v: float) -> dict:
        return _row(f"qwen3/{w}_{r}", f"{w} {r}", {"toy_aime24": [v], "toy_hmmt25": [v]},
                    weighting=w, reduction=r)  # fmt: skip

    table = tables.aggregate([_result(1, [
        cell("uniform", "global", 0.30), cell("uniform", "per_sequence", 0.34),
        cell("position", "global", 0.32), cell("position", "per_sequence", 0.40),
    ])])  # fmt: skip
    eff = tables.factorial_effects(table)
    assert eff["position"]["mean"] == pytest.approx((0.32 + 0.40 - 0.30 - 0.34) / 2)
    assert eff["reduction"]["mean"] == pytest.approx((0.34 + 0.40 - 0.30 - 0.32) / 2)
    assert eff["interaction"]["mean"] == pytest.approx((0.40 - 0.32 - 0.34 + 0.30) / 2)
    assert "position +4.0 [no interval]" in tables.effects_sentence(table)
    assert "one training seed: no interval yet" in tables.effects_sentence(table)


def test_factorial_effects_carry_a_t_interval_over_training_seeds() -> None:
    def cell(w: str, r: str, v: float, seed: int) -> dict:
        v += 0.05 * seed  # every cell moves with the seed: the effects do not
        return _row(f"qwen3/{w}_{r}", f"{w} {r}", {"toy_aime24": [v], "toy_hmmt25": [v]},
                    weighting=w, reduction=r)  # fmt: skip

    # the position effect per seed: -0.04, -0.05, -0.03 (the (pos, per-seq) cell varies)
    table = tables.aggregate([_result(s, [
        cell("uniform", "global", 0.30, s), cell("uniform", "per_sequence", 0.30, s),
        cell("position", "global", 0.26, s), cell("position", "per_sequence", 0.26 + d, s),
    ]) for s, d in ((1, 0.0), (2, -0.02), (3, 0.02))])  # fmt: skip
    eff = tables.factorial_effects(table)
    assert eff["position"]["per_seed"] == pytest.approx([-0.04, -0.05, -0.03])
    iv = eff["position"]["interval"]
    half = T_975_2 * 0.01 / 3**0.5
    assert (iv.low, iv.high) == pytest.approx((-0.04 - half, -0.04 + half))
    text = tables.effects_sentence(table)
    assert "position -4.0 [-6.5, -1.5]" in text and "interval excludes 0: position" in text


def test_scaled_runs_are_not_read_as_full_seeds(tmp_path) -> None:
    full = _result(1, [_row("qwen3/base", "Base", {"toy_aime24": [0.3], "toy_hmmt25": [0.1]})])
    quick = _result(2, [_row("qwen3/base", "Base", {"toy_aime24": [0.9], "toy_hmmt25": [0.9]})])
    (tmp_path / "main_table.seed1.json").write_text(json.dumps(full))
    (tmp_path / "main_table.seed2.max_problems2-eval_seeds1.json").write_text(json.dumps(quick))
    table = tables.load_section("toy", "main_table", tmp_path)
    assert table["seeds"] == [1]
    assert table["rows"][0]["scores"]["toy_aime24"]["avg"]["mean"] == pytest.approx(0.3)
    assert tables.load_section("toy", "main_table", tmp_path / "missing") is None


def test_a_reduced_grid_is_named_by_its_methods_and_schedules() -> None:
    from pwopsd.config import MainTableConfig

    cfg = MainTableConfig(methods=["base", "opsd", "pw_opsd"], schedules=["moderate"])
    assert cfg.scale_tag() == "methodsbase+opsd+pw_opsd-schedulesmoderate"
    assert MainTableConfig().scale_tag() == ""  # the full configuration keeps the plain name


def test_gain_target_sentence_judges_the_gain_against_twice_the_training_spread() -> None:
    def table(opsd: list[float]) -> dict:
        return tables.aggregate([
            _result(k + 1, [_row("qwen3/base", "Base", {"toy_aime24": [0.30, 0.30]}),
                            _row("qwen3/opsd", "OPSD", {"toy_aime24": [v, v]})])
            for k, v in enumerate(opsd)
        ])  # fmt: skip

    clear = tables.gain_target_sentence(table([0.40, 0.41, 0.39]))  # +10 points, sd 1
    assert "+10.0 points over 3 training seeds" in clear
    assert "paired difference with 95% t interval +10.0 [+7.5, +12.5] (n = 3)" in clear
    assert "per seed +10.0, +11.0, +9.0" in clear and "bar is 2.0 points: **met**" in clear
    noisy = tables.gain_target_sentence(table([0.25, 0.45, 0.35]))  # +5 points, sd 10
    assert "bar is 20.0 points: **not met**" in noisy
    one = tables.gain_target_sentence(table([0.40]))
    assert "one training seed" in one and "met" not in one
    assert "not in these results" in tables.gain_target_sentence(table([0.4]), a="qwen3/eopd")
