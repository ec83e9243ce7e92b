"""The two profiles: "toy" (the laptop-scale world shipped in this repo) and "paper"
(../shared/reference/PROTOCOL.md: hub names, 4x H100 budgets)."""

from __future__ import annotations

from pwopsd.config.settings import (
    CHECKPOINTS_DIR,
    TOY_DATA_DIR,
    BenchmarkSpec,
    ConfigError,
    EngineConfig,
    Profile,
    SamplingConfig,
    TrainConfig,
)
from pwopsd.vocab import BENCHMARK_LABELS, FAMILIES, PAPER_MODEL_IDS, TOY_BENCHMARKS


def _toy_models() -> dict[str, str]:
    return {fam: str(CHECKPOINTS_DIR / f"toy-{fam}") for fam in FAMILIES}


def _toy_profile() -> Profile:
    return Profile(
        name="toy",
        models=_toy_models(),
        train_data=str(TOY_DATA_DIR / "train.jsonl"),
        benchmarks=tuple(
            BenchmarkSpec(
                name=b, source=str(TOY_DATA_DIR / f"{b}.jsonl"), label=BENCHMARK_LABELS[b]
            )
            for b in TOY_BENCHMARKS
        ),
        eval_sampling=SamplingConfig(
            n=12, temperature=1.0, top_p=0.95, top_k=-1, max_new_tokens=384
        ),
        train=TrainConfig(
            lora_r=16,
            lora_alpha=32,
            # Tuned on toy_val only (python -m pwopsd.toy recipe, results/toy/recipe_tuning.json).
            learning_rate=1e-3,
            tau_clip=0.5,
            max_grad_norm=1.0,
            max_steps=30,
            save_every=10,
            eval_step=20,
            prompts_per_step=16,
            micro_batch=16,
            rollout=SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=384),
            dtype="float32",
            gradient_checkpointing=False,
        ),
        # 128 x 1024 tokens x 2-4 KiB per token: a 256-512 MiB KV cache for the toy models.
        engine=EngineConfig(
            dtype="float32", max_model_len=1024, max_num_seqs=128, gpu_memory_utilization=0.05
        ),
    )


def _paper_profile() -> Profile:
    return Profile(
        name="paper",
        models=dict(PAPER_MODEL_IDS),
        train_data="siyanzhao/Openthoughts_math_30k_opsd",
        benchmarks=(
            BenchmarkSpec(
                "math500", "HuggingFaceH4/MATH-500", "test", label=BENCHMARK_LABELS["math500"]
            ),
            BenchmarkSpec(
                "aime24", "HuggingFaceH4/aime_2024", "train", label=BENCHMARK_LABELS["aime24"]
            ),
            BenchmarkSpec(
                "aime25", "yentinglin/aime_2025", "train", label=BENCHMARK_LABELS["aime25"]
            ),
            BenchmarkSpec(
                "hmmt25",
                "data/hmmt_feb_2025.parquet",
                sha256="87bfb23d2c887fab12b42fcc2b2dd8cb5a9d1070e591490dac8755bc366ea25e",
                label=BENCHMARK_LABELS["hmmt25"],
            ),
        ),
        eval_sampling=SamplingConfig(
            n=12, temperature=1.0, top_p=0.95, top_k=-1, max_new_tokens=38912
        ),
        train=TrainConfig(),
        engine=EngineConfig(
            dtype="bfloat16", max_model_len=40960, max_num_seqs=256, gpu_memory_utilization=0.85
        ),
    )


PROFILES = {"toy": _toy_profile, "paper": _paper_profile}
"""Profile name -> constructor."""


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("toy" or "paper")."""
    if name not in PROFILES:
        raise ConfigError(f"profile={name!r} is not known; allowed: {sorted(PROFILES)}")
    return PROFILES[name]()
