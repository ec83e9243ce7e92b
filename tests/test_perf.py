"""Performance and Reproduce pages: benchmark ratios, settings tables, notebook wall times and
the paper-scale cost arithmetic (issue 12)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pwopsd import perf
from pwopsd.config import (
    NOTEBOOK_CONFIGS,
    CrossModelConfig,
    MainTableConfig,
    ReductionFactorialConfig,
    ScheduleSweepConfig,
    get_profile,
)
from pwopsd.vocab import BENCHMARK_LABELS, FAMILIES, PAPER_BENCHMARKS, PAPER_MODEL_LABELS
from tests.conftest import REPO_ROOT

GIB = 2**30


def _impl(seconds: float, base_gib: float, peak_gib: float, err: float = 0.0) -> dict:
    return {
        "seconds": seconds,
        "baseline_rss_bytes": int(base_gib * GIB),
        "peak_rss_bytes": int(peak_gib * GIB),
        "warmup_seconds": 1.0,
        "loss": 0.3,
        "max_rel_grad_err": err,
    }


LOSS_BENCH = {
    "config": {"vocab": 151_936, "batch": 2, "row_lengths": [1024, 1024], "compile": True},
    "impls": {
        "oracle": _impl(10.0, 1.0, 9.0),  # 8 GiB above inputs
        "oracle_linear": _impl(20.0, 0.5, 10.5),  # 10 GiB above inputs
        "chunked": _impl(2.0, 1.0, 3.0, 1e-6),  # 2 GiB above inputs
        "fused_linear": _impl(16.0, 0.5, 1.0, 2e-6),  # 0.5 GiB above inputs
        "triton": {"error": "worker exit 1"},
    },
    "targets": {
        "chunked_speedup": {"value": 5.0, "target": ">= 2", "met": True},
        "fused_linear_memory_ratio": {"value": 0.05, "target": "<= 0.10", "met": True},
    },
}


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.324903, "5.32"), (0.947689, "0.948"), (19.0, "19.0"), (185.34, "185"),
     (6503.279, "6,503"), (0, "0"), (None, "n/a")],
)  # fmt: skip
def test_fmt_sig_three_significant_figures(value, text):
    assert perf.fmt_sig(value) == text


def test_ratio_and_percent_formats():
    assert perf.fmt_ratio(12.34) == "12.3x"
    assert perf.fmt_percent(0.41) == "41.0%"
    assert perf.fmt_percent(0.0781944) == "7.82%"


# ------------------------------------------------------------------ loss benchmark


def test_loss_ratios_match_hand_computation():
    ratios = perf.loss_ratios(LOSS_BENCH)
    assert set(ratios.index) == {"chunked", "fused_linear"}  # references and failures left out
    assert ratios.loc["chunked", "reference"] == "oracle"
    assert ratios.loc["chunked", "speedup"] == pytest.approx(10.0 / 2.0)
    assert ratios.loc["chunked", "memory_fraction"] == pytest.approx(2.0 / 8.0)
    assert ratios.loc["fused_linear", "reference"] == "oracle_linear"
    assert ratios.loc["fused_linear", "speedup"] == pytest.approx(20.0 / 16.0)
    assert ratios.loc["fused_linear", "memory_fraction"] == pytest.approx(0.5 / 10.0)


def test_loss_ratios_use_cuda_memory_when_measured():
    bench = json.loads(json.dumps(LOSS_BENCH))
    bench["impls"]["oracle"] |= {"baseline_cuda_bytes": 100, "peak_cuda_bytes": 1100}
    bench["impls"]["chunked"] |= {"baseline_cuda_bytes": 100, "peak_cuda_bytes": 350}
    assert perf.loss_ratios(bench).loc["chunked", "memory_fraction"] == pytest.approx(0.25)
    bench["impls"]["chunked"]["peak_cuda_bytes"] = 600
    assert perf.loss_ratios(bench).loc["chunked", "memory_fraction"] == pytest.approx(0.5)


def test_loss_table_is_formatted_and_names_failures():
    table = perf.loss_table(LOSS_BENCH)
    assert table.loc["chunked", "speed-up"] == "5.00x"
    assert table.loc["chunked", "memory fraction"] == "25.0%"
    assert table.loc["fused linear", "speed-up"] == "1.25x"
    assert table.loc["fused linear", "memory fraction"] == "5.00%"
    assert table.loc["chunked", "max rel. gradient error"] == "1.00e-06"
    assert "failed" in table.loc["Triton", "time (s)"]
    assert len(table) == len(LOSS_BENCH["impls"])


def test_loss_targets_table_formats_values():
    targets = perf.loss_targets_table(LOSS_BENCH)
    assert targets.loc["chunked: speed-up", "measured"] == "5.00x"
    assert targets.loc["fused linear: memory fraction", "measured"] == "5.00%"
    assert set(targets["met"]) == {"yes"}


def test_plot_loss_ratios_draws_one_bar_per_compared_implementation():
    fig = perf.plot_loss_ratios(LOSS_BENCH)
    speed, mem = fig.axes
    assert len(speed.patches) == len(mem.patches) == 2
    assert sorted(p.get_width() for p in speed.patches) == pytest.approx([1.25, 5.0])
    assert sorted(p.get_width() for p in mem.patches) == pytest.approx([5.0, 25.0])


# ------------------------------------------------------------------ settings tables


def test_settings_frame_one_row_per_setting_and_no_dict_literals():
    settings = {
        "vocab": 151_936,
        "compile": True,
        "row_lengths": [1024, 512],
        "sampling": {"temperature": 1.1, "top_k": 20, "nested": {"a": None}},
        "model": str(REPO_ROOT / "checkpoints" / "toy-qwen3"),
    }
    frame = perf.settings_frame(settings, {"vocab": "vocabulary size V"})
    assert len(frame) == 7  # vocab, compile, row_lengths, 3 leaves under sampling, model
    cells = [str(c) for c in frame.index] + [str(v) for v in frame["value"]]
    assert not any("{" in c or "}" in c for c in cells)
    assert frame.loc["vocabulary size V", "value"] == "151,936"
    assert frame.loc["compile", "value"] == "yes"
    assert frame.loc["row lengths", "value"] == "1,024, 512"
    assert frame.loc["sampling / top k", "value"] == "20"
    assert frame.loc["sampling / nested / a", "value"] == "none"
    assert frame.loc["model", "value"] == "checkpoints/toy-qwen3"


def test_settings_frame_of_the_committed_loss_config():
    bench = json.loads((REPO_ROOT / "results" / "bench" / "loss.json").read_text())
    frame = perf.settings_frame(bench["config"], perf.LOSS_SETTING_LABELS)
    assert len(frame) == len(bench["config"])
    assert not any("{" in str(v) for v in frame["value"])


def test_provenance_line_names_machine_commit_and_date():
    doc = {
        "provenance": {
            "git_commit": "0123456789abcdef0123-dirty",
            "hardware": {"cpu_count": 2, "memory_gib": 23.6, "processor": ""},
            "wall_seconds": 378.6,
            "written_at": "2026-11-27T15:58:29+00:00",
        }
    }
    line = perf.provenance_line(doc)
    assert "2 CPUs, 23.6 GiB RAM" in line
    assert "`0123456789ab` (uncommitted changes)" in line
    assert "2026-11-27 15:58 UTC" in line
    assert "6.31 min" in line


# ------------------------------------------------------------------ rollout and grading


def _rollout(ratio_64: float) -> dict:
    return {
        "batches": {
            "64": {"engine_tokens_per_s": 6000.0 * ratio_64, "hf_tokens_per_s": 6000.0},
            "8": {"engine_tokens_per_s": 1000.0, "hf_tokens_per_s": 2000.0},
        }
    }


def test_rollout_ratio_and_verdict_against_the_target():
    bench = _rollout(1.0)
    frame = perf.rollout_frame(bench)
    assert list(frame.index) == [8, 64]
    assert frame.loc[8, "ratio"] == pytest.approx(0.5)
    verdict = perf.rollout_verdict(bench)
    assert "0.500x the tokens/s of HF generate at batch 8" in verdict
    assert "1.00x at batch 64" in verdict
    assert "target is 8x" in verdict and "not met" in verdict
    assert "met at batch 64" in perf.rollout_verdict(_rollout(9.0))


def test_rollout_table_formats_and_tolerates_missing_token_counts():
    table = perf.rollout_table(_rollout(1.0))
    assert table.loc[64, "engine / HF"] == "1.00x"
    assert table.loc[8, "vLLM engine (tokens/s)"] == "1,000"
    assert table.loc[8, "tokens generated (engine, HF)"] == "n/a, n/a"


def test_adapter_table_and_sentence_read_the_adapter_block():
    bench = _rollout(1.0)
    assert perf.adapter_table(bench) is None
    assert "not measured" in perf.adapter_sentence(bench)
    bench["adapter"] = {
        "batch": 64,
        "lora_r": 16,
        "merged_tokens_per_s": 9000.0,
        "lora_request_tokens_per_s": 3000.0,
        "hf_peft_tokens_per_s": 4500.0,
        "merged_over_lora_request": 3.0,
        "merged_over_hf_peft": 2.0,
        "switch_seconds": 0.25,
    }
    table = perf.adapter_table(bench)
    assert list(table["vs HF generate"]) == ["2.00x", "0.667x", "1.00x"]
    assert table.iloc[0]["tokens/s"] == "9,000"
    sentence = perf.adapter_sentence(bench)
    assert "rank-16 adapter at batch 64" in sentence
    assert "3.00x the tokens/s of serving it as a LoRARequest" in sentence
    assert "took 0.250 s" in sentence


def test_plot_rollout_groups_two_bars_per_batch():
    fig = perf.plot_rollout(_rollout(1.0))
    assert len(fig.axes[0].patches) == 4


def test_grading_table_speedup():
    bench = {
        "workers": 2,
        "serial_samples_per_s": 100.0,
        "pool_samples_per_s": 180.0,
        "serial_cpu_ms_per_sample": 5.0,
        "pool_cpu_ms_per_sample": 5.5,
        "serial_cores_used": 1.0,
        "pool_cores_used": 1.9,
    }
    table = perf.grading_table(bench)
    assert table.loc["process pool (2 workers)", "speed-up"] == "1.80x"
    assert table.loc["serial (this process)", "samples/s"] == "100"


# ------------------------------------------------------------------ notebook wall times


def _write(path: Path, seed: int | None, wall: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = {
        "profile": "toy",
        "seed": seed,
        "git_commit": "abc",
        "hardware": {"cpu_count": 2, "memory_gib": 8.0},
        "wall_seconds": wall,
        "written_at": "2026-11-30T06:04:21+00:00",
    }
    path.write_text(json.dumps({"provenance": prov}))


def test_notebook_runs_one_row_per_file_and_totals_per_seed(tmp_path):
    toy = tmp_path / "results" / "toy"
    _write(toy / "main_table" / "main_table.seed1.json", 1, 600.0)
    _write(toy / "main_table" / "main_table.seed2.json", 2, 900.0)
    _write(toy / "schedule_sweep" / "schedule_sweep.seed1.json", 1, 120.0)
    _write(toy / "diagnostic" / "diagnostic.json", 1, 60.0)
    # not rows: a scaled run, the diagnostic's side files, an executed notebook, a stray section
    _write(toy / "main_table" / "main_table.seed1.max_problems2.json", 1, 5.0)
    _write(toy / "diagnostic" / "table1.json", 1, 60.0)
    (toy / "main_table" / "main_table.seed1.executed.ipynb").write_text("{}")
    _write(toy / "other" / "other.seed1.json", 1, 5.0)

    runs = perf.notebook_runs(toy)
    assert len(runs) == 4
    assert list(zip(runs["seed"], runs["section"])) == [
        (1, "diagnostic"), (1, "main_table"), (1, "schedule_sweep"), (2, "main_table"),
    ]  # fmt: skip
    assert runs.set_index(["seed", "section"]).loc[(2, "main_table"), "command"] == (
        "make main_table SEED=2"
    )
    assert set(runs["machine"]) == {"2 CPUs, 8.0 GiB RAM"}

    totals = perf.wall_time_per_seed(runs)
    assert totals.loc[1, "total wall time (min)"] == pytest.approx((600 + 120 + 60) / 60, abs=0.05)
    assert totals.loc[2, "total wall time (min)"] == pytest.approx(900 / 60, abs=0.05)
    assert totals.loc[1, "notebooks with results"] == f"3 of {len(perf.SECTIONS)}"
    assert totals.loc[2, "not yet run"] == ", ".join(s for s in perf.SECTIONS if s != "main_table")
    shown = perf.notebook_runs_table(runs)
    assert "wall_seconds" not in shown.columns
    # One machine: named once in a sentence, not repeated in every row; sections by title.
    assert "machine" not in shown.columns
    assert perf.machines_sentence(runs) == "Every run used one machine: 2 CPUs, 8.0 GiB RAM."
    assert (2, "Main table") in shown.index
    assert set(shown["load (15-min mean at end)"]) == {"-"}  # these files predate the load


def test_runs_on_two_machines_keep_the_machine_column(tmp_path):
    toy = tmp_path / "toy"
    _write(toy / "main_table" / "main_table.seed1.json", 1, 600.0)
    _write(toy / "main_table" / "main_table.seed2.json", 2, 600.0)
    doc = json.loads((toy / "main_table" / "main_table.seed2.json").read_text())
    doc["provenance"] |= {"hardware": {"cpu_count": 16}, "load_average": [0.5, 0.4, 0.3]}
    (toy / "main_table" / "main_table.seed2.json").write_text(json.dumps(doc))
    runs = perf.notebook_runs(toy)
    assert perf.machines_sentence(runs) == ""
    shown = perf.notebook_runs_table(runs)
    assert list(shown["machine"]) == ["2 CPUs, 8.0 GiB RAM", "16 CPUs"]
    assert list(shown["load (15-min mean at end)"]) == ["-", 0.3]


def test_notebook_runs_prefers_a_seeded_diagnostic_file(tmp_path):
    toy = tmp_path / "toy"
    _write(toy / "diagnostic" / "diagnostic.json", 2, 60.0)
    _write(toy / "diagnostic" / "diagnostic.seed2.json", 2, 90.0)
    _write(toy / "diagnostic" / "diagnostic.seed3.json", None, 30.0)
    runs = perf.notebook_runs(toy)
    assert list(runs["seed"]) == [2, 3]
    assert list(runs["wall_seconds"]) == [90.0, 30.0]


def test_notebook_runs_with_no_results(tmp_path):
    runs = perf.notebook_runs(tmp_path / "toy")
    assert runs.empty
    assert perf.wall_time_per_seed(runs).empty
    assert perf.notebook_runs_table(runs).empty


# ------------------------------------------------------------------ paper-scale cost


def test_training_cost_arithmetic_and_reuse():
    rows = {
        "a": [("qwen3", "base"), ("qwen3", "opsd"), ("qwen3", "pw")],
        "b": [("qwen3", "opsd"), ("qwen3", "x"), ("llama", "opsd")],
    }
    protocol = {"optimizer_steps": 100, "gpus_per_run": 2, "models": {"qwen3": "Q", "llama": "L"}}
    estimates = {"train_seconds_per_step": {"qwen3": 36, "llama": 72}}
    cost = perf.paper_training_cost(rows, protocol, estimates).set_index(["section", "model"])
    assert cost.loc[("a", "Q"), "new runs"] == 2  # base is not trained
    assert cost.loc[("a", "Q"), "GPU-hours"] == pytest.approx(2 * 100 * 36 * 2 / 3600)
    assert cost.loc[("b", "Q"), "runs in the table"] == 2
    assert cost.loc[("b", "Q"), "new runs"] == 1  # opsd was trained by section a
    assert cost.loc[("b", "Q"), "GPU-hours"] == pytest.approx(1 * 100 * 36 * 2 / 3600)
    assert cost.loc[("b", "L"), "GPU-hours"] == pytest.approx(1 * 100 * 72 * 2 / 3600)


def test_eval_cost_arithmetic():
    rows = {"a": [("qwen3", "base"), ("qwen3", "opsd")], "b": [("qwen3", "opsd")]}
    protocol = {
        "eval_seeds": 3,
        "eval_samples_per_problem": 12,
        "benchmark_problems": {"m": 10, "h": 2},
        "models": {"qwen3": "Q"},
    }
    estimates = {
        "eval_mean_tokens": {"m": 100, "h": 1000},
        "eval_tokens_per_s_per_gpu": {"qwen3": 50},
    }
    tokens = 3 * 12 * (10 * 100 + 2 * 1000)
    assert perf.eval_tokens_per_checkpoint(protocol, estimates) == tokens
    cost = perf.paper_eval_cost(rows, protocol, estimates).set_index("section")
    assert cost.loc["a", "samples per checkpoint"] == 3 * 12 * 12
    assert cost.loc["a", "GPU-hours"] == pytest.approx(2 * tokens / 50 / 3600)
    assert cost.loc["b", "new checkpoints"] == 0
    assert cost.loc["b", "GPU-hours"] == 0


def test_default_paper_cost_matches_a_hand_computation():
    est = perf.OUR_ESTIMATES
    steps, gpus = 150, 4  # PROTOCOL section 3
    # main table trains OPSD, EOPD, REOPOLD, PW-OPSD Moderate and Aggressive on Qwen3-4B
    train_main = 5 * steps * est["train_seconds_per_step"]["qwen3"] * gpus / 3600
    cost = perf.paper_training_cost().set_index(["section", "model"])
    assert cost.loc[("main_table", "Qwen3-4B"), "GPU-hours"] == pytest.approx(train_main)
    # the sweep adds Mild and Sharp; the factorial adds its two mixed cells
    assert cost.loc[("schedule_sweep", "Qwen3-4B"), "new runs"] == 2
    assert cost.loc[("reduction_factorial", "Qwen3-4B"), "new runs"] == 2
    assert cost.loc[("cross_model", "Qwen3-4B"), "new runs"] == 0
    # evaluation: 3 seeds x 12 samples x (500 + 30 + 30 + 30) problems (PROTOCOL section 4)
    m = est["eval_mean_tokens"]
    tokens = 3 * 12 * (500 * m["math500"] + 30 * (m["aime24"] + m["aime25"] + m["hmmt25"]))
    assert perf.eval_tokens_per_checkpoint() == tokens
    assert perf.eval_tokens_at_budget() == 3 * 12 * 590 * 38_912
    summary = perf.paper_cost_summary()
    total = (
        perf.paper_training_cost()["GPU-hours"].sum()
        + perf.paper_eval_cost()["GPU-hours"].sum()
        + perf.paper_diagnostic_cost()["GPU-hours"].sum()
    )
    assert summary.loc["all sections", "total GPU-hours"] == pytest.approx(total)
    # the paper's sections only: the studies beyond the paper have no paper-scale cost here
    paper = [s for s in perf.SECTIONS if s in ("diagnostic", *perf.PAPER_SECTIONS)]
    assert list(summary.index) == [*paper, "all sections"]


def test_diagnostic_cost_arithmetic():
    from pwopsd.config import DiagnosticConfig

    cfg = DiagnosticConfig(max_problems=10, candidates_per_problem=2, children_per_candidate=2,
                           rollouts_per_child=3, pools=["math500", "aime24"])  # fmt: skip
    est = {
        "eval_mean_tokens": {"math500": 1000, "aime24": 3000},
        "eval_tokens_per_s_per_gpu": {"qwen3": 100},
        "diagnostic_continuation_fraction": 0.5,
    }
    row = perf.paper_diagnostic_cost(cfg, est).iloc[0]
    assert row["continuations (at most)"] == 10 * 2 * 2 * 3
    spine = 2000
    assert row["GPU-hours"] == pytest.approx((10 * spine + 120 * spine * 0.5) / 100 / 3600)


def test_protocol_constants_match_the_paper_profile():
    p = get_profile("paper")
    c = perf.PROTOCOL_PAPER
    assert c["optimizer_steps"] == p.train.max_steps
    assert c["prompts_per_step"] == p.train.prompts_per_step
    assert c["max_completion_tokens"] == p.train.rollout.max_new_tokens
    assert c["eval_samples_per_problem"] == p.eval_sampling.n
    assert c["eval_max_new_tokens"] == p.eval_sampling.max_new_tokens
    assert list(c["benchmark_problems"]) == [b.name for b in p.benchmarks]
    assert set(c["models"]) == set(p.models)
    assert p.models["qwen3"].endswith(c["models"]["qwen3"])


def test_protocol_constants_are_stated_in_protocol():
    path = REPO_ROOT.parent / "shared" / "reference" / "PROTOCOL.md"
    if not path.exists():
        pytest.skip("PROTOCOL.md not found")
    text = " ".join(path.read_text().split())
    c = perf.PROTOCOL_PAPER
    assert f"{c['optimizer_steps']} optimizer steps" in text
    assert f"Effective batch {c['prompts_per_step']} prompts" in text
    assert f"{c['gpus_per_run']}x {c['gpu']}" in text
    assert f"max_completion_length {c['max_completion_tokens']}" in text
    assert f"n = {c['eval_samples_per_problem']} samples per problem" in text
    assert f"max_new_tokens {c['eval_max_new_tokens']:,}" in text
    assert "Three evaluation seeds" in text and c["eval_seeds"] == 3
    for name, n in {"MATH-500": 500, "aime_2024": 30, "aime_2025": 30}.items():
        assert c["benchmark_problems"][{"MATH-500": "math500", "aime_2024": "aime24",
                                        "aime_2025": "aime25"}[name]] == n  # fmt: skip
        assert f"{name} (" in text


def test_section_rows_match_the_section_configs():
    rows = perf.PAPER_SECTION_ROWS

    def runs(method: str, schedule: str | None) -> str:
        return f"pw_opsd_{schedule}" if method == "pw_opsd" else method

    main = MainTableConfig()
    expected = [
        runs(m, s) for m in main.methods for s in (main.schedules if m == "pw_opsd" else [None])
    ]
    assert [r for _, r in rows["main_table"]] == expected
    sweep = ScheduleSweepConfig()
    assert [r for _, r in rows["schedule_sweep"]] == ["opsd"] + [
        f"pw_opsd_{s}" for s in sweep.schedules
    ]
    cross = CrossModelConfig()
    assert rows["cross_model"] == [
        (f, runs(m, cross.schedule)) for f in cross.families for m in cross.methods
    ]
    factorial = ReductionFactorialConfig()
    assert len(rows["reduction_factorial"]) == len(factorial.weightings) * len(factorial.reductions)
    assert {"opsd", f"pw_opsd_{factorial.schedule}"} <= {r for _, r in rows["reduction_factorial"]}
    assert list(rows) == [s for s in perf.TABLE_SECTIONS if s in perf.PAPER_SECTIONS]


def test_cost_plan_names_come_from_the_vocabulary():
    c, est = perf.PROTOCOL_PAPER, perf.OUR_ESTIMATES
    assert c["models"] == PAPER_MODEL_LABELS
    assert list(c["benchmark_problems"]) == list(PAPER_BENCHMARKS)
    assert list(est["eval_mean_tokens"]) == list(PAPER_BENCHMARKS)
    for per_family in (est["train_seconds_per_step"], est["eval_tokens_per_s_per_gpu"]):
        assert list(per_family) == list(FAMILIES)
    for b in PAPER_BENCHMARKS:
        assert perf.COST_LABELS[b] == BENCHMARK_LABELS[b]
    assert perf.SECTIONS == tuple(NOTEBOOK_CONFIGS)
    assert perf.TABLE_SECTIONS == perf.SECTIONS[1:]


def test_perf_package_defines_each_name_once():
    """Each module of the package has its own names; ``pwopsd.perf`` only re-exports them."""
    homes: dict[str, str] = {}
    for path in sorted((REPO_ROOT / "pwopsd" / "perf").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__"]
            else:
                continue
            for name in names:
                assert name not in homes, f"{name} defined in {homes.get(name)} and {path.name}"
                homes[name] = path.name
    assert "__init__.py" not in homes.values()
    assert set(perf.__all__) == {n for n in homes if not n.startswith("_")}
