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


def test_verdict_counts_wins_and_the_sd_rule() -> None:
    table = tables.aggregate(
        [
            _result(seed, [
                _row("qwen3/opsd", "OPSD", {"toy_aime24": [0.30], "toy_hmmt25": [0.10]}),
                _row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate",
                     {"toy_aime24": [0.30 + 0.10 + 0.01 * seed], "toy_hmmt25": [0.09 + 0.01 * seed]}),
            ])
            for seed in (1, 2, 3)
        ]
    )  # fmt: skip
    c = tables.compare(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    # AIME: +0.12 on average with sd 0.01 -> a win beyond one sd; HMMT: +0.01, sd 0.01 -> not beyond
    assert c["wins"] == 2 and c["wins_beyond_sd"] == 1 and c["losses_beyond_sd"] == 0
    text = tables.verdict(table, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    assert "beats **OPSD** on 2 of 2 sets" in text and "replicates at this scale" in text
    reverse = tables.verdict(table, "qwen3/opsd", "qwen3/pw_opsd_moderate")
    assert "on 0 of 2 sets" in reverse
    # the paper has PW-OPSD Moderate ahead of OPSD, so OPSD ahead of it here is reversed
    flipped = tables.aggregate([_result(1, [
        _row("qwen3/opsd", "OPSD", {"toy_aime24": [0.5, 0.5], "toy_hmmt25": [0.5, 0.5]}),
        _row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate", {"toy_aime24": [0.2, 0.2], "toy_hmmt25": [0.2, 0.2]}),
    ])])  # fmt: skip
    assert "does not replicate" in tables.verdict(flipped, "qwen3/pw_opsd_moderate", "qwen3/opsd")
    # reversed but inside the spread is no evidence either way, not a failed replication
    noisy = tables.aggregate([_result(1, [
        _row("qwen3/opsd", "OPSD", {"toy_aime24": [0.40, 0.50], "toy_hmmt25": [0.40, 0.50]}),
        _row("qwen3/pw_opsd_moderate", "PW-OPSD Moderate",
             {"toy_aime24": [0.40, 0.48], "toy_hmmt25": [0.40, 0.48]}),
    ])])  # fmt: skip
    assert "no evidence either way" in tables.verdict(noisy, "qwen3/pw_opsd_moderate", "qwen3/opsd")


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
    assert "position +4.0" in tables.effects_sentence(table)


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
    assert "per seed +10.0, +11.0, +9.0" in clear and "bar is 2.0 points: **met**" in clear
    noisy = tables.gain_target_sentence(table([0.25, 0.45, 0.35]))  # +5 points, sd 10
    assert "bar is 20.0 points: **not met**" in noisy
    one = tables.gain_target_sentence(table([0.40]))
    assert "one training seed" in one and "met" not in one
    assert "not in these results" in tables.gain_target_sentence(table([0.4]), a="qwen3/eopd")
