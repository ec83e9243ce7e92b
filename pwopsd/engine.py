"""Generation engines: vLLM (one engine per process, reused) and HF ``generate`` as a fallback.

:func:`make_engine` is what callers use: it builds the engine of a backend
(:data:`pwopsd.vocab.BACKENDS`) for a model. Both engines take rendered prompts and return
:class:`~pwopsd.sampling.Completion` objects, one sample per
:class:`~pwopsd.sampling.SampleRequest` and seed (:mod:`pwopsd.sampling`), streamed as they
finish (:meth:`VLLMEngine.stream`) or in prompt order (``generate``). The vLLM engine itself
(``vllm.LLM``) is started by :func:`pwopsd.vllm_build.build_vllm`, the only place that
starts one.

A model may be a base model, a merged checkpoint (both a ``from_pretrained`` path or hub
name) or a base model plus a PEFT LoRA adapter directory (``adapter=``).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd.config import EngineConfig, Profile, SamplingConfig, get_profile
from pwopsd.sampling import (
    Completion,
    SampleRequest,
    check_sampling,
    derive_seed,
    eos_token_ids,
    hf_generate_kwargs,
    vllm_sampling_params,
)
from pwopsd.vllm_build import adapter_rank, build_vllm, check_model_paths, write_merged
from pwopsd.vocab import BACKENDS

# --------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------


class VLLMEngine:
    """A vLLM ``LLM`` kept for the life of the process; samples stream out as they finish.

    Built by :func:`pwopsd.vllm_build.build_vllm` from the profile's engine settings (explicit
    KV-cache bytes and an unsplittable prefill budget on CPU). A LoRA adapter (``adapter=`` at
    build time or per call) is served as ``adapter_mode`` says
    (:attr:`~pwopsd.config.EngineConfig.adapter_mode`):

    * ``"merge"`` (default): the adapter is merged into the base weights
      (:func:`pwopsd.vllm_build.write_merged`) and loaded into the running engine with vLLM's
      in-place ``reload_weights``; asking for the base model (``adapter=None``) reloads the
      base checkpoint. Decoding runs at base-model speed; switching costs one merge and one
      reload (``python -m pwopsd.bench rollout`` times both).
    * ``"lora"``: each new adapter directory (or rewrite) gets a new ``LoRARequest``; the base
      weights never change.

    Both draw the same samples for the same seeds up to float round-off (``tests/test_evaluate``
    compares them).
    """

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        settings: EngineConfig,
        adapter: str | None = None,
        seed: int = 0,
        enable_lora: bool = False,
        max_lora_rank: int | None = None,
        adapter_mode: str | None = None,
    ) -> None:
        check_model_paths(model, adapter)
        self.model = model
        self.adapter = adapter
        if adapter_mode is not None:  # EngineConfig checks the name (ConfigError, a ValueError)
            settings = dataclasses.replace(settings, adapter_mode=adapter_mode)
        self.adapter_mode = settings.adapter_mode
        self.dtype = settings.dtype
        lora = (adapter is not None or enable_lora) and self.adapter_mode == "lora"
        rank = max_lora_rank or (adapter_rank(adapter) if adapter else 64)
        self.llm, self.plan, self.startup_seconds = build_vllm(
            model, settings, seed=seed, enable_lora=lora, max_lora_rank=rank
        )
        self._lora_ids: dict[tuple[str, tuple], int] = {}
        self._inflight: list[str] = []
        self._served: tuple[str, tuple] | None = None
        """Merge mode: the adapter (path, file times) whose merged weights the engine holds."""
        self._merge_dir: Path | None = None
        self.weight_reloads = 0
        """Merge mode: how many times the engine's weights were reloaded (merges + restores)."""

    @property
    def tokenizer(self) -> Any:
        return self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine-core process now (it would otherwise stop at interpreter exit)."""
        core = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(core, "engine_core", None)
        if core is not None:
            core.shutdown()
        if self._merge_dir is not None:
            shutil.rmtree(self._merge_dir, ignore_errors=True)

    def _abort_inflight(self) -> None:
        """Abort what an abandoned :meth:`stream` left in the engine and drain it."""
        engine = self.llm.llm_engine
        if self._inflight:
            engine.abort_request(self._inflight, internal=True)
            self._inflight = []
        while engine.has_unfinished_requests():
            engine.step()

    @staticmethod
    def _adapter_key(adapter: str) -> tuple[str, tuple]:
        # A checkpoint rewritten in place (same path, new weights) must count as a new
        # adapter, so the key includes the files' modification times.
        path = Path(adapter).resolve()
        return str(path), tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.iterdir()))

    def _lora_request(self, adapter: str | None) -> Any:
        """Make the engine serve ``adapter``: the ``LoRARequest`` to pass ("lora" mode) or
        None after loading its merged weights ("merge" mode). Call with nothing in flight."""
        if self.adapter_mode == "merge":
            self._serve_merged(adapter)
            return None
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest  # vllm is an optional extra: only when used

        key = self._adapter_key(adapter)
        lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter{lora_id}", lora_id, key[0])

    def _serve_merged(self, adapter: str | None) -> None:
        key = None if adapter is None else self._adapter_key(adapter)
        if key == self._served:
            return
        if adapter is None:
            weights = self.model
        else:
            if self._merge_dir is None:
                self._merge_dir = Path(tempfile.mkdtemp(prefix="pwopsd-merged-"))
            weights = str(write_merged(self.model, adapter, self._merge_dir, self.dtype))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": weights})
        self.llm.reset_prefix_cache()  # cached KV of the old weights must not be reused
        self._served = key
        self.weight_reloads += 1

    @staticmethod
    def _completion(out: Any, logprobs: bool) -> Completion:
        lps = None
        if logprobs and out.logprobs is not None:
            # One dict per position: token id -> Logprob; the sampled token is always in it.
            lps = tuple(float(d[t].logprob) for t, d in zip(out.token_ids, out.logprobs))
        return Completion(out.text, tuple(out.token_ids), lps, out.finish_reason)

    def stream(
        self,
        requests: Sequence[SampleRequest],
        sampling: SamplingConfig,
        *,
        adapter: str | None = "default",
        logprobs: bool = False,
    ) -> Iterator[tuple[Hashable, Completion]]:
        """Draw one sample per request; yield (key, completion) as each one finishes."""
        check_sampling(sampling)
        self._abort_inflight()
        if not requests:
            return
        adapter = self.adapter if adapter == "default" else adapter
        params = [vllm_sampling_params(sampling, r.seed, 1, logprobs) for r in requests]
        ids = self.llm.enqueue(
            [r.prompt for r in requests],
            params,
            lora_request=self._lora_request(adapter),
            use_tqdm=False,
        )
        self._inflight = list(ids)
        # enqueue returns internal "<n>-<suffix>" ids while outputs carry "<n>": accept both.
        keys: dict[str, Hashable] = {}
        for rid, r in zip(ids, requests, strict=True):
            keys[rid] = r.key
            keys[rid.split("-", 1)[0]] = r.key
        engine = self.llm.llm_engine
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if out.finished and out.request_id in keys:
                        yield keys[out.request_id], self._completion(out.outputs[0], logprobs)
        finally:
            # A consumer that stops early (crash, Ctrl-C) must not leave requests running
            # into the next call's outputs.
            self._abort_inflight()

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        seeds: Sequence[int] | None = None,
        adapter: str | None = "default",
        logprobs: bool = False,
    ) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, in prompt order (e.g. training rollouts)."""
        check_sampling(sampling)
        seeds = (
            list(seeds) if seeds is not None else [derive_seed(0, i) for i in range(len(prompts))]
        )
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        adapter = self.adapter if adapter == "default" else adapter
        self._abort_inflight()
        params = [vllm_sampling_params(sampling, s, sampling.n, logprobs) for s in seeds]
        outs = self.llm.generate(
            list(prompts), params, lora_request=self._lora_request(adapter), use_tqdm=False
        )
        return [[self._completion(o, logprobs) for o in out.outputs] for out in outs]


