"""Profiles and notebook configs: the values PROTOCOL.md fixes, and clear errors on bad input."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pwopsd import config
from pwopsd.config import REPO_ROOT, ConfigError
from pwopsd.vocab import FAMILIES, TOY_BENCHMARKS

PROTOCOL = REPO_ROOT.parent / "shared" / "reference" / "PROTOCOL.md"


def _protocol_numbers(pattern: str) -> tuple[float | str, ...]:
    """The groups of ``pattern`` in PROTOCOL.md (whitespace-insensitive), as numbers."""
    text = " ".join(PROTOCOL.read_text().split())
    m = re.search(pattern, text)
    assert m, f"PROTOCOL.md no longer says {pattern!r}"
    return tuple(float(g.replace(",", "")) if re.fullmatch(r"[\d.,e-]+", g) else g
                 for g in m.groups())  # fmt: skip


@pytest.mark.skipif(not PROTOCOL.exists(), reason="../shared/reference/PROTOCOL.md not beside")
def test_paper_profile_honours_protocol():
    """The paper profile against the numbers PROTOCOL.md states (read from its text, so a
    changed number in either place fails)."""
    p = config.get_profile("paper")
    t, r, e = p.train, p.train.rollout, p.eval_sampling
    lr, clip, steps, every = _protocol_numbers(
        r"lr (\S+), max_grad_norm (\S+), (\d+) optimizer steps, checkpoint every (\d+)"
    )
    assert (t.learning_rate, t.max_grad_norm, t.max_steps, t.save_every) == (lr, clip, steps, every)
    assert t.eval_step == _protocol_numbers(r"the step-(\d+) checkpoint is evaluated")[0]
    assert t.prompts_per_step == _protocol_numbers(r"Effective batch (\d+) prompts")[0]
    assert (t.lora_r, t.lora_alpha) == _protocol_numbers(r"LoRA r=(\d+), alpha=(\d+)")
    assert (r.temperature, r.top_p, r.top_k, r.max_new_tokens) == _protocol_numbers(
        r"Rollout sampling: temperature (\S+), top_p (\S+), top_k (\d+), "
        r"max_completion_length (\d+)\."
    )
    assert (t.distill_temperature, t.tau_clip) == _protocol_numbers(
        r"Distillation temperature (\S+), tau_clip ([\d.]*\d)"
    )
    assert t.base_seed == _protocol_numbers(r"Random seed (\d+) for training")[0]
    n, temp, top_p, budget = _protocol_numbers(
        r"n = (\d+) samples per problem, temperature (\S+), top_p (\S+), top_k disabled, "
        r"max_new_tokens ([\d,]+)"
    )
    assert (e.n, e.temperature, e.top_p, e.top_k, e.max_new_tokens) == (n, temp, top_p, -1, budget)
    models = _protocol_numbers(r"Base models: (\S+) \(main\), (\S+), (\S+) \(cross-model\)")
    assert [p.models[f] for f in FAMILIES] == [m.rstrip(",") for m in models]
    for bench in p.benchmarks[:3]:
        assert bench.source in PROTOCOL.read_text()
    sha = _protocol_numbers(r"SHA-256 ([0-9a-f]{64})")[0]
    assert p.benchmarks[3].sha256 == sha


def test_toy_profile_points_into_repo():
    p = config.get_profile("toy")
    assert list(p.models) == list(FAMILIES)
    for path in p.models.values():
        assert path.startswith(str(config.CHECKPOINTS_DIR))
    assert [b.name for b in p.benchmarks] == list(TOY_BENCHMARKS)
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


def test_results_files_are_named_in_one_place():
    full = config.MainTableConfig(seed=2)
    assert full.results_file().name == "main_table.seed2.json"
    quick = config.MainTableConfig(seed=2, max_problems=3, eval_seeds=1)
    assert quick.results_file().name == "main_table.seed2.eval_seeds1-max_problems3.json"
    diag = config.DiagnosticConfig(seed=3)
    assert diag.results_file("table1").name == "table1.seed3.json"
    assert diag.results_file().name == "diagnostic.seed3.json"
