"""The planned cost at paper scale, with every step of the arithmetic on the page.

GPU-hours of training, evaluation and the diagnostic per section and model, from
:data:`PROTOCOL_PAPER` (numbers from PROTOCOL.md) and :data:`OUR_ESTIMATES` (what PROTOCOL does
not give). The rows each section needs (:data:`PAPER_SECTION_ROWS`) come from the section
configs' defaults; a run an earlier section trained is counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pwopsd.config import NOTEBOOK_CONFIGS, DiagnosticConfig, TableSectionConfig
from pwopsd.perf.walltimes import SECTIONS
from pwopsd.sections import section_rows as rows_of
from pwopsd.vocab import (
    BENCHMARK_LABELS,
    FAMILIES,
    MAIN_FAMILY,
    PAPER_BENCHMARKS,
    PAPER_MODEL_LABELS,
    SECTION_TITLES,
)

PROTOCOL_PAPER: dict[str, Any] = {
    # PROTOCOL section 3 (Training, paper profile):
    #   "150 optimizer steps", "Effective batch 32 prompts, one rollout each",
    #   "bf16, gradient checkpointing, DeepSpeed ZeRO-2 via accelerate, 4x H100 80GB",
    #   rollout "max_completion_length 1024". Every training run uses the same budget.
    "optimizer_steps": 150,
    "prompts_per_step": 32,
    "gpus_per_run": 4,
    "gpu": "H100 80GB",
    "max_completion_tokens": 1024,
    # PROTOCOL section 4 (Evaluation): "n = 12 samples per problem", "max_new_tokens 38,912",
    # "Three evaluation seeds", benchmarks MATH-500 (500), AIME 2024 (30), AIME 2025 (30),
    # HMMT February 2025 (30).
    "eval_samples_per_problem": 12,
    "eval_seeds": 3,
    "eval_max_new_tokens": 38_912,
    "benchmark_problems": {"math500": 500, "aime24": 30, "aime25": 30, "hmmt25": 30},
    # PROTOCOL section 3: Qwen3-4B (main), DeepSeek-R1-Distill-Llama-8B, Olmo-3-7B-Think.
    "models": dict(PAPER_MODEL_LABELS),
}
"""The paper's budgets, copied from ../shared/reference/PROTOCOL.md sections 3 and 4 (tests
check them against ``pwopsd.config``'s paper profile)."""


PAPER_SECTIONS = ("main_table", "schedule_sweep", "cross_model", "reduction_factorial")
"""The paper's table sections; the sections beyond the paper (position premise: toy only;
beyond) are not part of its cost."""


def section_rows() -> dict[str, list[tuple[str, str]]]:
    """Per table section, its (family, run) rows at the paper profile, exactly as
    :func:`pwopsd.sections.section_rows` builds them from the section configs' defaults
    (PROTOCOL section 6, the published rows; section 2, the four schedules and the 2x2
    reduction factorial). "base" is the untrained model, evaluated but not trained."""
    return {
        name: [
            (r.family, "base" if r.run is None else r.run.name)
            for r in rows_of(cls(profile="paper"))
        ]
        for name, cls in NOTEBOOK_CONFIGS.items()
        if issubclass(cls, TableSectionConfig) and name in PAPER_SECTIONS
    }


PAPER_SECTION_ROWS: dict[str, list[tuple[str, str]]] = section_rows()
"""The rows (checkpoints) each table section evaluates at paper scale, in ``make`` order. A
run that an earlier section trained is reused, not retrained; the same holds for evaluations."""

OUR_ESTIMATES: dict[str, Any] = {
    # Seconds per optimizer step of one run on its 4 GPUs. PROTOCOL gives no time. Our
    # estimate: colocated vLLM samples 8 rollouts of up to 1,024 tokens per GPU (~20-30 s for a
    # 4B model, about twice that for 7-8B), the teacher and student passes with gradient
    # checkpointing take a few seconds, the LoRA merge and weight push ~5-10 s.
    "train_seconds_per_step": {"qwen3": 45, "llama": 80, "olmo3": 75},
    # Mean generated tokens per evaluation sample (thinking mode). PROTOCOL gives only the
    # 38,912-token budget. Our estimate: reasoning models write a few thousand tokens on
    # MATH-500 and 13-16 thousand on the competition sets.
    "eval_mean_tokens": {"math500": 4_000, "aime24": 13_000, "aime25": 14_000, "hmmt25": 16_000},
    # Evaluation decode throughput of vLLM on one H100, bf16, up to 256 sequences at a time,
    # long contexts (generated tokens/s). Our estimate.
    "eval_tokens_per_s_per_gpu": {"qwen3": 6_000, "llama": 3_500, "olmo3": 3_500},
    # Diagnostic: a continuation starts at a candidate inside the spine, so it writes on
    # average this fraction of a spine's length. Our estimate.
    "diagnostic_continuation_fraction": 0.5,
}
"""What PROTOCOL does not give, labelled "our estimate" wherever it is shown."""

