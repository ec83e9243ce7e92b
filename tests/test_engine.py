"""The engine factory (issue 8): CPU settings that work on any memory node, CUDA settings kept.

The plan tests need no engine; the README test runs the README's evaluation example end to
end on the CPU build of vLLM, exactly as a user would type it (command taken from README.md).
Also here: how a :class:`~pwopsd.config.SamplingConfig` becomes each backend's arguments
(:mod:`pwopsd.sampling`) and ``python -m pwopsd.bench engine``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from pwopsd import vllm_build as V
from pwopsd.bench import engine as bench_engine
from pwopsd.bench.__main__ import BENCHMARKS
from pwopsd.config import REPO_ROOT, ConfigError, EngineConfig, SamplingConfig, get_profile
from pwopsd.engine import make_engine
from pwopsd.sampling import eos_token_ids, hf_generate_kwargs, vllm_sampling_params
from pwopsd.vocab import FAMILIES

TOY = get_profile("toy")
PAPER = get_profile("paper")


def _kv_per_token_from_config(model: str, dtype_bytes: int) -> int:
    cfg = json.loads((Path(model) / "config.json").read_text())
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * dtype_bytes


@pytest.mark.parametrize("family", FAMILIES)
def test_cpu_plan_sizes_the_kv_cache_in_bytes(family, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    model = TOY.models[family]
    s = TOY.engine
    plan = V.plan_vllm(model, s, cpu=True, check_memory=False)
    expected = s.max_num_seqs * s.max_model_len * _kv_per_token_from_config(model, 4)
    assert plan.kv_cache_bytes == plan.kwargs["kv_cache_memory_bytes"] == expected
    # Never a fraction of host memory on CPU.
    assert "gpu_memory_utilization" not in plan.kwargs
    # No prefill can be split: a full batch of full-length sequences fits in one step.
    assert plan.kwargs["max_num_batched_tokens"] >= s.max_num_seqs * s.max_model_len
    assert plan.kwargs["enforce_eager"] is True


def test_gpu_memory_utilization_does_not_matter_on_cpu(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    tiny = dataclasses.replace(TOY.engine, gpu_memory_utilization=0.02)
    a = V.plan_vllm(TOY.main_model, TOY.engine, cpu=True, check_memory=False)
    b = V.plan_vllm(TOY.main_model, tiny, cpu=True, check_memory=False)
    assert a.kwargs == b.kwargs


def test_explicit_cpu_kv_bytes_and_env_override(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    fixed = dataclasses.replace(TOY.engine, cpu_kv_cache_bytes=123 * 2**20)
    assert V.plan_vllm(TOY.main_model, fixed, cpu=True, check_memory=False).kv_cache_bytes == (
        123 * 2**20
    )
    # vLLM lets the legacy variable win over kv_cache_memory_bytes: the plan reports that size.
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")
    assert V.plan_vllm(TOY.main_model, fixed, cpu=True, check_memory=False).kv_cache_bytes == (
        2 * 2**30
    )


def test_cuda_plan_keeps_gpu_memory_utilization():
    # The paper model is a hub name: the CUDA plan must not need its config (nothing downloads).
    plan = V.plan_vllm(PAPER.main_model, PAPER.engine, cpu=False)
    assert plan.platform == "cuda" and plan.kv_cache_bytes is None
    assert plan.kwargs["gpu_memory_utilization"] == PAPER.engine.gpu_memory_utilization
    assert "kv_cache_memory_bytes" not in plan.kwargs
    assert plan.kwargs["max_model_len"] == 40960 and plan.kwargs["dtype"] == "bfloat16"


def test_small_node_fails_before_loading_with_the_setting_and_amount(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(V, "node_available_bytes", lambda: (0, 100 * 2**20, 8 * 2**30))
    with pytest.raises(V.EngineMemoryError, match=r"0\.25 GiB.*cpu_kv_cache_bytes.*0\.10 GiB"):
        V.plan_vllm(TOY.main_model, TOY.engine, cpu=True)
    # build_vllm checks before vLLM is imported or any weights load.
    with pytest.raises(V.EngineMemoryError, match="max_num_seqs"):
        V.build_vllm(TOY.main_model, TOY.engine)


def test_node_reading_is_real():
    pytest.importorskip("vllm")
    node, available, total = V.node_available_bytes()
    assert node >= 0 and 0 < available <= total


def test_kv_bytes_per_token_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="dtype='int3'"):
        V.kv_bytes_per_token(TOY.main_model, "int3")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"max_num_seqs": 0}, "max_num_seqs=0"),
        ({"cpu_kv_cache_bytes": 0}, "cpu_kv_cache_bytes=0"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5"),
    ],
)
def test_engine_config_validates(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        EngineConfig(dtype="float32", max_model_len=1024, **kwargs)


def _readme_eval_command() -> list[str]:
    """The evaluation example of README.md, as a user would copy it (line continuations joined)."""
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^python -m pwopsd\.evaluate .*?(?<!\\)$", text, re.M | re.S)
    assert match, "README.md has no `python -m pwopsd.evaluate` example"
    return shlex.split(match.group(0).replace("\\\n", " "))


@pytest.mark.vllm
def test_readme_evaluation_example_end_to_end(tmp_path):
    """The README's evaluation example on the CPU build: two benchmarks, two seeds, n = 12.

    This failed twice before the factory: a negative KV cache on a small memory node, then
    "CPU Generator does not use offset" from a split prefill of seeded requests.
    """
    pytest.importorskip("vllm")
    cmd = _readme_eval_command()
    args = cmd[3:]
    benches = args[args.index("--benchmarks") + 1 : args.index("--n")]
    seeds = args[args.index("--seed") + 1 : args.index("--out")]
    assert len(benches) == 2 and len(seeds) == 2 and args[args.index("--n") + 1] == "12"
    out = tmp_path / "eval"
    args[args.index("--out") + 1] = str(out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the factory alone must size the cache
    proc = subprocess.run(
        [sys.executable, "-m", "pwopsd.evaluate", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["benchmarks"]) == benches
    for name in benches:
        problems = summary["datasets"][name]["problems"]
        for seed in seeds:
            rows = (out / name / f"seed{seed}.samples.jsonl").read_text().splitlines()
            assert len(rows) == 12 * problems
        scores = summary["benchmarks"][name]["mean_sd"]
        assert 0.0 < scores["avg"]["mean"] < scores["pass"]["mean"] <= 1.0
    assert summary["samples_drawn_this_call"] == 12 * 2 * sum(
        summary["datasets"][b]["problems"] for b in benches
    )
    assert f"wrote {out / 'summary.json'}" in proc.stdout


_ENGINE_SCRIPT = """
import time
from pwopsd.config import get_profile
from pwopsd.vllm_build import build_vllm
prof = get_profile("toy")
llm, plan, seconds = build_vllm(prof.main_model, prof.engine)
print("READY", flush=True)
time.sleep(600)
"""


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (a process may vanish between the two checks)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.vllm
def test_engine_processes_die_with_a_killed_parent():
    """SIGKILL the process that built the engine: its engine core and workers must not linger."""
    pytest.importorskip("vllm")
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENGINE_SCRIPT],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:  # vLLM logs to stdout too
            if line.strip() == "READY":
                break
        else:
            raise AssertionError("the engine never started")
        children = _descendants(proc.pid)
        assert children, "vLLM started no child processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # Generous: on a loaded 2-core machine a killed worker holding GiBs takes a while to
        # unmap and exit; what must not happen is that it keeps running for good.
        deadline = time.monotonic() + 120
        alive = children
        while alive and time.monotonic() < deadline:
            alive = [p for p in children if _running(p)]
            time.sleep(0.5)
        assert not alive, f"orphaned vLLM processes still running: {alive}"
    finally:
        for p in _descendants(proc.pid):
            os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_unknown_adapter_mode_is_refused_before_any_engine_starts():
    with pytest.raises(ConfigError, match="adapter_mode='lorax'"):
        dataclasses.replace(TOY.engine, adapter_mode="lorax")
    # The per-engine override goes through the same check, before vLLM is imported or started.
    with pytest.raises(ConfigError, match="allowed: \\['merge', 'lora'\\]"):
        make_engine("vllm", TOY.main_model, profile=TOY, adapter_mode="lorax")


# ------------------------------------------------------------------ sampling arguments


def test_eos_token_ids_joins_tokenizer_and_generation_config():
    tok = SimpleNamespace(eos_token_id=2)
    assert eos_token_ids(tok) == {2}
    assert eos_token_ids(tok, SimpleNamespace(eos_token_id=[2, 5])) == {2, 5}
    assert eos_token_ids(tok, SimpleNamespace(eos_token_id=7)) == {2, 7}
    assert eos_token_ids(tok, SimpleNamespace(eos_token_id=None)) == {2}
    assert eos_token_ids(SimpleNamespace(eos_token_id=None), SimpleNamespace()) == set()


def test_hf_generate_kwargs_greedy_and_sampled():
    sampled = SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=-1, max_new_tokens=24)
    assert hf_generate_kwargs(sampled, pad_token_id=0, eos_token_id=[3, 4]) == {
        "max_new_tokens": 24,
        "do_sample": True,
        "pad_token_id": 0,
        "eos_token_id": [3, 4],
        "temperature": 1.1,
        "top_p": 0.95,
        "top_k": None,  # -1 (vLLM's "off") is None for HF
    }
    greedy = dataclasses.replace(sampled, temperature=0.0, top_k=20)
    assert hf_generate_kwargs(greedy, pad_token_id=1, max_new_tokens=5) == {
        "max_new_tokens": 5,
        "do_sample": False,
        "pad_token_id": 1,
    }


def test_vllm_sampling_params_carry_the_config():
    pytest.importorskip("vllm")
    s = TOY.eval_sampling
    params = vllm_sampling_params(s, 123)
    assert (params.n, params.temperature, params.top_p, params.max_tokens, params.seed) == (
        1, s.temperature, s.top_p, s.max_new_tokens, 123,
    )  # fmt: skip
    assert params.top_k in (s.top_k, 0) and params.logprobs is None  # vLLM stores -1 as 0 or -1
    with_lp = vllm_sampling_params(TOY.train.rollout, None, n=3, logprobs=True)
    assert (with_lp.n, with_lp.logprobs, with_lp.seed, with_lp.top_k) == (3, 0, None, 20)


def test_bench_engine_prints_the_plan(capsys):
    pytest.importorskip("vllm")
    assert BENCHMARKS["engine"] == "pwopsd.bench.engine"
    assert bench_engine.main(["--profile", "toy"]) == 0
    shown = json.loads(capsys.readouterr().out)
    plan = V.plan_vllm(TOY.main_model, TOY.engine)
    assert shown == {"platform": plan.platform, "kwargs": plan.kwargs}
