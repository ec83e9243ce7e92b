"""The position-premise study: the toy world's dial, the matched-step control, the teacher-signal
position split, and how the section reads its results (issue 19).

Real parts where they fit: the toy route checker and pretraining stream with the shipped
tokenizer, a real two-step training run of PW-OPSD and of its matched-step control (HF
rollouts), the real AUROC orientation of a stored Table 1.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from pwopsd import premise, premise_report
from pwopsd.config import ConfigError, PositionPremiseConfig, SamplingConfig, get_profile
from pwopsd.toy import examples, task
from pwopsd.toy.teacher_signal import position_split, third_of
from pwopsd.train import RunSpec, train
from pwopsd.train.loop import matched_step_lr
from pwopsd.vocab import METRICS

PROFILE = get_profile("toy")


@pytest.fixture(scope="module")
def hf_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(PROFILE.main_model)


# ------------------------------------------------------------------ the dial


def _completion(text: str) -> str:
    """The completion of a pretraining example (after the assistant header), end token cut."""
    return text.split("<|im_start|>assistant\n")[-1].removesuffix("<|im_end|>")


def test_shortcut_examples_open_with_the_references_sum_and_are_valid_routes(hf_tok):
    rng = random.Random(0)
    mix = examples.Mixture(teacher_shortcut_share=1.0)
    seen = 0
    for _ in range(60):
        problem = task.sample_problem(rng, task.Difficulty(2, 5, 5))
        text, spans = examples.make_example(hf_tok, "teacher", problem, rng, mix)
        reference = text.split("=== Reference Solution Begin ===\n")[1].split("\n=== ")[0]
        completion = _completion(text)
        first = completion.splitlines()[0]
        m = task.FUSED_RE.match(first)
        assert m is not None, first
        a, b, c, d, s = map(int, m.groups())
        # the fused value is the reference's third line, the sum of its first two products
        assert reference.splitlines()[2] == f"{a * b}+{c * d}={s}" and s == a * b + c * d
        assert task.first_error(problem, completion) is None and task.consistent(completion)
        assert spans == []
        seen += 1
    assert seen == 60


def test_share_zero_never_writes_a_fused_line(hf_tok):
    rng = random.Random(1)
    for _ in range(200):
        problem = task.sample_problem(rng, task.Difficulty(1, 5, 5))
        text, _ = examples.make_example(hf_tok, "teacher", problem, rng, examples.Mixture())
        assert not any(task.FUSED_RE.match(x) for x in _completion(text).splitlines())


def test_share_zero_leaves_the_pretraining_stream_unchanged(hf_tok):
    """Share 0 draws nothing extra: the stream equals one built with the field left out of
    the kwargs (the shipped checkpoints' mixture), and differs from share 0.5."""
    shipped = examples.Mixture()
    dial = examples.Mixture(teacher_shortcut_share=0.5)

    def first_batches(mix, n=3):
        stream = examples.ExampleStream(hf_tok, seed=1, batch_size=4, mix=mix).batches()
        return [next(stream)[0] for _ in range(n)]

    explicit = examples.Mixture(**{**shipped.__dict__, "teacher_shortcut_share": 0.0})
    a, b, c = first_batches(shipped), first_batches(explicit), first_batches(dial)
    assert all(x.equal(y) for x, y in zip(a, b, strict=True))
    assert not all(x.shape == y.shape and x.equal(y) for x, y in zip(a, c, strict=True))


def test_route_checker_flags_a_wrong_fused_sum_at_its_value():
    problem = task.Problem(((3, 4), (7, 2), (5, 3)))
    assert task.first_error(problem, "3*4+7*2=26\n26+15=41\n\\boxed{41}") == len("3*4+7*2=26\n")
    wrong = "3*4+7*2=27\n"
    assert task.first_error(problem, wrong) == len("3*4+7*2=2")
    assert not task.consistent("3*4+7*2=27\n\\boxed{27}")
    assert task.first_error(problem, "3*4+7*2=26\n5*3=15\n26+15=41\n\\boxed{41}") is None


# ------------------------------------------------------------------ the matched-step control


def test_matched_step_rate_divides_by_the_mean_weight():
    assert matched_step_lr(1e-3, 0.25) == pytest.approx(4e-3)
    assert matched_step_lr(1e-3, None) == 1e-3 and matched_step_lr(1e-3, 0.0) == 1e-3


def test_matched_step_is_refused_for_a_method_without_position_weights():
    with pytest.raises(ConfigError, match="matched_step=True given for method 'opsd'"):
        RunSpec("opsd", overrides=(("matched_step", True),))


def _tiny(**extra):
    rollout = SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=32)
    base = (("prompts_per_step", 4), ("micro_batch", 2), ("max_steps", 2), ("save_every", 2),
            ("eval_step", 2), ("rollout_backend", "hf"), ("rollout", rollout))  # fmt: skip
    return base + tuple(extra.items())