COST_LABELS = {
    "optimizer_steps": "optimizer steps per run",
    "prompts_per_step": "prompts per step (one rollout each)",
    "gpus_per_run": "GPUs per training run",
    "gpu": "GPU",
    "max_completion_tokens": "rollout budget (tokens)",
    "eval_samples_per_problem": "evaluation samples per problem",
    "eval_seeds": "evaluation seeds",
    "eval_max_new_tokens": "evaluation budget (tokens per sample)",
    "benchmark_problems": "problems",
    **{
        f"models / {family}": ("main model" if family == MAIN_FAMILY else "cross-model")
        + f" (family {family})"
        for family in FAMILIES
    },
    "train_seconds_per_step": "seconds per optimizer step",
    "eval_mean_tokens": "mean tokens per evaluation sample",
    "eval_tokens_per_s_per_gpu": "generated tokens/s on one GPU",
    "diagnostic_continuation_fraction": "diagnostic: continuation length / spine length",
    **{b: BENCHMARK_LABELS[b] for b in PAPER_BENCHMARKS},
    **PAPER_MODEL_LABELS,
}
"""Readable names for :data:`PROTOCOL_PAPER` and :data:`OUR_ESTIMATES` on the page."""

PROTOCOL_SOURCES = {
    "optimizer_steps": "PROTOCOL section 3",
    "prompts_per_step": "PROTOCOL section 3",
    "gpus_per_run": "PROTOCOL section 3",
    "gpu": "PROTOCOL section 3",
    "max_completion_tokens": "PROTOCOL section 3",
    "eval_samples_per_problem": "PROTOCOL section 4",
    "eval_seeds": "PROTOCOL section 4",
    "eval_max_new_tokens": "PROTOCOL section 4",
    "benchmark_problems": "PROTOCOL section 4",
    "models": "PROTOCOL section 3",
}
"""Where each entry of :data:`PROTOCOL_PAPER` is stated."""


def new_rows(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
) -> dict[str, list[tuple[str, str]]]:
    """Per section, the rows no earlier section (in the mapping's order) already has."""
    seen: set[tuple[str, str]] = set()
    out = {}
    for section, rows in section_rows.items():
        out[section] = [r for r in rows if r not in seen]
        seen.update(rows)
    return out


def paper_training_cost(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
) -> pd.DataFrame:
    """GPU-hours of training per section and model: new runs x steps x seconds per step x GPUs
    (one training seed)."""
    steps, gpus = protocol["optimizer_steps"], protocol["gpus_per_run"]
    fresh = new_rows(section_rows)
    rows = []
    for section, all_rows in section_rows.items():
        for family in dict.fromkeys(f for f, _ in all_rows):
            trained = [r for f, r in all_rows if f == family and r != "base"]
            new = [r for f, r in fresh[section] if f == family and r != "base"]
            sec = estimates["train_seconds_per_step"][family]
            rows.append(
                {
                    "section": section,
                    "model": protocol["models"][family],
                    "runs in the table": len(trained),
                    "new runs": len(new),
                    "steps per run": steps,
                    "s per step (our estimate)": sec,
                    "GPUs per run": gpus,
                    "arithmetic": f"{len(new)} x {steps} x {sec} s x {gpus} GPUs / 3600",
                    "GPU-hours": len(new) * steps * sec * gpus / 3600,
                }
            )
    return pd.DataFrame(rows)


def eval_tokens_per_checkpoint(
    protocol: Mapping[str, Any] = PROTOCOL_PAPER, estimates: Mapping[str, Any] = OUR_ESTIMATES
) -> float:
    """Generated tokens to evaluate one checkpoint: seeds x samples x sum over benchmarks of
    problems x mean tokens per sample."""
    per_seed_sample = sum(
        n * estimates["eval_mean_tokens"][b] for b, n in protocol["benchmark_problems"].items()
    )
    return protocol["eval_seeds"] * protocol["eval_samples_per_problem"] * per_seed_sample


def eval_tokens_at_budget(protocol: Mapping[str, Any] = PROTOCOL_PAPER) -> int:
    """Generated tokens to evaluate one checkpoint if every sample used the whole budget."""
    problems = sum(protocol["benchmark_problems"].values())
    return (
        protocol["eval_seeds"]
        * protocol["eval_samples_per_problem"]
        * problems
        * protocol["eval_max_new_tokens"]
    )