# --------------------------------------------------------------------------------------
# HF transformers fallback
# --------------------------------------------------------------------------------------


class HFEngine:
    """``transformers`` generate, one sample at a time with its own seed (slow, exact).

    The fallback where vLLM is not available; meant for toy models and small checks.
    """

    backend = "hf"

    def __init__(
        self, model: str, *, adapter: str | None = None, dtype: str = "float32", **_: Any
    ) -> None:
        check_model_paths(model, adapter)
        t0 = time.perf_counter()
        self.model = model
        self.adapter = adapter
        self._tokenizer = AutoTokenizer.from_pretrained(model)
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        net = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
        if adapter is not None:
            net = PeftModel.from_pretrained(net, adapter).merge_and_unload()
        self.net = net.eval()
        # A toy model's matmuls are too small to split: extra threads only contend (15x
        # slower on a busy 2-core box), so generate single-threaded below 50M parameters.
        self.threads = 1 if sum(p.numel() for p in net.parameters()) < 50_000_000 else None
        self.startup_seconds = time.perf_counter() - t0

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def close(self) -> None:
        """Nothing to stop (same interface as :class:`VLLMEngine`)."""

    def _sample(
        self, prompt: str, sampling: SamplingConfig, seed: int, logprobs: bool
    ) -> Completion:
        ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return self.sample_ids(ids, sampling, seed, logprobs=logprobs)

    def sample_ids(
        self, ids: Sequence[int], sampling: SamplingConfig, seed: int, *, logprobs: bool = False
    ) -> Completion:
        """One sample continuing the prompt token ids ``ids`` (seeded; EOS kept, as vLLM does)."""
        tok = self._tokenizer
        x = torch.tensor([list(ids)], dtype=torch.long)  # [1, P]
        enc = {"input_ids": x, "attention_mask": torch.ones_like(x)}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        gen_kwargs = hf_generate_kwargs(sampling, pad_token_id=pad)
        torch.manual_seed(seed)
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                out = self.net.generate(
                    **enc, **gen_kwargs, return_dict_in_generate=True, output_logits=logprobs
                )
        finally:
            torch.set_num_threads(threads)
        new = out.sequences[0, enc["input_ids"].shape[1] :].tolist()  # [T_new]
        eos = eos_token_ids(tok, self.net.generation_config)
        finish = "stop" if new and new[-1] in eos else "length"  # EOS kept, as vLLM does
        lps = None
        if logprobs:
            logits = torch.stack(out.logits, dim=1)[0].float()  # [T_new, V] unprocessed
            lp = torch.log_softmax(logits, dim=-1)
            lps = tuple(lp[torch.arange(len(new)), torch.tensor(new)].tolist())
        text = tok.decode(new, skip_special_tokens=True)
        return Completion(text, tuple(new), lps, finish)

    def stream(
        self,
        requests: Sequence[SampleRequest],
        sampling: SamplingConfig,
        *,
        adapter: str | None = "default",
        logprobs: bool = False,
    ) -> Iterator[tuple[Hashable, Completion]]:
        """Draw one sample per request (in order), yielding (key, completion)."""
        check_sampling(sampling)
        if adapter not in ("default", self.adapter):
            raise ValueError("HFEngine serves the adapter it was built with; make a new engine")
        for r in requests:
            yield r.key, self._sample(r.prompt, sampling, r.seed, logprobs)

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        seeds: Sequence[int] | None = None,
        adapter: str | None = "default",
        logprobs: bool = False,
    ) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, in prompt order."""
        seeds = (
            list(seeds) if seeds is not None else [derive_seed(0, i) for i in range(len(prompts))]
        )
        reqs = [
            SampleRequest((i, j), p, derive_seed(s, j))
            for i, (p, s) in enumerate(zip(prompts, seeds, strict=True))
            for j in range(sampling.n)
        ]
        out: list[list[Completion]] = [[] for _ in prompts]
        for (i, _), c in self.stream(reqs, sampling, adapter=adapter, logprobs=logprobs):
            out[i].append(c)
        return out


Engine = VLLMEngine | HFEngine


def make_engine(
    backend: str,
    model: str,
    *,
    profile: Profile | str = "toy",
    settings: EngineConfig | None = None,
    adapter: str | None = None,
    seed: int = 0,
    enable_lora: bool = False,
    max_lora_rank: int | None = None,
    adapter_mode: str | None = None,
) -> Engine:
    """Build the engine of ``backend`` ("vllm" or "hf") for ``model``.

    ``settings`` defaults to the profile's :class:`~pwopsd.config.EngineConfig`;
    ``adapter_mode`` (vLLM) overrides its ``adapter_mode``. The vLLM engine itself is built
    by :func:`pwopsd.vllm_build.build_vllm`, the only place that starts one.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not known; allowed: {list(BACKENDS)}")
    if settings is None:
        settings = (get_profile(profile) if isinstance(profile, str) else profile).engine
    if backend == "vllm":
        return VLLMEngine(
            model,
            settings=settings,
            adapter=adapter,
            seed=seed,
            enable_lora=enable_lora,
            max_lora_rank=max_lora_rank,
            adapter_mode=adapter_mode,
        )
    dtype = settings.dtype if settings.dtype != "auto" else "float32"
    return HFEngine(model, adapter=adapter, dtype=dtype)
