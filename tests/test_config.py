"""Profiles and notebook configs: the values PROTOCOL.md fixes, and clear errors on bad input."""

from __future__ import annotations

import dataclasses

import pytest

from pwopsd import config
from pwopsd.config import ConfigError


def test_paper_profile_honours_protocol():
    p = config.get_profile("paper")
    t = p.train
    assert p.main_model == "Qwen/Qwen3-4B"
    assert (t.lora_r, t.lora_alpha, t.learning_rate, t.max_grad_norm) == (64, 128, 5e-6, 0.1)
    assert (t.max_steps, t.save_every, t.eval_step, t.prompts_per_step) == (150, 25, 100, 32)
    assert (t.distill_temperature, t.tau_clip) == (1.1, 0.05)
    r = t.rollout
    assert (r.temperature, r.top_p, r.top_k, r.max_new_tokens) == (1.1, 0.95, 20, 1024)
    e = p.eval_sampling
    assert (e.n, e.temperature, e.top_p, e.top_k, e.max_new_tokens) == (12, 1.0, 0.95, -1, 38912)
    assert [b.source for b in p.benchmarks][:3] == [
        "HuggingFaceH4/MATH-500",
        "HuggingFaceH4/aime_2024",
        "yentinglin/aime_2025",
    ]
    assert p.benchmarks[3].sha256.startswith("87bfb23d")


def test_toy_profile_points_into_repo():
    p = config.get_profile("toy")
    assert set(p.models) == {"qwen3", "llama", "olmo3"}
    for path in p.models.values():
        assert path.startswith(str(config.CHECKPOINTS_DIR))
    assert [b.name for b in p.benchmarks] == list(config.TOY_BENCHMARK_NAMES)
    assert p.eval_sampling.n == 12 and p.eval_sampling.temperature == 1.0


def test_unknown_profile_names_allowed_values():
    with pytest.raises(ConfigError, match=r"profile='tiny'.*'paper'.*'toy'"):
        config.get_profile("tiny")


@pytest.mark.parametrize("cls", list(config.NOTEBOOK_CONFIGS.values()))
def test_defaults_are_valid(cls):
    cfg = cls()
    assert cfg.results_dir.parts[-2:] == ("toy", cls.notebook)


@pytest.mark.parametrize(
    "cls, kwargs, pattern",
    [
        (config.MainTableConfig, {"seed": -1}, r"seed=-1"),
        (config.MainTableConfig, {"seed": "1"}, r"seed='1'.*expected int"),
        (config.MainTableConfig, {"profile": "huge"}, r"profile='huge'.*allowed"),
        (config.MainTableConfig, {"methods": ["opsd", "ppo"]}, r"methods contains 'ppo'.*pw_opsd"),
        (config.MainTableConfig, {"methods": "opsd"}, r"methods"),
        (config.MainTableConfig, {"schedules": ["wild"]}, r"schedules contains 'wild'"),
        (config.ScheduleSweepConfig, {"w_min": 1.5, "c": 0.3, "s": 0.1}, r"w_min=1.5.*\[0, 1\]"),
        (config.ScheduleSweepConfig, {"w_min": 0.5, "c": 0.3, "s": 0.0}, r"s=0.0"),
        (config.ScheduleSweepConfig, {"w_min": 0.5}, r"together"),
        (config.ScheduleSweepConfig, {"w_min": 0.25, "c": -0.2, "s": 0.1}, r"c=-0.2.*\[0, 1\]"),
        (config.ScheduleSweepConfig, {"w_min": 0.25, "c": 1.5, "s": 0.1}, r"c=1.5"),
        (config.MainTableConfig, {"out_dir": "/proc/forbidden"}, r"out_dir='/proc/forbidden'"),
        (
            config.ReductionFactorialConfig,
            {"reductions": ["median"]},
            r"reductions contains 'median'",
        ),
        (config.CrossModelConfig, {"families": ["gpt2"]}, r"families contains 'gpt2'"),
        (config.DiagnosticConfig, {"rollouts_per_child": 0}, r"rollouts_per_child=0"),
    ],
)
def test_bad_values_name_the_parameter(cls, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        cls(**kwargs)


def test_from_namespace_rejects_unknown_names_and_ignores_kernel_names():
    ns = {
        "seed": 3,
        "profile": "toy",
        "In": [],
        "get_ipython": print,
        "_": None,
        "dataclasses": dataclasses,
    }
    cfg = config.MainTableConfig.from_namespace(ns)
    assert cfg.seed == 3
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['sed'\].*allowed parameters"):
        config.MainTableConfig.from_namespace({**ns, "sed": 2})