def test_matched_step_run_takes_the_rate_over_the_mean_weight(tmp_path):
    """Two real steps of PW-OPSD Aggressive and of its matched-step control from the same seed:
    the first step's rollouts are identical, so its position weights are too, and the
    control's logged rate is the plain rate over the logged mean weight, at every step."""
    plain = RunSpec("pw_opsd", 1, schedule="aggressive", overrides=_tiny(), root=str(tmp_path))
    matched = RunSpec("pw_opsd", 1, schedule="aggressive",
                      overrides=_tiny(matched_step=True), root=str(tmp_path))  # fmt: skip
    assert plain.run_dir() != matched.run_dir()
    p, m = (
        [json.loads(x) for x in (train(spec, progress=False).run_dir / "metrics.jsonl").open()]
        for spec in (plain, matched)
    )
    assert p[0]["position_weight_mean"] == pytest.approx(m[0]["position_weight_mean"])
    assert p[0]["position_weight_mean"] < 0.9  # Aggressive: the weights really shrink
    assert m[0]["lr"] == pytest.approx(p[0]["lr"] / m[0]["position_weight_mean"], rel=1e-9)
    base_lr = [r["lr"] for r in p]
    for row, lr in zip(m, base_lr, strict=True):
        assert row["lr"] == pytest.approx(lr / row["position_weight_mean"], rel=1e-9)
    assert p[1]["loss"] != m[1]["loss"]  # a different first update


# ------------------------------------------------------------------ teacher-signal split


def test_third_of_splits_a_completion_into_three_equal_parts():
    assert [third_of(i, 6) for i in range(6)] == ["first"] * 2 + ["middle"] * 2 + ["last"] * 2
    assert third_of(0, 1) == "middle"  # a one-token completion sits at u = 0.5


def test_position_split_shares_and_wins_by_third():
    records = [
        {"fkl": [3.0, 0.0, 0.0, 0.0, 0.0, 1.0], "correct": True, "first_wrong": None},
        {"fkl": [0.0, 0.0, 2.0, 0.0, 0.0, 0.0], "correct": False, "first_wrong": 4,
         "lp_teacher": -5.0, "lp_student": -1.0},
        {"fkl": [0.0, 0.0, 0.0], "correct": False, "first_wrong": 0,
         "lp_teacher": -0.5, "lp_student": -1.0},
    ]  # fmt: skip
    split = position_split(records)
    assert split["first"]["fkl_share"] == pytest.approx(3 / 6)
    assert split["middle"]["fkl_share"] == pytest.approx(2 / 6)
    assert split["last"]["fkl_share"] == pytest.approx(1 / 6)
    assert split["last"]["first_wrong_teacher_wins"] == 1.0  # teacher gave the token less
    assert split["first"]["first_wrong_teacher_wins"] == 0.0
    assert (
        split["middle"]["n_first_wrong"] == 0
        and split["middle"]["first_wrong_teacher_wins"] is None
    )


# ------------------------------------------------------------------ the section


def test_config_refuses_a_dial_setting_without_a_checkpoint_and_other_profiles():
    with pytest.raises(ConfigError, match="dial contains 0.3"):
        PositionPremiseConfig(dial=[0.0, 0.3])
    with pytest.raises(ConfigError, match="exists only in the toy world"):
        PositionPremiseConfig(profile="paper")
    with pytest.raises(ConfigError, match="matched_schedules contains 'steep'"):
        PositionPremiseConfig(matched_schedules=["steep"])


def test_rows_per_setting_are_unique_and_use_that_settings_checkpoint():
    rows = premise.premise_rows(PositionPremiseConfig())
    keys = [r.key for r in rows]
    own = premise.own_recipe_rows(PositionPremiseConfig())  # present once the tuning is
    # + the share-0 controls of the sweep and the factorial, + the own-recipe rows
    assert len(keys) == len(set(keys)) == 3 * 6 + 3 + len(own)
    zero = {k for k in keys if k.startswith("dial0/") and k.endswith("_matched")}
    assert "dial0/position_global_moderate_matched" in zero and "dial0/pw_opsd_mild_matched" in zero
    for r in rows:
        share = r.factors["dial"]
        assert r.profile == ("toy" if share == 0 else f"toy-shortcut{share:g}")
        if r.run is not None:
            assert r.run.profile == r.profile
            assert dict(r.run.overrides).get("matched_step", False) == r.factors["matched_step"]
    models = {get_profile(r.profile).models["qwen3"] for r in rows}
    assert len(models) == 3
    # at share 0 the rows are the main table's runs (same directories, same evaluations)
    dial0 = {r.key: r.run for r in rows if r.factors["dial"] == 0 and r.run is not None}
    assert dial0["dial0/opsd"] == RunSpec("opsd", 1, "qwen3", None, "toy")