def paper_eval_cost(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
) -> pd.DataFrame:
    """GPU-hours of evaluation per section and model: new checkpoints x tokens per checkpoint /
    tokens/s of one GPU."""
    samples = (
        protocol["eval_seeds"]
        * protocol["eval_samples_per_problem"]
        * sum(protocol["benchmark_problems"].values())
    )
    tokens = eval_tokens_per_checkpoint(protocol, estimates)
    fresh = new_rows(section_rows)
    rows = []
    for section, all_rows in section_rows.items():
        for family in dict.fromkeys(f for f, _ in all_rows):
            new = [r for f, r in fresh[section] if f == family]
            speed = estimates["eval_tokens_per_s_per_gpu"][family]
            rows.append(
                {
                    "section": section,
                    "model": protocol["models"][family],
                    "checkpoints in the table": sum(f == family for f, _ in all_rows),
                    "new checkpoints": len(new),
                    "samples per checkpoint": samples,
                    "tokens per checkpoint (our estimate)": tokens,
                    "tokens/s per GPU (our estimate)": speed,
                    "arithmetic": f"{len(new)} x {tokens / 1e6:.1f}M tokens / {speed:,} tok/s "
                    "/ 3600",
                    "GPU-hours": len(new) * tokens / speed / 3600,
                }
            )
    return pd.DataFrame(rows)


def paper_diagnostic_cost(
    config: DiagnosticConfig | None = None,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
) -> pd.DataFrame:
    """GPU-hours of the diagnostic's sampling (spines, then at most problems x candidates x
    children x rollouts continuations) on one GPU with the main model; the teacher forwards
    are small beside it. Counts are the notebook's defaults (this project's choice)."""
    cfg = config or DiagnosticConfig()
    spine = sum(estimates["eval_mean_tokens"][p] for p in cfg.pools) / len(cfg.pools)
    continuations = (
        cfg.max_problems
        * cfg.candidates_per_problem
        * cfg.children_per_candidate
        * cfg.rollouts_per_child
    )
    tokens = (
        cfg.max_problems * spine
        + continuations * spine * estimates["diagnostic_continuation_fraction"]
    )
    speed = estimates["eval_tokens_per_s_per_gpu"][MAIN_FAMILY]
    row = {
        "section": "diagnostic",
        "model": protocol["models"][MAIN_FAMILY],
        "spines": cfg.max_problems,
        "continuations (at most)": continuations,
        "spine tokens (our estimate)": spine,
        "continuation tokens (our estimate)": spine * estimates["diagnostic_continuation_fraction"],
        "tokens/s per GPU (our estimate)": speed,
        "arithmetic": f"({cfg.max_problems} x {spine:,.0f} + {continuations:,} x "
        f"{spine * estimates['diagnostic_continuation_fraction']:,.0f}) tokens / {speed:,} "
        "tok/s / 3600",
        "GPU-hours": tokens / speed / 3600,
    }
    return pd.DataFrame([row])


def paper_cost_summary(
    training: pd.DataFrame | None = None,
    evaluation: pd.DataFrame | None = None,
    diagnostic: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """GPU-hours per section (training, sampling and evaluation, total) and a total row."""
    training = paper_training_cost() if training is None else training
    evaluation = paper_eval_cost() if evaluation is None else evaluation
    diagnostic = paper_diagnostic_cost() if diagnostic is None else diagnostic
    train = training.groupby("section", sort=False)["GPU-hours"].sum()
    sample = pd.concat([diagnostic, evaluation]).groupby("section", sort=False)["GPU-hours"].sum()
    sections = [s for s in SECTIONS if s in set(train.index) | set(sample.index)]
    frame = pd.DataFrame(
        {
            "training GPU-hours": [train.get(s, 0.0) for s in sections],
            "sampling and evaluation GPU-hours": [sample.get(s, 0.0) for s in sections],
        },
        index=pd.Index(sections, name="section"),
    )
    frame["total GPU-hours"] = frame.sum(axis=1)
    frame.loc["all sections"] = frame.sum()
    return frame


def format_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """A cost table for the page: GPU-hours to one decimal, other numbers as whole numbers
    with thousands separators."""
    out = frame.copy()
    if "section" in out.columns:
        out["section"] = [SECTION_TITLES.get(s, s) for s in out["section"]]
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]):
            fmt = "{:,.1f}" if "GPU-hours" in col else "{:,.0f}"
            out[col] = [fmt.format(v) for v in out[col]]
    return out
