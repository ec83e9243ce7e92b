"""The beyond-the-paper section (issue 20): its rows, and the page's readings of results files
(verdicts, gaps, teacher cost) on synthetic seeds. Nothing here trains or samples."""

from __future__ import annotations

import math

import matplotlib
import pytest

from pwopsd import beyond, tables
from pwopsd.config import BeyondConfig, ConfigError
from pwopsd.vocab import METRICS, TOY_BENCHMARKS

matplotlib.use("Agg")

FITTED = (0.984, 1.0, 0.01)


def test_rows_cover_every_variant_with_unique_keys_and_their_settings(tmp_path):
    cfg = BeyondConfig(out_dir=str(tmp_path), train_steps=2, teacher_ema_decay=0.9)
    rows = beyond.beyond_rows(cfg, FITTED)
    keys = [r.key for r in rows]
    assert len(set(keys)) == len(keys)
    assert keys == [
        "qwen3/base",
        "qwen3/opsd",
        "qwen3/pw_opsd_moderate",
        "qwen3/pw_mix_moderate",
        "qwen3/pw_mix_aggressive",
        "qwen3/pw_opsd_w0.984_c1_s0.01",
        "qwen3/teacher_free",
        "qwen3/pw_opsd_moderate_teacher_student",
        "qwen3/pw_opsd_moderate_teacher_ema",
    ]
    by_key = {r.key: r for r in rows}
    ema = dict(by_key["qwen3/pw_opsd_moderate_teacher_ema"].run.overrides)
    assert ema == {"max_steps": 2, "teacher": "ema", "teacher_ema_decay": 0.9}
    student = dict(by_key["qwen3/pw_opsd_moderate_teacher_student"].run.overrides)
    assert student == {"max_steps": 2, "teacher": "student"}
    assert by_key["qwen3/pw_opsd_w0.984_c1_s0.01"].run.resolved_schedule == FITTED
    assert len({r.run.run_dir() for r in rows if r.run}) == len(rows) - 1  # no shared run dir
    assert all(str(r.run.run_dir()).startswith(str(tmp_path)) for r in rows if r.run)
    fewer = BeyondConfig(out_dir=str(tmp_path), mix_schedules=[], teachers=[],
                         teacher_free=False)  # fmt: skip
    assert [r.key for r in beyond.beyond_rows(fewer, None)] == keys[:3]


def test_default_decay_adds_no_override_so_the_cli_spelling_is_the_same_run():
    cfg = BeyondConfig()
    (ema,) = [r for r in beyond.beyond_rows(cfg, None) if r.key.endswith("_teacher_ema")]
    assert ema.run.overrides == (("teacher", "ema"),)
    assert "runs" in str(ema.run.run_dir()) and str(beyond.fitted_schedule_path(cfg)).endswith(
        "results/toy/diagnostic/fitted_schedule.json"
    )


def test_bad_parameters_name_the_field():
    with pytest.raises(ConfigError, match="mix_schedules contains 'steep'"):
        BeyondConfig(mix_schedules=["steep"])
    with pytest.raises(ConfigError, match="teachers contains 'base'"):
        BeyondConfig(teachers=["base"])
    with pytest.raises(ConfigError, match="teacher_ema_decay=-0.1"):
        BeyondConfig(teacher_ema_decay=-0.1)


def _result(seed: int, rows: list, shift: dict[str, float]) -> dict:
    def scores(base: float) -> dict:
        return {b: {m: {"mean": base, "sd": 0.01, "values": [base]} for m in METRICS}
                for b in TOY_BENCHMARKS}  # fmt: skip

    out_rows, runs = [], {}
    for r in rows:
        value = 0.3 + shift.get(r.key, 0.0) + 0.01 * seed
        out_rows.append({"key": r.key, "label": r.label, "family": r.family,
                         "method": r.method, "run": r.run and r.run.name,
                         "factors": r.factors, "scores": scores(value)})  # fmt: skip
        if r.run is not None:
            t = 0.0 if r.method == "teacher_free" else 0.5 * seed
            runs[r.key] = {"metrics": [{"step": 1, "seconds": 5.0, "teacher_seconds": t}]}
    return {"section": "beyond", "seed": seed, "rows": out_rows, "runs": runs,
            "benchmarks": [{"name": b, "label": b} for b in TOY_BENCHMARKS]}  # fmt: skip


def test_page_readings_on_three_synthetic_seeds():
    rows = beyond.beyond_rows(BeyondConfig(), FITTED)
    shift = {"qwen3/teacher_free": -0.1, "qwen3/pw_mix_moderate": 0.02}
    per_seed = [_result(s, rows, shift) for s in (1, 2, 3)]
    for s, result in enumerate(per_seed, start=1):  # seed-dependent noise: a real interval
        for r in result["rows"]:
            if r["key"] == "qwen3/teacher_free":
                for b in r["scores"].values():
                    for m in b.values():
                        m["mean"] += 0.001 * s * s
    table = tables.aggregate(per_seed)
    pairs = beyond.comparisons(table)
    assert ("qwen3/teacher_free", "qwen3/opsd", "what the privileged teacher carries") in pairs
    assert {v for v in beyond.VARIANTS if beyond.comparisons(table, v)} == set(beyond.VARIANTS)
    text = beyond.verdicts(table, "teacher-free")
    assert "**Teacher-free** − **OPSD**" in text and "interval" in text
    gaps = beyond.gap_frame(table)
    row = gaps[gaps["comparison"] == "Teacher-free − OPSD"].iloc[0]
    assert row["seeds"] == 3 and row["low"] < row["gap"] < row["high"] and row["high"] < 0
    assert beyond.plot_gaps(gaps).axes
    cost = beyond.teacher_cost_frame(per_seed)
    assert cost.loc["Teacher-free", "teacher s / step"] == 0.0
    assert cost.loc["OPSD", "teacher s / step"] == pytest.approx(1.0)  # mean of 0.5, 1, 1.5
    assert cost.loc["OPSD", "teacher share"] == pytest.approx(0.2)


def test_one_seed_gives_gaps_without_intervals_and_an_empty_variant_says_so():
    rows = beyond.beyond_rows(BeyondConfig(teachers=[]), None)
    table = tables.aggregate([_result(1, rows, {})])
    gaps = beyond.gap_frame(table)
    assert gaps["seeds"].eq(1).all() and gaps["low"].map(math.isnan).all()
    assert beyond.plot_gaps(gaps).axes
    assert "No rows of this variant" in beyond.verdicts(table, "teacher")
    assert "No diagnostic results" in beyond.fitted_sentence(None)