def test_position_auroc_is_oriented_early_as_the_paper_does():
    table1 = {"rows": [{"score": "position u = (i - 0.5) / L",
                        "orientation": "higher = later in the spine", "auroc": 0.62,
                        "ci_low": 0.56, "ci_high": 0.69, "n_real_uncertain": 19,
                        "n_diversity": 466}]}  # fmt: skip
    out = premise.position_auroc(table1)
    assert out["auroc_early"] == pytest.approx(0.38)
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(0.31), pytest.approx(0.44))
    assert out["n_candidates"] == 485
    # a row the diagnostic stores in the paper's orientation (its default) is read as it is
    from pwopsd.diagnostic.report import score_definitions

    name, words, _ = score_definitions("early")[0]
    early = {"rows": [{**table1["rows"][0], "score": name, "orientation": words,
                       "auroc": 0.38, "ci_low": 0.31, "ci_high": 0.44}]}  # fmt: skip
    out = premise.position_auroc(early)
    assert (out["auroc_early"], out["ci_low"], out["ci_high"]) == (0.38, 0.31, 0.44)


def _result(seed: int, gaps: dict[float, float]) -> dict:
    """A results file whose PW-OPSD Moderate row beats OPSD by ``gaps[share]`` points on
    every set and metric at each dial setting."""
    rows = []
    for share, gap in gaps.items():
        for key, value in (("opsd", 0.5), ("pw_opsd_moderate", 0.5 + gap / 100)):
            scores = {b: {m: {"mean": value + 0.01 * i} for m in METRICS}
                      for i, b in enumerate("abcd")}  # fmt: skip
            rows.append({"key": f"dial{share:g}/{key}", "label": key, "family": "qwen3",
                         "method": key, "run": key, "factors": {"dial": share},
                         "scores": scores})  # fmt: skip
    return {"section": "position_premise", "seed": seed, "dial": list(gaps),
            "benchmarks": [{"name": b} for b in "abcd"], "rows": rows}  # fmt: skip


def test_gap_frame_pairs_by_seed_and_the_verdict_follows_the_stated_reading():
    per_seed = [_result(1, {0.0: -4.0, 1.0: 3.0}), _result(2, {0.0: -2.0, 1.0: 5.0}),
                _result(3, {0.0: -3.0, 1.0: 4.0})]  # fmt: skip
    gaps = premise_report.gap_frame(per_seed, {"pw_opsd_moderate": "PW-OPSD Moderate"})
    at1 = gaps[gaps["shortcut share"] == 1.0].iloc[0]
    assert at1["gap"] == pytest.approx(4.0) and at1["seeds"] == 3
    assert at1["low"] == pytest.approx(4.0 - 4.302653 * 1.0 / 3**0.5, abs=1e-4)
    settings = {k: {"teacher_signal": {"by_third": {"first": {"fkl_share": v}},
                                       "wrong_over_correct_fkl": r}}
                for k, v, r in (("0", 0.2, 2.5), ("1", 0.6, 0.9))}  # fmt: skip
    text = premise_report.verdict(gaps, settings)
    assert "supports the premise" in text and "0.20 to 0.60 (up)" in text
    assert "from 2.50 to 0.90" in text
    # the same gaps without the early share rising do not support the premise
    flat_signal = {k: {"teacher_signal": {"by_third": {"first": {"fkl_share": 0.5}},
                                          "wrong_over_correct_fkl": 2.0}} for k in ("0", "1")}  # fmt: skip
    assert "does not settle it" in premise_report.verdict(gaps, flat_signal)
    # OPSD below the base model at the strongest setting is said
    gains = pd.DataFrame([{"shortcut share": 1.0, "row": "OPSD", "gap": -30.0, "low": -35.0,
                           "high": -25.0, "seeds": 3}])  # fmt: skip
    assert "OPSD itself falls below the base model" in premise_report.verdict(
        gaps, settings, gains=gains
    )
    flat = premise_report.gap_frame(
        [_result(s, {0.0: -3.0 - s, 1.0: -4.0 - s}) for s in (1, 2, 3)],
        {"pw_opsd_moderate": "PW-OPSD Moderate"},
    )
    assert "refutes the premise" in premise_report.verdict(flat, settings)
    legend = premise_report.plot_gaps(gaps).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["PW-OPSD Moderate"]
    assert list(gaps.columns) == ["shortcut share", "row", "gap", "low", "high", "seeds"]


