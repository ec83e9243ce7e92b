"""The profiles: "toy" (the laptop-scale world shipped in this repo), "paper"
(../shared/reference/PROTOCOL.md: hub names, 4x H100 budgets), and the toy world's
position-premise dial settings ("toy-shortcut0.5", ...: the toy profile with a ``qwen3``
checkpoint pretrained at that ``Mixture.teacher_shortcut_share``)."""

from __future__ import annotations

import dataclasses

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


SHORTCUT_SHARES = (0.5, 1.0)
"""Dial settings of the position-premise study beyond the shipped toy world (share 0): the
``Mixture.teacher_shortcut_share`` each ``checkpoints/shortcut-<share>/toy-qwen3`` was
pretrained with (``python -m pwopsd.toy pretrain --family qwen3 --teacher-shortcut-share X
--out checkpoints/shortcut-X``)."""


def dial_profile_name(share: float) -> str:
    """The profile of a dial setting: "toy" for share 0, else "toy-shortcut<share>"."""
    return "toy" if share == 0 else f"toy-shortcut{share:g}"


def _dial_profile(share: float) -> Profile:
    """The toy profile with the ``qwen3`` checkpoint pretrained at shortcut share ``share``
    (only ``qwen3`` is pretrained at the dial's settings)."""
    model = CHECKPOINTS_DIR / f"shortcut-{share:g}" / "toy-qwen3"
    return dataclasses.replace(_toy_profile(), name=dial_profile_name(share),
                               models={"qwen3": str(model)})  # fmt: skip


PROFILES = {
    "toy": _toy_profile,
    "paper": _paper_profile,
    **{dial_profile_name(s): (lambda s=s: _dial_profile(s)) for s in SHORTCUT_SHARES},
}
"""Profile name -> constructor."""


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("toy", "paper" or a dial setting "toy-shortcut<share>")."""
    if name not in PROFILES:
        raise ConfigError(f"profile={name!r} is not known; allowed: {sorted(PROFILES)}")
    return PROFILES[name]()