# ------------------------------------------------------------------ per-method tuning


def test_method_spec_reads_run_names_and_names_an_unknown_one():
    from pwopsd.toy.recipe import method_spec

    assert method_spec("opsd") == ("opsd", None)
    assert method_spec("pw_opsd") == ("pw_opsd", None)
    assert method_spec("pw_opsd_aggressive") == ("pw_opsd", "aggressive")
    with pytest.raises(ValueError, match="'pw_opsd_steep' is not known"):
        method_spec("pw_opsd_steep")


def test_best_recipe_is_the_highest_mean_over_seeds_per_method():
    from pwopsd.toy.recipe import best_recipes

    rows = [
        {"method": "opsd", "candidate": "a", "overrides": {"learning_rate": 1e-3}, "avg": 0.80},
        {"method": "opsd", "candidate": "a", "overrides": {"learning_rate": 1e-3}, "avg": 0.70},
        {"method": "opsd", "candidate": "b", "overrides": {"learning_rate": 3e-3}, "avg": 0.76},
        {"method": "pw_opsd_aggressive", "candidate": "a", "overrides": {"learning_rate": 1e-3},
         "avg": 0.5},
        {"method": "pw_opsd_aggressive", "candidate": "b", "overrides": {"learning_rate": 3e-3},
         "avg": 0.6},
    ]  # fmt: skip
    best = best_recipes({"rows": rows})
    assert best["opsd"]["candidate"] == "b" and best["opsd"]["avg"] == pytest.approx(0.76)
    assert best["pw_opsd_aggressive"]["overrides"] == {"learning_rate": 3e-3}


def test_a_quick_look_writes_only_tagged_files_and_runs_of_its_own():
    """``-p max_problems 2 -p train_steps 2`` (a smoke run) never touches a full run's files:
    tagged results and measurements, its own run directories, a tagged diagnostic."""
    from pwopsd.config import DiagnosticConfig

    full, quick = PositionPremiseConfig(), PositionPremiseConfig(max_problems=2, train_steps=2)
    assert quick.results_file() != full.results_file()
    assert quick.results_file().name.startswith("position_premise.seed1.")
    assert premise.measurements_path(quick) != premise.measurements_path(full)
    assert premise.measurements_path(full).name == "dial_measurements.json"
    full_dirs = {r.run.run_dir() for r in premise.premise_rows(full) if r.run}
    quick_dirs = {r.run.run_dir() for r in premise.premise_rows(quick) if r.run}
    assert quick_dirs and not quick_dirs & full_dirs
    assert DiagnosticConfig(max_problems=2).results_file("table1").name != "table1.seed1.json"


def test_own_recipe_rows_follow_the_tuning_file(tmp_path, monkeypatch):
    from pwopsd.toy import recipe

    rows = [
        {"method": "opsd", "candidate": "profile", "overrides": {}, "avg": 0.9, "seed": 1},
        {"method": "pw_opsd_aggressive", "candidate": "noclip_lr3e-4",
         "overrides": {"tau_clip": None, "learning_rate": 3e-4}, "avg": 0.7, "seed": 1},
    ]  # fmt: skip
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(recipe, "PER_METHOD_PATH", path)
    own = {r.key: r for r in premise.own_recipe_rows(PositionPremiseConfig())}
    assert set(own) == {"dial0/opsd_own", "dial0/pw_opsd_aggressive_own"}
    cfg = own["dial0/pw_opsd_aggressive_own"].run.train_config()
    assert cfg.learning_rate == 3e-4 and cfg.tau_clip is None and cfg.eval_step == cfg.max_steps
    assert own["dial0/pw_opsd_aggressive_own"].run.schedule == "aggressive"
    assert "noclip_lr3e-4" in own["dial0/pw_opsd_aggressive_own"].label
    frame = premise_report.tuning_frame(path)
    assert list(frame.columns) == ["OPSD", "PW-OPSD Aggressive"]
    assert frame.loc["noclip_lr3e-4", "PW-OPSD Aggressive"] == pytest.approx(70.0)
    monkeypatch.setattr(recipe, "PER_METHOD_PATH", tmp_path / "missing.json")
    assert premise.own_recipe_rows(PositionPremiseConfig()) == []
